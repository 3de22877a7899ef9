"""The generic, resumable build: source classes + families -> shards, index.json, report, manifest.

Source-agnostic: a source hands over its classes in shard order (each a list of
(sample id, item)) and a picklable ``decode(item) -> uint8 image`` that does the
decoding and resizing; worker processes run it and encode the result. Three steps:
``plan`` (shard contents and the build id, fixed before any image is decoded),
``resume`` (shards written atomically and noted, so a rerun after a kill skips them and
gives the same bytes) and ``finalize`` (index, report and, last, the manifest).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from fewtask_data.builders.finalize import BuildReport, finalize, finished_report
from fewtask_data.builders.plan import (
    BuildOptions, build_id, check_inputs, manifest_head, plan_shards, split_records, validate_early,
)
from fewtask_data.builders.resume import open_work_dir, write_shards
from fewtask_data.sources import SourceClass


def build_dataset(
    out_dir: str | Path,
    *,
    dataset: str,
    builder: str,
    builder_version: str,
    source: dict,
    classes: Sequence[SourceClass],
    decode: Callable[[Any], np.ndarray],
    splits: Mapping[str, Sequence[dict]],
    split_classes: Mapping[str, Sequence[str]] | None = None,
    options: BuildOptions = BuildOptions(),
    params: dict | None = None,
    seeds: dict | None = None,
    synthetic: bool = False,
    augment_space: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BuildReport:
    """Build (or resume building) a family dataset in ``out_dir``; see the module doc.
    ``split_classes`` gives a split's whole class list when families do not cover it all
    (default: the union of its families' classes); the manifest records it either way."""
    out = Path(out_dir)
    check_inputs(classes, splits)
    head = manifest_head(
        dataset=dataset, builder=builder, builder_version=builder_version, source=source, splits=splits,
        records=split_records(classes, splits, split_classes), options=options, params=params, seeds=seeds,
        synthetic=synthetic, augment_space=augment_space,
    )  # fmt: skip
    plan = plan_shards(classes, options.seed, options.shard_size)
    validate_early(head, classes, plan, options)
    identity = build_id(head, classes, options)
    done = finished_report(out, identity)
    if done is not None:
        return done
    notes = write_shards(out, open_work_dir(out, identity), plan, decode, options, progress)
    return finalize(out, head, identity, classes, notes, options)
