"""How long `fewtask-data` takes to start: --help, inspect, verify and manifests list, each in a
fresh interpreter, against `python -c pass` measured in the same run (medians of --repeat runs).
For reference, `import torch` alone is timed too: what every command paid when importing
fewtask_data pulled torch in.

    .venv/bin/python scripts/bench_cli_startup.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import numpy as np

from fewtask_data import BuildOptions, SourceClass, build_dataset


def noise(item: tuple[int, int]) -> np.ndarray:
    """(class, image) -> a reproducible 28x28 grayscale image."""
    return (np.random.default_rng(item).random((28, 28)) * 255).astype(np.uint8)


def small_dataset(out: Path) -> Path:
    """20 classes of 20 images in 2 families, through the real build."""
    classes = [SourceClass(f"c{c:02d}", [(f"s{i:02d}", (c, i)) for i in range(20)]) for c in range(20)]
    families = [{"id": f"f{g}", "classes": [f"c{c:02d}" for c in range(10 * g, 10 * g + 10)]} for g in range(2)]
    build_dataset(out, dataset="bench", builder="bench", builder_version="1", source={"fingerprint": "noise"},
                  classes=classes, decode=noise, splits={"train": families}, options=BuildOptions(workers=1))
    return out


def seconds(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per command (medians reported)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = str(small_dataset(Path(tmp) / "data"))
        cli = ["-m", "fewtask_data.cli"]
        commands = {
            "python -c pass (baseline)": ["-c", "pass"],
            "fewtask-data --help": [*cli, "--help"],
            "fewtask-data inspect DIR": [*cli, "inspect", data],
            "fewtask-data verify DIR": [*cli, "verify", data],
            "fewtask-data manifests list": [*cli, "manifests", "list"],
            "python -c 'import torch' (reference)": ["-c", "import torch"],
        }
        runs: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeat):  # interleaved, so load drift hits every command alike
            for name, command in commands.items():
                runs[name].append(seconds(command))
    base = median(runs["python -c pass (baseline)"])
    for name, times in runs.items():
        t = median(times)
        print(f"{name:<40} {t:6.3f} s   {t / base:5.1f}x the baseline   (+{t - base:.3f} s)")


if __name__ == "__main__":
    main()
