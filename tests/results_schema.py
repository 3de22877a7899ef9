"""The one results.json schema (trainer/evaluation/results.schema.json), checked by every
experiment's end-to-end test."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "trainer" / "evaluation" / "results.schema.json").read_text())


def check_results(source: Path | dict) -> dict:
    """The results (read from ``source`` when it is a path), after validating them."""
    results = json.loads(Path(source).read_text()) if isinstance(source, (str, Path)) else source
    jsonschema.validate(results, SCHEMA)
    return results
