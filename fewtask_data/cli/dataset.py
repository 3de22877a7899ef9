"""`fewtask-data inspect` and `fewtask-data verify`: read a built dataset (or an episode file)."""

from __future__ import annotations

import json

import typer

from fewtask_data.errors import FewtaskError


def inspect_command(
    path: str,
    unreached: bool = typer.Option(False, "--unreached", help="name the classes of each split that no family reaches"),
) -> None:
    """Print a readable summary of a dataset (folder, manifest.json, URL) or an episode .h5 file."""
    if path.endswith((".h5", ".hdf5")):
        from fewtask_data.formats.hdf5 import EpisodeStore

        with EpisodeStore(path) as store:
            fams = sorted(set(store.file["family"].asstr()[:]))
            typer.echo(f"episodes  {len(store)} of shape {store.shape.as_dict()}")
            typer.echo(f"families  {len(fams)}: {', '.join(fams[:10])}{' ...' if len(fams) > 10 else ''}")
            typer.echo(f"info      {json.dumps(store.info, sort_keys=True)}")
        return
    from fewtask_data.formats.manifest import summary
    from fewtask_data.formats.procedural import ProceduralManifest, load_any, procedural_summary

    manifest = load_any(path)
    typer.echo(procedural_summary(manifest) if isinstance(manifest, ProceduralManifest) else summary(manifest, name_unreached=unreached))


def verify_command(path: str) -> None:
    """Re-check every shard's checksum and contents against index.json and the manifest
    (procedural family definitions: check the manifest; they have no shards)."""
    from fewtask_data.formats.procedural import ProceduralManifest, load_any
    from fewtask_data.formats.verify import verify

    manifest = load_any(path)
    if isinstance(manifest, ProceduralManifest):
        families = sum(len(manifest.families(s)) for s in manifest.splits)
        typer.echo(f"ok: {path} holds valid procedural family definitions ({manifest.builder} version {manifest.version}, "
                   f"{families} families); there are no shards to verify")  # fmt: skip
        return
    problems = verify(path)
    for p in problems:
        typer.echo(f"FAIL {p}", err=True)
    if problems:
        raise FewtaskError(f"{len(problems)} problem(s) in {path}; rebuild the dataset (a rerun of the build resumes)")
    typer.echo(f"ok: every shard in {path} matches index.json and the manifest")
