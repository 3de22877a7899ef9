"""`fewtask-train` through its real entry point in a subprocess, so errors pass the one-line
error handler as a user sees them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def train_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", "from trainer.cli import main; main()", *args], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=timeout)  # fmt: skip
