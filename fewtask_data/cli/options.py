"""Options several commands share, declared once: the build options and the episode shape.

``build_option("seed", help=...)`` and ``shape_option("val", 5)`` give typer options with
the shared name, default and help, where a command may reword the help or change the
default. ``--out`` of every build checks at once that the folder can be written.
Also the parsers of option values that several builds take.
"""

from __future__ import annotations

from typing import Any

import typer

from fewtask_data.errors import FewtaskError
from fewtask_data.io import ensure_writable

_KEEP = object()

BUILD_OPTIONS: dict[str, tuple[Any, str]] = {  # name -> (default, help)
    "out": (..., "output folder for shards, index.json, build_report.json, manifest.json"),
    "workers": (0, "decode processes (0 = all cores, 1 = in this process)"),
    "shard_size": (2000, "images per shard"),
    "quality": (90, "JPEG quality (rgb images)"),
    "seed": (0, "within-class shuffle seed"),
    "strict": (False, "an unreadable image stops the build (default: skipped and listed in build_report.json)"),
}

SHAPE_OPTIONS: dict[str, tuple[Any, str]] = {  # EpisodeShape field -> (default, help)
    "ways": (5, "N: classes per task"),
    "shots": (1, "K: support images per class"),
    "queries": (5, "Q: query images per class in meta-finetuning tasks"),
    "val": (15, "V: validation images per class in goal tasks"),
    "meta_tasks": (4, "L: meta-finetuning tasks per family episode"),
    "goal_tasks": (1, "C: goal tasks per family episode"),
}


def _option(table: dict[str, tuple[Any, str]], name: str, default: Any, help: str | None, **extra: Any) -> Any:
    shared_default, shared_help = table[name]
    return typer.Option(shared_default if default is _KEEP else default, help=help or shared_help, **extra)


def build_option(name: str, default: Any = _KEEP, help: str | None = None) -> Any:
    """A build option (``BUILD_OPTIONS``); ``--out`` is validated when parsed."""
    return _option(BUILD_OPTIONS, name, default, help, **({"callback": ensure_writable} if name == "out" else {}))


def shape_option(name: str, default: Any = _KEEP, help: str | None = None) -> Any:
    """An episode-shape option (``SHAPE_OPTIONS``: ways, shots, queries, val, meta_tasks, goal_tasks)."""
    return _option(SHAPE_OPTIONS, name, default, help)


def parse_range(text: str, what: str) -> tuple[int, int]:
    """'2' -> (2, 2); '1-3' -> (1, 3)."""
    low, _, high = text.partition("-")
    try:
        lo, hi = int(low), int(high or low)
    except ValueError:
        raise FewtaskError(f"{what} must be N or LOW-HIGH, e.g. 1-3; got {text!r}") from None
    if not 0 <= lo <= hi:
        raise FewtaskError(f"{what} {text!r} needs 0 <= LOW <= HIGH")
    return lo, hi


def parse_float_pair(text: str, option: str) -> tuple[float, float]:
    """'0.25,0.75' -> (0.25, 0.75): an option's LOW,HIGH pair (the builder checks the bounds)."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise FewtaskError(f"{option} must be LOW,HIGH, e.g. 0.5,2.0; got {text!r}") from None
    return low, high


def parse_fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or any(p <= 0 for p in parts):
        raise FewtaskError(f"--alphabet-split must be three positive numbers TRAIN,VAL,TEST, e.g. 0.6,0.2,0.2; got {text!r}")
    return parts  # type: ignore[return-value]
