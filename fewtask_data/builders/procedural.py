"""Writing procedural family definitions (fewtask_data.formats.procedural): the one writer
every procedural builder uses, and what those builders share (splits, their seeds, counts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from fewtask_data.errors import FewtaskError
from fewtask_data.formats.manifest import MANIFEST_NAME
from fewtask_data.formats.procedural import FORMAT_VERSION, PROCEDURAL_FORMAT, ProceduralManifest, content_id, load_any
from fewtask_data.io import ensure_writable, json_bytes, write_json

SPLITS = ("train", "val", "test")


def split_seed(seed: int, split: str) -> int:
    """The seed of one split's families: disjoint generator streams of one seed."""
    return seed * len(SPLITS) + SPLITS.index(split)


def check_counts(counts: Mapping[str, int]) -> None:
    """At least one family in each of train, val and test (``--SPLIT-families``)."""
    if set(counts) != set(SPLITS):
        raise FewtaskError(f"need family counts for the splits {', '.join(SPLITS)}, got {', '.join(counts)}")
    for split in SPLITS:
        if not isinstance(counts[split], int) or counts[split] < 1:
            raise FewtaskError(f"--{split}-families must be >= 1, got {counts[split]!r}")


def write_procedural(
    out: Path, *, dataset: str, description: str, builder: str, version: str, params: dict, seeds: dict, splits: dict
) -> ProceduralManifest:
    """Write OUT/manifest.json (atomically, canonical JSON, the build id fingerprints the
    content). A rerun of the same build is a no-op, also over a build of the old kind that
    holds the same families; another build in ``out`` is refused."""
    out = ensure_writable(out)
    fields = {"dataset": dataset, "description": description, "builder": {"name": builder, "version": str(version)},
              "params": params, "seeds": seeds, "splits": splits}  # fmt: skip
    doc = {"format": PROCEDURAL_FORMAT, "format_version": FORMAT_VERSION, **json.loads(json_bytes(fields))}  # tuples -> lists
    doc["build_id"] = content_id(doc)
    if (out / MANIFEST_NAME).exists():
        existing = load_any(out)
        if not isinstance(existing, ProceduralManifest) or {**existing.data, "build_id": doc["build_id"]} != doc:
            raise FewtaskError(f"{out} already holds a different build; delete it or choose another output folder")
        return existing
    manifest = ProceduralManifest(doc, str(out))  # validated before anything is written
    write_json(out / MANIFEST_NAME, doc)
    return manifest
