"""Build planning: what a build writes, fixed before any image is decoded.

Each class's items are permuted with ``default_rng([seed, crc32(class id)])`` and the
permuted list is cut into shards of ``shard_size`` planned items, so every shard's
content is fixed by the plan alone (a failed image just leaves its shard one sample
shorter). Families and splits are checked with the manifest rules here, and the build
id fingerprints everything that determines the output bytes.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from fewtask_data.errors import FewtaskError
from fewtask_data.formats.image import EXTENSIONS
from fewtask_data.formats.manifest import FORMAT_VERSION, check_id, validate_manifest
from fewtask_data.formats.shards import INDEX_NAME, shard_name
from fewtask_data.io import json_bytes, sha256_bytes
from fewtask_data.sources import SourceClass

REPORT_NAME = "build_report.json"


@dataclass(frozen=True)
class BuildOptions:
    encoding: str = "png"  # png for grayscale/binary, jpeg for photographs
    quality: int = 90  # JPEG quality
    shard_size: int = 2000  # planned samples per shard
    seed: int = 0  # within-class shuffle seed
    workers: int = 0  # 0 = all cores, 1 = in this process
    strict: bool = False  # a failed image stops the build

    def __post_init__(self) -> None:
        if self.encoding not in EXTENSIONS:
            raise FewtaskError(f"encoding must be png or jpeg, got {self.encoding!r}")
        if not 1 <= self.quality <= 100:
            raise FewtaskError(f"JPEG quality must be in 1..100, got {self.quality}")
        if self.shard_size < 1 or self.seed < 0 or self.workers < 0:
            raise FewtaskError("shard_size must be >= 1, seed and workers >= 0")


Plan = list[list[tuple[str, str, Any]]]  # per shard: (class id, sample id, item), class-contiguous


def shuffled_items(cls: SourceClass, seed: int) -> list[tuple[str, Any]]:
    """The class's items in their recorded within-class order."""
    rng = np.random.default_rng([seed, zlib.crc32(cls.id.encode())])
    return [cls.items[i] for i in rng.permutation(len(cls.items))]


def plan_shards(classes: Sequence[SourceClass], seed: int, shard_size: int) -> Plan:
    flat = [(c.id, sid, item) for c in classes for sid, item in shuffled_items(c, seed)]
    return [flat[i : i + shard_size] for i in range(0, len(flat), shard_size)] or [[]]


def check_inputs(classes: Sequence[SourceClass], splits: Mapping[str, Sequence[dict]]) -> None:
    seen: set[str] = set()
    for c in classes:
        check_id(c.id, "class id")
        if c.id in seen:
            raise FewtaskError(f"class {c.id!r} is given twice; class ids must be unique")
        seen.add(c.id)
        samples = [sid for sid, _ in c.items]
        for sid in samples:
            check_id(sid, f"sample id in class {c.id!r}:")
        if len(set(samples)) != len(samples):
            raise FewtaskError(f"class {c.id!r} has repeated sample ids")
    if not splits:
        raise FewtaskError("a build needs at least one split with families")


def split_records(
    classes: Sequence[SourceClass], splits: Mapping[str, Sequence[dict]], split_classes: Mapping[str, Sequence[str]] | None
) -> dict[str, list[str]]:
    """Each split's whole class list in shard order, as the manifest records it: the given
    list, or the union of the split's families' classes. A class that is not built is left
    out of a union (the family check names it) and refused in a given list."""
    given = dict(split_classes or {})
    stray = sorted(set(given) - set(splits))
    if stray:
        raise FewtaskError(f"split classes are given for {', '.join(stray)}, which the splits do not name; add its families (or none)")
    built = {c.id for c in classes}
    out = {}
    for split, fams in splits.items():
        if split in given:
            members = set(given[split])
            unknown = sorted(members - built)
            if unknown:
                raise FewtaskError(
                    f"split {split!r} lists {len(unknown)} class(es) the build has no images for: {', '.join(unknown[:5])}; "
                    "give every split class to the build"
                )
        else:
            members = {c for f in fams for c in f["classes"]}
        out[split] = [c.id for c in classes if c.id in members]
    return out


def manifest_head(
    *,
    dataset: str,
    builder: str,
    builder_version: str,
    source: dict,
    splits: Mapping[str, Sequence[dict]],
    records: Mapping[str, Sequence[str]],
    options: BuildOptions,
    params: dict | None,
    seeds: dict | None,
    synthetic: bool,
    augment_space: dict | None,
) -> dict:
    """The manifest fields known before the build: everything but images, shards and checksums;
    ``records`` are the splits' whole class lists (``split_records``)."""
    families = {s: [dict(f, meta=dict(f.get("meta", {}))) for f in fams] for s, fams in splits.items()}
    return {
        "format": "fewtask-manifest",
        "format_version": FORMAT_VERSION,
        "dataset": dataset,
        "synthetic": bool(synthetic),
        "builder": {"name": builder, "version": str(builder_version)},
        "source": dict(source),
        "params": {**(params or {}), "shard_size": options.shard_size},
        "seeds": {**(seeds or {}), "shuffle": options.seed},
        "splits": {s: {"classes": list(records[s]), "families": fams} for s, fams in families.items()},
        **({"augment_space": augment_space} if augment_space is not None else {}),
    }


def validate_early(head: dict, classes: Sequence[SourceClass], plan: Plan, options: BuildOptions) -> None:
    """Check families and splits with the manifest rules before any image is decoded."""
    zero = "0" * 64
    validate_manifest(
        {
            **head,
            "build_id": zero,
            "image": {"encoding": options.encoding, "quality": None, "shape": [1, 1]},
            "classes": [{"id": c.id, "count": len(c.items), "meta": c.meta} for c in classes],
            "shards": [{"name": shard_name(n), "sha256": zero, "bytes": 0, "count": len(p)} for n, p in enumerate(plan)],
            "index": {"name": INDEX_NAME, "sha256": zero},
            "report": {"name": REPORT_NAME, "failed": 0},
        }
    )


def build_id(head: dict, classes: Sequence[SourceClass], options: BuildOptions) -> str:
    """Fingerprint of everything that determines the output bytes."""
    description = {
        "head": head,
        "encoding": options.encoding,
        "quality": options.quality,
        "classes": [{"id": c.id, "meta": c.meta, "samples": [s for s, _ in c.items]} for c in classes],
    }
    return sha256_bytes(json_bytes(description))
