"""Finishing a build: index.json, the build report and, last, manifest.json (so an
unfinished build never looks complete); a finished build is recognised by its id."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from fewtask_data.builders.plan import REPORT_NAME, BuildOptions
from fewtask_data.builders.resume import WORK_DIR
from fewtask_data.errors import FewtaskError
from fewtask_data.formats.manifest import MANIFEST_NAME, save_manifest
from fewtask_data.formats.shards import INDEX_NAME, index_document
from fewtask_data.io import json_bytes, sha256_bytes, write_bytes, write_json
from fewtask_data.sources import SourceClass


@dataclass
class BuildReport:
    out: str
    written: int
    shards: int
    failed: list[dict]  # {"class", "sample", "reason"}

    def summary(self) -> str:
        return f"{self.written} images in {self.shards} shards at {self.out}; {len(self.failed)} failed"


def finished_report(out: Path, identity: str) -> BuildReport | None:
    """The report of a finished build of this id in ``out`` (None when there is none);
    a finished build of another id is an error."""
    manifest_path = out / MANIFEST_NAME
    if not manifest_path.exists():
        return None
    existing = json.loads(manifest_path.read_text())
    if existing.get("build_id") != identity:
        raise FewtaskError(f"{out} already holds a different build; delete it or choose another output folder")
    shutil.rmtree(out / WORK_DIR, ignore_errors=True)
    report = json.loads((out / REPORT_NAME).read_text())
    return BuildReport(str(out), report["written"], len(existing["shards"]), report["failed"])


def finalize(
    out: Path, head: dict, identity: str, classes: Sequence[SourceClass], notes: list[dict], options: BuildOptions
) -> BuildReport:
    """Write index.json, build_report.json and manifest.json from the shards' notes."""
    shapes = {tuple(note["shape"]) for note in notes if note["shape"] is not None}
    if len(shapes) > 1:
        raise FewtaskError(f"the decoder returned images of several shapes {sorted(shapes)}; it must resize to one size")
    if not shapes:
        raise FewtaskError("no image could be decoded; see the failures in the build report")
    entries = [note["entry"] for note in notes]
    failed = [f for note in notes for f in note["failed"]]
    written = sum(e["count"] for e in entries)
    counts = {c.id: 0 for c in classes}
    for e in entries:
        for cls, start, stop, *_ in e["classes"]:
            counts[cls] += stop - start

    index_bytes = json_bytes(index_document(entries, options.encoding))
    write_bytes(out / INDEX_NAME, index_bytes)
    write_json(out / REPORT_NAME, {"written": written, "failed_count": len(failed), "failed": failed})
    manifest = {
        **head,
        "build_id": identity,
        "image": {
            "encoding": options.encoding,
            "quality": options.quality if options.encoding == "jpeg" else None,
            "shape": list(shapes.pop()),
        },
        "classes": [{"id": c.id, "count": counts[c.id], "meta": c.meta} for c in classes],
        "shards": [{k: e[k] for k in ("name", "sha256", "bytes", "count")} for e in entries],
        "index": {"name": INDEX_NAME, "sha256": sha256_bytes(index_bytes)},
        "report": {"name": REPORT_NAME, "failed": len(failed)},
    }
    save_manifest(manifest, out / MANIFEST_NAME)  # validated
    shutil.rmtree(out / WORK_DIR, ignore_errors=True)
    return BuildReport(str(out), written, len(entries), failed)
