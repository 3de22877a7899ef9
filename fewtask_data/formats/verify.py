"""`verify`: re-check a built dataset, the index against the manifest and every shard
against the index (checksum, sample count, class ranges), reporting every problem."""

from __future__ import annotations

from pathlib import Path

from fewtask_data.errors import FewtaskError
from fewtask_data.formats.manifest import load_manifest
from fewtask_data.formats.shards import INDEX_NAME, iter_class_ranges, iter_shard_bytes, load_index
from fewtask_data.io import join, read_bytes, sha256_bytes


def verify(root: str | Path) -> list[str]:
    """Human-readable problems (empty when everything matches)."""
    root = str(root)
    problems: list[str] = []
    manifest = load_manifest(root)
    if sha256_bytes(read_bytes(join(root, INDEX_NAME))) != manifest.index_sha256:
        problems.append(f"{INDEX_NAME}: checksum differs from the manifest's")
    index = load_index(root)
    listed = [(s["name"], s["sha256"]) for s in manifest.shards]
    if listed != [(s["name"], s["sha256"]) for s in index["shards"]]:
        problems.append(f"{INDEX_NAME}: shard list differs from the manifest's")
    for entry in index["shards"]:
        name = entry["name"]
        try:
            data = read_bytes(join(root, name))
        except FewtaskError as err:
            problems.append(f"{name}: {err}")
            continue
        if sha256_bytes(data) != entry["sha256"] or len(data) != entry["bytes"]:
            problems.append(f"{name}: checksum mismatch (truncated or altered)")
            continue
        want = [(p, r[0]) for r in entry["classes"] for p in range(r[1], r[2])]
        try:
            got = [(pos, cls) for pos, cls, _, _ in iter_shard_bytes(data, name, count=entry["count"])]
            by_range = [(pos, cls) for pos, cls, _, _ in iter_class_ranges(data, name, entry["classes"])]
        except FewtaskError as err:
            problems.append(str(err))
            continue
        if got != want or by_range != want:
            problems.append(f"{name}: samples do not match the index's class ranges")
    return problems
