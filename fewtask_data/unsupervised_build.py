"""`fewtask-data build unsupervised-families`: an unlabelled image collection -> UMTRA-style
task families with hierarchical augmentation, in the same shards, manifest, FamilyStream
and HDF5 episode store as the labelled families (see fewtask_data/families/unsupervised.py).

Sources: ``--images DIR`` (any folder tree of images, zips included) or ``--shards DIR``
(a built dataset; its class ids are kept only as labels for collision reports and the
optional ``--avoid-collisions``). Unsupervised families are for *training*; evaluate on
labelled families built by the other builders (docs/unsupervised.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import typer

from fewtask_data.build import BuildOptions, BuildReport, build
from fewtask_data.cliutil import BuildProgress, echo_build_report
from fewtask_data.errors import FewtaskError
from fewtask_data.families import unsupervised as uns
from fewtask_data.sources import images as src

BUILDER = "unsupervised-families"
BUILDER_VERSION = "1"
EVALUATION_NOTE = (
    "unsupervised families are for training only: evaluate on labelled families "
    "(`fewtask-data build omniglot-families` / `build imagenet-families`, then "
    "`fewtask-data episodes DATA --split test --out test.h5` and "
    "`fewtask-train eval --checkpoint RUN --episodes test.h5`)"
)


def build_unsupervised_families(
    out: Path,
    *,
    images: Sequence[Path] | None = None,
    shards: Path | None = None,
    policy: str = "handwritten",
    families: int = 20,
    fixed_dims: tuple[int, int] | None = None,
    pool_fraction: float = 1.0,
    group_size: int = 64,
    ways: int = 5,
    avoid_collisions: bool = False,
    support: str = "original",
    image_size: int | None = None,
    color: str | None = None,
    invert: bool | None = None,
    resize: str = "squash",
    options: BuildOptions = BuildOptions(),
    progress=None,
) -> tuple[BuildReport, src.Collection, dict]:
    """The whole command as a function: (build report, listed collection, manifest params)."""
    if bool(images) == (shards is not None):
        raise FewtaskError("pass exactly one source: --images DIR (image files, any layout) or --shards DIR (a built dataset)")
    if shards is not None and (image_size is not None or color is not None or invert is not None or resize != "squash"):
        raise FewtaskError("--image-size, --color, --invert and --resize apply to --images; shard images are used as built")
    if support not in uns.SUPPORT_MODES:
        raise FewtaskError(f"--support must be one of {', '.join(uns.SUPPORT_MODES)}, got {support!r}")
    chosen = uns.load_policy(policy)
    if fixed_dims is not None:
        chosen = uns.validate_policy({**chosen, "fixed_dims": list(fixed_dims)}, chosen["name"])
    look = chosen["image"]
    decoder = src.CollectionDecoder(
        image_size or look["size"], color or look["color"], look["invert"] if invert is None else invert, resize
    )
    collection = src.list_images(images) if images else src.list_shards(shards)
    plan = uns.plan_unsupervised(
        collection.images,
        policy=chosen,
        families=families,
        pool_fraction=pool_fraction,
        group_size=group_size,
        ways=ways,
        seed=options.seed,
        labelled=collection.labelled,
        avoid_collisions=avoid_collisions,
    )
    encoding = collection.encoding or ("png" if decoder.color == "gray" else "jpeg")
    options = BuildOptions(encoding, options.quality, options.shard_size, options.seed, options.workers, options.strict)
    params = {
        "policy": chosen,
        "episode_sampler": {"name": uns.UmtraSampler.name, "support": support, "avoid_collisions": avoid_collisions},
        "families": families,
        "pool_fraction": pool_fraction,
        "group_size": group_size,
        "label_collisions": plan.collisions,
        "decode": {"color": decoder.color, "size": decoder.size, "invert": decoder.invert, "resize": decoder.resize}
        if collection.kind == "images"
        else "as in the source shards",
        "evaluation": EVALUATION_NOTE,
    }
    source = {
        "fingerprint": collection.fingerprint,
        "kind": collection.kind,
        "images": len(collection.images),
        "skipped_files": len(collection.skipped),
        "skipped_examples": collection.skipped[:20],
    }
    name = Path(images[0] if images else shards).resolve().name
    report = build(
        out,
        dataset=f"unsupervised-{src.safe_id(name)}",
        builder=BUILDER,
        builder_version=BUILDER_VERSION,
        source=source,
        classes=plan.classes,
        decode=decoder,
        splits={"train": plan.families},
        options=options,
        params=params,
        seeds={"groups": options.seed, "families": options.seed},
        augment_space=chosen["space"],
        progress=progress,
    )
    return report, collection, params


def unsupervised_families_command(
    out: Path = typer.Option(..., help="output folder for shards, index.json, build_report.json, manifest.json"),
    images: list[Path] = typer.Option(None, help="a folder tree of images, any layout, or a .zip (zips inside folders are read too); repeat for several; no labels"),
    shards: Path = typer.Option(None, help="a built dataset folder whose images to use; its classes are kept only as labels for collision reports"),
    policy: str = typer.Option("handwritten", help="augmentation policy: 'handwritten' (UMTRA Omniglot: pixel zeroing + translation, 28 px gray), 'natural' (crops, flips, colour jitter, rotation, 84 px RGB), or a JSON file {space, fixed_dims, image}"),
    families: int = typer.Option(20, help="number of families, each fixing a sampled subset of the policy's dimensions"),
    fixed_dims: str = typer.Option(None, help="how many dimensions each family fixes, N or LOW-HIGH (default: the policy's)"),
    pool_fraction: float = typer.Option(1.0, help="each family's pool: this random fraction of the collection (1 = all), so families differ in content too"),
    group_size: int = typer.Option(64, help="images per group: the unit of shards and pools (not a class)"),
    ways: int = typer.Option(5, help="N of the tasks you will stream: checked against the collection, used for the collision rate"),
    avoid_collisions: bool = typer.Option(False, help="with --shards: never put two images of one real label in a task (recorded in the manifest)"),
    support: str = typer.Option("original", help="original: the first support view is the family anchor (fixed values only), as UMTRA's original image; augmented: every view augmented"),
    image_size: int = typer.Option(None, help="--images: side of the square images (default: the policy's, 28 or 84)"),
    color: str = typer.Option(None, help="--images: gray or rgb (default: the policy's)"),
    invert: bool = typer.Option(None, "--invert/--no-invert", help="--images, gray: make dark-on-light strokes bright on black (default: the policy's)"),
    resize: str = typer.Option("squash", help="--images, rgb: squash or center-crop to a square"),
    workers: int = typer.Option(0, help="decode processes (0 = all cores, 1 = in this process)"),
    shard_size: int = typer.Option(2000, help="images per shard"),
    quality: int = typer.Option(90, help="JPEG quality (rgb images)"),
    seed: int = typer.Option(0, help="seed of the groups, pools, family augmentations and within-group shuffle"),
    strict: bool = typer.Option(False, help="an undecodable image stops the build (default: skipped and listed)"),
) -> None:
    """Build UMTRA-style unsupervised task families (each image its own class, support and
    query as augmented views; each family fixes part of the augmentation) for TRAINING.

    Honest evaluation: train on these, evaluate on labelled families, e.g.

      fewtask-data build unsupervised-families --images DIR --out uns

      fewtask-train fit --data uns --out runs/uns

      fewtask-data build omniglot-families --root OMNIGLOT --out omni

      fewtask-data episodes omni --split test --out omni-test.h5

      fewtask-train eval --checkpoint runs/uns --episodes omni-test.h5
    """
    from fewtask_data.omniglot_build import parse_range

    options = BuildOptions(shard_size=shard_size, seed=seed, workers=workers, strict=strict, quality=quality)
    with BuildProgress(BUILDER) as progress:
        report, collection, params = build_unsupervised_families(
            out,
            images=images,
            shards=shards,
            policy=policy,
            families=families,
            fixed_dims=None if fixed_dims is None else parse_range(fixed_dims, "--fixed-dims"),
            pool_fraction=pool_fraction,
            group_size=group_size,
            ways=ways,
            avoid_collisions=avoid_collisions,
            support=support,
            image_size=image_size,
            color=color,
            invert=invert,
            resize=resize,
            options=options,
            progress=progress,
        )
    echo_build_report(report, out, "undecodable, skipped")
    for rel in collection.skipped[:10]:
        typer.echo(f"  not an image, skipped: {rel}")
    if len(collection.skipped) > 10:
        typer.echo(f"  ... and {len(collection.skipped) - 10} more non-image files (count in manifest source.skipped_files)")
    c = params["label_collisions"]
    if c["labels"] == "known":
        typer.echo(
            f"label collisions ({c['ways']}-way tasks): {c['rate_without_avoidance']:.4%} of tasks draw two images of one "
            f"real label without avoidance; {'avoided (rate 0)' if c['avoid_collisions'] else 'not avoided'}"
        )
    typer.echo(f"note: {EVALUATION_NOTE}")
