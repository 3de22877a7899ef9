"""Atomic file writes: a reader (or a resumed build) never sees half a file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def temp_path(path: Path) -> Path:
    """Temp name beside ``path`` (same filesystem, so rename is atomic); unique per process."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_bytes(path: Path, data: bytes) -> None:
    tmp = temp_path(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def json_bytes(obj: Any) -> bytes:
    """Deterministic JSON: sorted keys, fixed indent, trailing newline."""
    return (json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def write_json(path: Path, obj: Any) -> None:
    write_bytes(path, json_bytes(obj))


def remove_stale_temps(folder: Path) -> None:
    """Delete temp files left by a killed writer (any pid)."""
    for p in folder.glob(".*.tmp-*"):
        p.unlink(missing_ok=True)
