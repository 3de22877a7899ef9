"""Files and locations: local paths or URLs, atomic writes, canonical JSON.

The bottom of fewtask_data (it imports only ``errors``). Locations are strings: a
local path, or any URL webdataset can open (``https://``, ``s3://`` through its
handlers, ``pipe:...``). Writes are atomic (temp file beside the target, then
rename), so a reader or a resumed build never sees half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from fewtask_data.errors import FewtaskError

# ---------------------------------------------------------------- locations


def is_url(location: str) -> bool:
    return "://" in location or location.startswith("pipe:")


def join(root: str, name: str) -> str:
    """``root``/``name`` for a local folder or a URL prefix."""
    return root.rstrip("/") + "/" + name if is_url(root) else os.path.join(root, name)


def read_bytes(location: str) -> bytes:
    """Whole file from a local path or any URL webdataset can open."""
    try:
        if is_url(location):
            import webdataset as wds  # only for URLs: it imports torch

            with wds.gopen(location) as f:
                return f.read()
        return Path(location).read_bytes()
    except (OSError, ValueError) as err:
        raise FewtaskError(f"cannot read {location}: {err}; check the path or URL") from None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ensure_writable(folder: str | Path) -> Path:
    """Create ``folder`` (and its parents) and check files can be written there, or fail with one line."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = temp_path(folder / ".write-probe")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise FewtaskError(f"cannot write to output folder {folder} ({err.strerror}); choose a writable --out") from None
    return folder


# ---------------------------------------------------------------- atomic writes


LOCK_NAME = ".training.lock"


@contextmanager
def exclusive(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (an OS lock on a file in it, released when the
    holder exits, even by a crash): two processes training into the same run folder would
    overwrite each other's checkpoints and logs, so the second gets a one-line error."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    handle = open(folder / LOCK_NAME, "w")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FewtaskError(f"another process is training in {folder}; wait for it to finish or use another --out "
                               "(or another --seeds / --methods)") from None  # fmt: skip
        yield
    finally:
        handle.close()  # closing releases the lock


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
    """Canonical JSON: sorted keys, fixed indent, trailing newline."""
    return (json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def write_json(path: Path, obj: Any) -> None:
    write_bytes(path, json_bytes(obj))


def remove_stale_temps(folder: Path) -> None:
    """Delete temp files left by a killed writer (any pid)."""
    for p in folder.glob(".*.tmp-*"):
        p.unlink(missing_ok=True)


# ---------------------------------------------------------------- named documents


def named_or_json(spec: str | Path, names: Sequence[str], load_named: Callable[[str], Any], what: str) -> tuple[Any, str]:
    """(document, name) for ``spec``: one of ``names`` (``load_named`` gives its document)
    or the path of a JSON file (named by its file name). ``what`` words the one-line
    errors, e.g. "augmentation space"."""
    text = str(spec)
    if text in names:
        return load_named(text), text
    path = Path(text)
    if not path.is_file():
        raise FewtaskError(f"no {what} named {text!r}; known: {', '.join(names) or 'none'} (or pass a path to a .json file)")
    try:
        return json.loads(path.read_text()), path.name
    except json.JSONDecodeError as err:
        raise FewtaskError(f"{what} file {path} is not valid JSON ({err.msg} at line {err.lineno})") from None
