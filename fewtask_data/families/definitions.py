"""Family definitions documents (``fewtask-family-definitions``): splits -> classes (in
depth-first leaf order) and families {id, wnid, lemma, depth, classes}, as computed from
WordNet by ``families/hierarchy.py``. Builds consume them; the shipped ones (the
repository's ``manifests/``, installed in ``fewtask_data/data/manifests/``) load by name
without WordNet (see docs/imagenet.md). Loading needs only the standard library.

    from fewtask_data.families.definitions import load_definitions
    defs = load_definitions("imagenet-meta-dataset")
    defs["splits"]["val"]["families"][0]   # {"id": "val-n02085374", "lemma": "toy_dog", ...}
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Iterable

from fewtask_data.errors import FewtaskError
from fewtask_data.io import named_or_json

DEFINITIONS_FORMAT = "fewtask-family-definitions"
DEFINITIONS_VERSION = 1


def check_definitions(defs: dict, where: str = "family definitions") -> None:
    """FewtaskError unless defs is a well-formed definitions document with clean splits."""
    if not isinstance(defs, dict) or defs.get("format") != DEFINITIONS_FORMAT:
        raise FewtaskError(f"{where} is not a {DEFINITIONS_FORMAT} document")
    if defs.get("format_version") != DEFINITIONS_VERSION:
        raise FewtaskError(f"{where} has format_version {defs.get('format_version')!r}; this fewtask reads {DEFINITIONS_VERSION}")
    owner: dict[str, str] = {}
    for split, body in defs.get("splits", {}).items():
        members = set(body["classes"])
        for c in body["classes"]:
            if owner.setdefault(c, split) != split:
                raise FewtaskError(f"{where}: class {c} is in splits {owner[c]} and {split}")
        for fam in body["families"]:
            outside = sorted(set(fam["classes"]) - members)
            if outside:
                raise FewtaskError(f"{where}: family {fam['id']} has classes outside split {split}: {', '.join(outside[:5])}")


def restrict_definitions(defs: dict, present: Iterable[str]) -> dict:
    """Definitions limited to the present classes; a family keeps its place when it still
    has at least min_classes (at least 2) of them. Used without WordNet, where spans
    cannot be recomputed."""
    present = set(present)
    floor = max(2, int(defs["params"].get("min_classes", 2)))
    if defs["params"].get("families") == "tiered":
        floor = 2
    splits = {}
    for split, body in defs["splits"].items():
        classes = [c for c in body["classes"] if c in present]
        if not classes:
            continue
        fams = []
        for fam in body["families"]:
            kept = [c for c in fam["classes"] if c in present]
            if len(kept) >= floor:
                fams.append({**fam, "classes": kept})
        splits[split] = {"classes": classes, "families": fams}
    return {**defs, "splits": splits, "lemmas": {c: n for c, n in defs.get("lemmas", {}).items() if c in present}}


def unreached_classes(defs: dict, split: str) -> list[str]:
    """The split's classes that no family holds (no episode can use them), in leaf order."""
    body = defs["splits"][split]
    reached = {c for fam in body["families"] for c in fam["classes"]}
    return [c for c in body["classes"] if c not in reached]


def definitions_json(defs: dict) -> str:
    """The canonical text of a definitions document (sorted keys, trailing newline)."""
    return json.dumps(defs, indent=1, sort_keys=True) + "\n"


def _shipped():
    return files("fewtask_data").joinpath("data", "manifests")


def list_definitions() -> list[str]:
    """Names of the shipped definition files (file names without .json), sorted."""
    folder = _shipped()
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def load_definitions(name_or_path: str | Path) -> dict:
    """A shipped definitions document by name, or one from a JSON file path; checked."""
    read = lambda name: json.loads(_shipped().joinpath(f"{name}.json").read_text())  # noqa: E731
    defs, where = named_or_json(name_or_path, list_definitions(), read, "family definitions")
    check_definitions(defs, where)
    return defs
