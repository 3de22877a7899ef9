"""`fewtask-data episodes`: fixed evaluation family episodes from a dataset, into HDF5."""

from __future__ import annotations

from pathlib import Path

import typer

from fewtask_data.cli.options import shape_option


def episodes_command(
    source: str = typer.Argument(..., help="dataset folder, manifest.json, or URL prefix"),
    out: Path = typer.Option(..., "--out", help="HDF5 file to write (e.g. test.h5)"),
    split: str = typer.Option("test", help="split whose families the episodes come from"),
    count: int = typer.Option(600, min=1, help="number of family episodes"),
    seed: int = typer.Option(0, help="episode seed (same seed, same episodes)"),
    ways: int = shape_option("ways"),
    shots: int = shape_option("shots"),
    queries: int = shape_option("queries"),
    val: int = shape_option("val"),
    meta_tasks: int = shape_option("meta_tasks"),
    goal_tasks: int = shape_option("goal_tasks"),
    per_visit: int = typer.Option(10, min=1, help="episodes drawn per family visit"),
    workers: int = typer.Option(0, min=0, help="processes drawing episodes (same episodes for any count)"),
    max_visit_classes: int = typer.Option(None, min=0, help="a visit to a family of more classes loads this many, drawn per visit (default: the manifest's params.max_visit_classes, 50 for ImageNet builds; 0: whole families)"),
) -> None:
    """Write fixed evaluation family episodes (with replay identities) to HDF5."""
    from fewtask_data.episode import EpisodeShape
    from fewtask_data.formats.hdf5 import write_episodes
    from fewtask_data.stream import FamilyStream, first_episodes

    shape = EpisodeShape(ways, shots, queries, val, meta_tasks, goal_tasks)
    stream = FamilyStream(source, split, shape, seed=seed, episodes_per_visit=per_visit, max_visit_classes=max_visit_classes)
    info = {
        "dataset": stream.manifest.dataset,
        "build_id": stream.manifest.build_id,
        "split": split,
        "seed": seed,
        "episodes_per_visit": per_visit,
        **({"max_visit_classes": stream.max_visit_classes} if stream.max_visit_classes else {}),
    }
    n = write_episodes(out, first_episodes(stream, count, workers), info)
    typer.echo(f"wrote {n} {ways}-way {shots}-shot family episodes from split {split!r} to {out}")
