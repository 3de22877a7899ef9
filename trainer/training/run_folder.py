"""A training run's folder, for both loops (`loop.train`, Adam; `policy_loop.train_policy`,
TRPO): the lock, resuming from ``checkpoint.pt``, ``metrics.jsonl`` and the training time.

``metrics.jsonl`` holds one JSON object per logged step, keyed by the loop's step name
("step" or "iteration"); on resume the lines past the checkpoint are dropped, so the log
reads as one uninterrupted run. Training time adds up over resumed runs: a checkpoint
records ``seconds`` (older supervised checkpoints: the log's last ``elapsed_s``).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from fewtask_data import FewtaskError, io
from trainer.training import checkpoint as ckpt

METRICS_NAME = "metrics.jsonl"


class RunFolder:
    """``out`` made writable; ``main``: whether this process writes there (under torchrun
    only the main process locks, logs and saves)."""

    def __init__(self, out: Path, step_key: str = "step", main: bool = True) -> None:
        self.path = io.ensure_writable(Path(out))
        self.checkpoint_path = self.path / ckpt.CHECKPOINT_NAME
        self.metrics_path = self.path / METRICS_NAME
        self.step_key, self.main = step_key, main
        self.prior_seconds, self.t0 = 0.0, time.perf_counter()

    @contextlib.contextmanager
    def locked(self) -> Iterator[RunFolder]:
        """Holds `io.exclusive` on the folder: a second process training into it gets a one-line error."""
        with io.exclusive(self.path) if self.main else contextlib.nullcontext():
            yield self

    def start(self, resume: bool, signature: dict, name: str,
              check: Callable[[dict], None] | None = None) -> dict | None:  # fmt: skip
        """The checkpoint to resume from, checked to fit the model (``signature``), to be
        ``name``'s and to pass ``check``, with the log trimmed to it; or None for a fresh run
        (the old log removed). Starts the clock."""
        state = None
        if resume and self.checkpoint_path.exists():
            state = ckpt.load(self.checkpoint_path, signature)
            if state.get("algorithm") != name:
                raise FewtaskError(f"checkpoint {self.checkpoint_path} was trained with {state.get('algorithm')}, "
                                   f"not {name}; use a fresh --out")  # fmt: skip
            if check is not None:
                check(state)
            if self.main:
                self._trim(state["step"])
            self.prior_seconds = state.get("seconds", self.last_logged().get("elapsed_s", 0.0))
        elif self.main:
            self.metrics_path.unlink(missing_ok=True)
        self.t0 = time.perf_counter()
        return state

    def seconds(self) -> float:
        """Training time of this run and the ones it resumed."""
        return self.prior_seconds + time.perf_counter() - self.t0

    def over_budget(self, max_seconds: float, agree: Callable[[bool], bool] = bool) -> bool:
        """Whether this run has trained longer than ``max_seconds`` (0: no budget);
        ``agree`` makes one decision of every process's."""
        return max_seconds > 0 and agree(time.perf_counter() - self.t0 > max_seconds)

    @contextlib.contextmanager
    def metrics(self) -> Iterator[Callable[[dict[str, Any]], None]]:
        """``write(record)``: appends one line to metrics.jsonl (nowhere on other processes)."""
        with open(self.metrics_path if self.main else os.devnull, "a") as log:

            def write(record: dict[str, Any]) -> None:
                log.write(json.dumps(record) + "\n")
                log.flush()

            yield write

    def last_logged(self) -> dict[str, Any]:
        """The last line of metrics.jsonl, or {}."""
        lines = self.metrics_path.read_text().splitlines() if self.metrics_path.exists() else []
        return json.loads(lines[-1]) if lines else {}

    def save(self, payload: dict[str, Any]) -> None:
        """Writes the checkpoint atomically (the main process only)."""
        if self.main:
            ckpt.save(self.checkpoint_path, payload)

    def tensorboard(self):
        """A TensorBoard writer under OUT/tensorboard, or None when tensorboard is not installed."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return SummaryWriter(str(self.path / "tensorboard"))

    def _trim(self, step: int) -> None:
        """Drops logged lines past the checkpoint we resume from, so the log stays one run."""
        if not self.metrics_path.exists():
            return
        lines = self.metrics_path.read_text().splitlines()
        keep = [line for line in lines if line and json.loads(line)[self.step_key] <= step]
        self.metrics_path.write_text("".join(line + "\n" for line in keep))
