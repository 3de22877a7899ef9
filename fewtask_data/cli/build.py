"""`fewtask-data build omniglot-families | imagenet-families | unsupervised-families | navigation-families |
continual-sine-families | sinusoid-families | dynamics-families`.

Each command parses its options and calls its builder (``fewtask_data.builders.*``),
imported when the command runs, so `--help` and option errors need no image code.
"""

from __future__ import annotations

import math
from pathlib import Path

import typer

from fewtask_data.cli.common import BuildProgress, echo_build_report
from fewtask_data.cli.options import build_option, parse_float_pair, parse_fractions, parse_range
from fewtask_data.errors import FewtaskError
from fewtask_data.sources.omniglot import DEFAULT_SETS

PROCEDURAL_OUT = "output folder for manifest.json (procedural family definitions: no shards)"


def omniglot_families_command(
    out: Path = build_option("out"),
    root: Path = typer.Option(None, help="folder with Omniglot's images_background.zip / images_evaluation.zip (or the extracted folders); without it the embedded SYNTHETIC glyphs are used"),
    families_per_alphabet: int = typer.Option(10, help="augmented families per alphabet and split (0: plain alphabet families, no augmentation)"),
    eval_families_per_alphabet: int = typer.Option(None, help="the same for the val/test splits (default: --families-per-alphabet)"),
    split: str = typer.Option("alphabets", help="alphabets: alphabet-disjoint train/val/test; lake: background/evaluation alphabets; vinyals: the 1028/172/423-character split with rotations"),
    image_size: int = typer.Option(28, help="images are IMAGE_SIZE x IMAGE_SIZE grayscale, bright strokes on black"),
    space: str = typer.Option("handwritten", help="augmentation space: a named space or a JSON file mapping each dimension to its low and high (see docs/omniglot.md)"),
    fixed_dims: str = typer.Option("1-3", help="how many dimensions each family fixes: N or LOW-HIGH"),
    rotations: bool = typer.Option(None, "--rotations/--no-rotations", help="90-degree rotations as extra classes (default: only for vinyals)"),
    alphabet_split: str = typer.Option("0.6,0.2,0.2", help="alphabets split: TRAIN,VAL,TEST fractions of the alphabets"),
    materialize_eval: bool = typer.Option(False, help="write val/test families' augmented images into the shards (evaluation then needs no augmentation code)"),
    vinyals_dir: Path = typer.Option(None, help="read the Vinyals split from this folder's train/val/test.txt instead of the built-in copy"),
    sets: str = typer.Option(",".join(DEFAULT_SETS), help="Omniglot sets to read (comma-separated), e.g. images_background_small1"),
    glyph_alphabets: int = typer.Option(None, help="synthetic glyphs: number of scripts (default: all)"),
    glyph_characters: int = typer.Option(20, help="synthetic glyphs: characters per alphabet"),
    glyph_drawers: int = typer.Option(20, help="synthetic glyphs: drawers (images) per character"),
    workers: int = build_option("workers"),
    shard_size: int = build_option("shard_size"),
    seed: int = build_option("seed", help="seed of the alphabet split, family specs, glyph drawers and within-class shuffle"),
    strict: bool = build_option("strict"),
) -> None:
    """Build Omniglot alphabet families, augmentation-parameterized, into class-contiguous shards."""
    from fewtask_data.builders.omniglot import BUILDER, build_omniglot_families
    from fewtask_data.builders.plan import BuildOptions

    options = BuildOptions(encoding="png", shard_size=shard_size, seed=seed, workers=workers, strict=strict)
    with BuildProgress(BUILDER) as progress:
        report = build_omniglot_families(
            out, root=root, sets=[s for s in sets.split(",") if s], split=split,
            families_per_alphabet=families_per_alphabet, eval_families_per_alphabet=eval_families_per_alphabet,
            image_size=image_size, space=space, fixed_dims=parse_range(fixed_dims, "--fixed-dims"), rotations=rotations,
            alphabet_fractions=parse_fractions(alphabet_split), materialize_eval=materialize_eval, vinyals_dir=vinyals_dir,
            glyph_alphabets=glyph_alphabets, glyph_characters=glyph_characters, glyph_drawers=glyph_drawers,
            options=options, progress=progress,
        )
    echo_build_report(report, out, "skipped")


def imagenet_families_command(
    imagenet_root: Path = typer.Option(..., help="ImageNet folder: holds train/<wnid>/ (standard), ILSVRC/Data/CLS-LOC/train/ (Kaggle) or <wnid>/ folders"),
    out: Path = build_option("out"),
    preset: str = typer.Option(None, help="class split: meta-dataset (712/158/130, the default), tiered (351/97/160), mini (64/16/20) or custom (--roots)"),
    roots: list[str] = typer.Option([], help="custom preset: SPLIT=WNID[,WNID] (repeatable), e.g. --roots val=n02075296"),
    classes: Path = typer.Option(None, help="custom preset: file of class wnids to use (default: every class folder)"),
    definitions: str = typer.Option(None, help="use shipped/saved family definitions (name from `fewtask-data manifests list` or .json path) instead of WordNet"),
    families: str = typer.Option("wordnet", help="wordnet: nodes whose leaf span is within the bounds; tiered: the 34 tieredImageNet categories"),
    min_classes: int = typer.Option(5, help="smallest family (classes in its leaf span)"),
    max_classes: int = typer.Option(None, help="largest family (default: 392 for --preset meta-dataset, Meta-Dataset's rule, which puts every class in a family; 50 for the others)"),
    disjoint: bool = typer.Option(False, help="non-overlapping families (largest first; see docs/imagenet.md)"),
    image_size: int = typer.Option(84, help="output images are IMAGE_SIZE x IMAGE_SIZE RGB"),
    resize: str = typer.Option("squash", help="squash (resize whole image, as mini-ImageNet) or center-crop"),
    max_per_class: int = typer.Option(None, help="at most N images per class (a seeded subset)"),
    workers: int = build_option("workers", help="decode processes (0 = all cores)"),
    shard_size: int = build_option("shard_size"),
    quality: int = build_option("quality", 95, "JPEG quality of the stored images"),
    seed: int = build_option("seed", help="within-class shuffle and subset seed"),
    allow_missing: bool = typer.Option(False, help="build without preset classes absent from the folder (recorded in the manifest)"),
    strict: bool = build_option("strict"),
    wordnet_dir: str = typer.Option(None, help="WordNet 3.0 database folder (else $FEWTASK_WORDNET_DIR, nltk's corpus, /usr/share/wordnet)"),
) -> None:
    """Build ImageNet families from the WordNet hierarchy into class-contiguous shards."""
    from fewtask_data.builders.imagenet import build_imagenet_families, parse_roots, read_class_file
    from fewtask_data.builders.plan import BuildOptions
    from fewtask_data.families import hierarchy as fw

    if preset and definitions:
        raise FewtaskError("give --preset or --definitions, not both: the definitions file already fixes the class split")
    preset = preset or "meta-dataset"
    split_roots = parse_roots(roots)
    rule = None if definitions else fw.FamilyRule.for_preset(fw.preset(preset, split_roots), min_classes, max_classes, disjoint, families)
    options = BuildOptions(encoding="jpeg", quality=quality, shard_size=shard_size, seed=seed, workers=workers, strict=strict)
    with BuildProgress("imagenet-families") as bar:
        report = build_imagenet_families(
            imagenet_root, out, preset_name=preset, roots=split_roots,
            class_list=read_class_file(classes) if classes else None, definitions=definitions,
            image_size=image_size, resize=resize, max_per_class=max_per_class,
            rule=rule, allow_missing=allow_missing,
            wordnet_dir=wordnet_dir, options=options, progress=bar,
        )
    echo_build_report(report, out, "unreadable")


def unsupervised_families_command(
    out: Path = build_option("out"),
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
    workers: int = build_option("workers"),
    shard_size: int = build_option("shard_size"),
    quality: int = build_option("quality"),
    seed: int = build_option("seed", help="seed of the groups, pools, family augmentations and within-group shuffle"),
    strict: bool = build_option("strict", help="an undecodable image stops the build (default: skipped and listed)"),
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
    from fewtask_data.builders.plan import BuildOptions
    from fewtask_data.builders.unsupervised import BUILDER, EVALUATION_NOTE, build_unsupervised_families

    options = BuildOptions(shard_size=shard_size, seed=seed, workers=workers, strict=strict, quality=quality)
    with BuildProgress(BUILDER) as progress:
        report, collection, params = build_unsupervised_families(
            out, images=images, shards=shards, policy=policy, families=families,
            fixed_dims=None if fixed_dims is None else parse_range(fixed_dims, "--fixed-dims"),
            pool_fraction=pool_fraction, group_size=group_size, ways=ways, avoid_collisions=avoid_collisions,
            support=support, image_size=image_size, color=color, invert=invert, resize=resize,
            options=options, progress=progress,
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


def navigation_families_command(
    out: Path = build_option("out", help=PROCEDURAL_OUT),
    train_families: int = typer.Option(500, help="meta-training crop families"),
    val_families: int = typer.Option(50, help="validation crop families"),
    test_families: int = typer.Option(40, help="held-out test crop families"),
    crop_size: str = typer.Option("0.25,0.75", help="LOW,HIGH: crop width and height ~ U[LOW, HIGH] as fractions of the square's side"),
    seed: int = build_option("seed", help="seed of the crops (train/val/test from disjoint streams of it)"),
) -> None:
    """Write 2D navigation families (crops of MAML's goal square; tasks = goals inside; MALTML
    section 4.2): procedural family definitions, `inspect`-able, for `fewtask-train navigation --families DIR`."""
    from fewtask_data.builders.navigation import build_navigation_families

    low, high = parse_float_pair(crop_size, "--crop-size")
    counts = {"train": train_families, "val": val_families, "test": test_families}
    build_navigation_families(out, counts=counts, crop_size=(low, high), seed=seed)
    typer.echo(f"wrote {train_families} train, {val_families} val and {test_families} test crop families to {out}")


def continual_sine_families_command(
    out: Path = build_option("out", help=PROCEDURAL_OUT),
    families: int = typer.Option(20, help="frequency families in all (each one w)"),
    test_families: int = typer.Option(5, help="of them, held out for evaluation (on the evaluation function pool)"),
    frequency_range: str = typer.Option("0.5,2.0", help="LOW,HIGH: family frequencies w ~ U[LOW, HIGH]"),
    functions: int = typer.Option(10, help="functions per continual problem"),
    steps_per_function: int = typer.Option(40, help="online mini-batches per function"),
    batch: int = typer.Option(8, help="points per mini-batch"),
    rand_points: int = typer.Option(8, help="per function: points of the meta-loss's random batch"),
    train_pool: int = typer.Option(400, help="meta-training function pool size"),
    eval_pool: int = typer.Option(500, help="evaluation function pool size (disjoint)"),
    seed: int = build_option("seed", help="seed of the function pools and the family frequencies"),
) -> None:
    """Write continual sine family definitions (incremental sine problems, one frequency per
    family; MALTML section 4.2): procedural family definitions, `inspect`-able, for
    `fewtask-train continual --families DIR`."""
    from fewtask_data.builders.continual_sines import build_continual_families
    from fewtask_data.sources.continual_sines import ContinualSpec

    low, high = parse_float_pair(frequency_range, "--frequency-range")
    spec = ContinualSpec(functions, steps_per_function, batch, rand_points, train_pool=train_pool, eval_pool=eval_pool)
    build_continual_families(out, families=families, test_families=test_families, frequency_range=(low, high), seed=seed, spec=spec)
    typer.echo(f"wrote {families - test_families} train and {test_families} test frequency families to {out}")


def sinusoid_families_command(
    out: Path = build_option("out", help=PROCEDURAL_OUT),
    train_families: int = typer.Option(1000, help="meta-training families (phases)"),
    val_families: int = typer.Option(100, help="validation families"),
    test_families: int = typer.Option(500, help="held-out test families"),
    amplitude_range: str = typer.Option("0.1,5.0", help="LOW,HIGH: each task's amplitude A ~ U[LOW, HIGH]"),
    phase_range: str = typer.Option(f"0,{math.pi}", help="LOW,HIGH: each family's phase ~ U[LOW, HIGH]"),
    x_range: str = typer.Option("-5,5", help="LOW,HIGH: a task's inputs x ~ U[LOW, HIGH]"),
    seed: int = build_option("seed", help="seed of the phases (train/val/test from disjoint streams of it)"),
) -> None:
    """Write sinusoid families (y = A sin(x - phase); a family is a phase, its tasks draw A; MALTML
    section 4.1): procedural family definitions, `inspect`-able, read with `load_sinusoid_families`."""
    from fewtask_data.builders.sinusoid import build_sinusoid_families
    from fewtask_data.sources.sinusoid import SinusoidSpec

    spec = SinusoidSpec(parse_float_pair(amplitude_range, "--amplitude-range"), parse_float_pair(phase_range, "--phase-range"),
                        parse_float_pair(x_range, "--x-range"))  # fmt: skip
    counts = {"train": train_families, "val": val_families, "test": test_families}
    build_sinusoid_families(out, counts=counts, spec=spec, seed=seed)
    typer.echo(f"wrote {train_families} train, {val_families} val and {test_families} test sinusoid families to {out}")


def dynamics_families_command(
    out: Path = build_option("out", help=PROCEDURAL_OUT),
    env: str = typer.Option("HalfCheetah-v5", help="a gymnasium MuJoCo locomotion env id, or 'point' (2D navigation, the cheap variant)"),
    task_type: str = typer.Option(None, help="velocity (MAML's HalfCheetah-Vel reward, the MuJoCo default), run (gymnasium's reward, Kaplanis et al.), goal (point)"),
    gravity_range: str = typer.Option("-17,-7", help="MuJoCo: LOW,HIGH of gravity (m/s^2); the families are bands inside it"),
    velocity_range: str = typer.Option("0,2", help="MuJoCo velocity tasks: LOW,HIGH of the target x velocity (MAML: 0,2)"),
    mass_scale: str = typer.Option(None, help="MuJoCo: LOW,HIGH of a body-mass scale per task (default: not a parameter)"),
    friction_scale: str = typer.Option(None, help="MuJoCo: LOW,HIGH of a friction scale per task (default: not a parameter)"),
    band_width: str = typer.Option(None, help="LOW,HIGH of a family's band width (default: 2,4 for gravity; 0.25,0.75 for goal_x)"),
    train_families: int = typer.Option(8, help="meta-training families (bands)"),
    val_families: int = typer.Option(2, help="validation families"),
    test_families: int = typer.Option(4, help="held-out test families"),
    seed: int = build_option("seed", help="seed of the bands (train/val/test from disjoint streams of it)"),
) -> None:
    """Write dynamics task families (bands of gravity, or of goal_x for `--env point`; a task is
    a dict of named parameters; continual RL after Kaplanis et al. 2020, MALTML section 4.2):
    procedural family definitions with the evaluation grid, for `fewtask-train continual-rl --families DIR`."""
    from fewtask_data.builders.dynamics import build_dynamics_families

    ranges = {}
    if env != "point":
        ranges = {"gravity": parse_float_pair(gravity_range, "--gravity-range")}
        if task_type != "run":
            ranges["velocity"] = parse_float_pair(velocity_range, "--velocity-range")
        for name, text in (("mass_scale", mass_scale), ("friction_scale", friction_scale)):
            if text:
                ranges[name] = parse_float_pair(text, f"--{name.replace('_', '-')}")
    width = parse_float_pair(band_width, "--band-width") if band_width else None
    counts = {"train": train_families, "val": val_families, "test": test_families}
    build_dynamics_families(out, counts=counts, env=env, task_type=task_type, ranges=ranges, band_width=width, seed=seed)
    typer.echo(f"wrote {train_families} train, {val_families} val and {test_families} test {env} families to {out}")
