"""Writing a procedural family definition: a manifest with no shards (an empty index and
report), whose families carry their parameters in ``meta``. Shared by the procedural
builders, so they are validated, versioned and `inspect`-able like image families."""

from __future__ import annotations

from pathlib import Path

from fewtask_data.builders.finalize import BuildReport, finished_report
from fewtask_data.builders.plan import REPORT_NAME
from fewtask_data.formats.manifest import MANIFEST_NAME, save_manifest
from fewtask_data.formats.shards import INDEX_NAME, index_document
from fewtask_data.io import json_bytes, sha256_bytes, write_bytes, write_json


def write_procedural(out: Path, head: dict, classes: list[dict]) -> BuildReport:
    """Write index.json, build_report.json and (last) manifest.json for ``head`` (from
    `manifest_head`) and ``classes``; rerunning the same build is a no-op."""
    identity = sha256_bytes(json_bytes({"head": head, "classes": classes}))
    done = finished_report(out, identity)
    if done is not None:
        return done
    index_bytes = json_bytes(index_document([], "png"))
    write_bytes(out / INDEX_NAME, index_bytes)
    write_json(out / REPORT_NAME, {"written": 0, "failed_count": 0, "failed": []})
    manifest = {
        **head, "build_id": identity,
        "image": {"encoding": "png", "quality": None, "shape": [1, 1]},  # required by the schema; no images
        "classes": classes, "shards": [],
        "index": {"name": INDEX_NAME, "sha256": sha256_bytes(index_bytes)},
        "report": {"name": REPORT_NAME, "failed": 0},
    }  # fmt: skip
    save_manifest(manifest, out / MANIFEST_NAME)
    return BuildReport(str(out), 0, 0, [])
