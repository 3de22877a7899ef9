"""Shipped family definitions (`manifests/`): list, show and load them without WordNet.

The JSON files live inside the package, in ``fewtask_data/data/manifests/``, so they
are installed with it (also non-editable); the repository's top-level ``manifests/``
points there. Each is a ``fewtask-family-definitions`` document (see
docs/imagenet.md): splits -> classes (in depth-first leaf order) and families
{id, wnid, lemma, depth, classes}. Loading needs only the standard library.

    from fewtask_data.manifests_api import load_definitions
    defs = load_definitions("imagenet-meta-dataset")
    defs["splits"]["val"]["families"][0]   # {"id": "val-n02085374", "lemma": "toy_dog", ...}
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import typer

from fewtask_data.cliutil import make_app
from fewtask_data.errors import FewtaskError
from fewtask_data.families.wordnet import SPLITS, check_definitions


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
    text = str(name_or_path)
    if text in list_definitions():
        where = f"shipped definitions {text}"
        raw = _shipped().joinpath(f"{text}.json").read_text()
    elif text.endswith(".json") and Path(text).is_file():
        where = text
        raw = Path(text).read_text()
    else:
        raise FewtaskError(
            f"no family definitions named {text!r}; shipped: {', '.join(list_definitions()) or 'none'} "
            "(or pass a path to a .json file)"
        )
    try:
        defs = json.loads(raw)
    except json.JSONDecodeError as err:
        raise FewtaskError(f"{where} is not valid JSON ({err.msg} at line {err.lineno})") from None
    check_definitions(defs, where)
    return defs


def definitions_json(defs: dict) -> str:
    """The canonical text of a definitions document (sorted keys, trailing newline)."""
    return json.dumps(defs, indent=1, sort_keys=True) + "\n"


def summary_line(name: str, defs: dict) -> str:
    splits = defs["splits"]
    parts = [f"{s} {len(splits[s]['classes'])} classes / {len(splits[s]['families'])} families" for s in ordered_splits(defs)]
    p = defs["params"]
    if p["families"] == "tiered":
        kind = "tiered categories"
    else:
        kind = f"wordnet {p['min_classes']}-{p['max_classes']} classes{', disjoint' if p['disjoint'] else ''}"
    return f"{name:<28} {kind}: " + "; ".join(parts)


def ordered_splits(defs: dict) -> list[str]:
    """The document's splits in train, val, test order (JSON keys are sorted)."""
    known = [s for s in SPLITS if s in defs["splits"]]
    return known + sorted(s for s in defs["splits"] if s not in known)


manifests_app = make_app("Shipped WordNet family definitions (class splits + families, no images).")


@manifests_app.command("list")
def list_command() -> None:
    """List the shipped family definitions with their class and family counts."""
    for name in list_definitions():
        typer.echo(summary_line(name, load_definitions(name)))


@manifests_app.command("show")
def show_command(
    name: str = typer.Argument(..., help="a name from `fewtask-data manifests list`, or a .json path"),
    split: str = typer.Option(None, help="only this split (train, val or test)"),
    as_json: bool = typer.Option(False, "--json", help="print the whole JSON document"),
) -> None:
    """Show one definitions file: its families (id, lemma, depth, class count) per split."""
    defs = load_definitions(name)
    if as_json:
        typer.echo(definitions_json(defs), nl=False)
        return
    if split is not None and split not in defs["splits"]:
        raise FewtaskError(f"{name} has no split {split!r}; it has {', '.join(defs['splits'])}")
    typer.echo(summary_line(name, defs))
    for s in ordered_splits(defs):
        body = defs["splits"][s]
        if split is not None and s != split:
            continue
        typer.echo(f"[{s}] {len(body['classes'])} classes")
        for fam in body["families"]:
            typer.echo(f"  {fam['id']:<16} {fam['lemma']:<28} depth {fam['depth']:<2} {len(fam['classes'])} classes")
