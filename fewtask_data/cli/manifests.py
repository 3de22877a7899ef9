"""`fewtask-data manifests list|show`: the shipped WordNet family definitions (no images)."""

from __future__ import annotations

import typer

from fewtask_data.cli.common import make_app
from fewtask_data.errors import FewtaskError
from fewtask_data.families.definitions import definitions_json, list_definitions, load_definitions, unreached_classes
from fewtask_data.families.hierarchy import SPLITS

manifests_app = make_app("Shipped WordNet family definitions (class splits + families, no images).")


def summary_line(name: str, defs: dict) -> str:
    splits = defs["splits"]
    parts = [
        f"{s} {len(splits[s]['classes'])} classes / {len(splits[s]['families'])} families / "
        f"{len(unreached_classes(defs, s))} in no family"
        for s in ordered_splits(defs)
    ]
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
    unreached: bool = typer.Option(False, "--unreached", help="also name the classes of each split that no family reaches"),
) -> None:
    """Show one definitions file: its families (id, lemma, depth, class count) per split, and
    how many of the split's classes no family reaches."""
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
        missing = unreached_classes(defs, s)
        typer.echo(f"[{s}] {len(body['classes'])} classes, {len(missing)} in no family")
        for fam in body["families"]:
            typer.echo(f"  {fam['id']:<16} {fam['lemma']:<28} depth {fam['depth']:<2} {len(fam['classes'])} classes")
        if unreached and missing:
            typer.echo(f"  in no family ({len(missing)}):")
            for c in missing:
                typer.echo(f"    {c}  {defs.get('lemmas', {}).get(c, '')}".rstrip())
