"""`fewtask-data build omniglot-families`: Omniglot (or the embedded synthetic glyphs)
-> alphabet families, augmentation-parameterized, in class-contiguous shards.

Steps: list the characters (real Omniglot from ``--root``; without it the synthetic
glyph source), assign them to splits (alphabets | lake | vinyals), group each split's
classes by alphabet, draw each alphabet's augmented family specs, then hand the classes
(alphabet by alphabet, so a family's classes sit together in the shards) to the generic
build. Base images are written once; the specs live in the manifest and the stream
applies them per image. ``--materialize-eval`` writes val/test families' augmented
images instead, so evaluation does not depend on the augmentation code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import typer

from fewtask_data.augment import SPACES, AugmentSpace, named_space
from fewtask_data.build import BuildOptions, BuildReport, SourceClass, build
from fewtask_data.cliutil import BuildProgress, echo_build_report
from fewtask_data.errors import FewtaskError
from fewtask_data.families import omniglot as fam
from fewtask_data.sources import glyphs, omniglot

BUILDER = "omniglot-families"
BUILDER_VERSION = "1"


def load_space(spec: str) -> tuple[AugmentSpace, str]:
    """A named space (``handwritten``) or a JSON file of name -> [low, high]."""
    if spec in SPACES:
        return named_space(spec), spec
    path = Path(spec)
    if not path.is_file():
        raise FewtaskError(f"--space {spec!r} is neither a named space ({', '.join(SPACES)}) nor a JSON file")
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise FewtaskError(f"--space file {path} is not valid JSON ({err})") from None
    return AugmentSpace.from_json(obj), path.name


def parse_range(text: str, what: str) -> tuple[int, int]:
    """'2' -> (2, 2); '1-3' -> (1, 3)."""
    low, _, high = text.partition("-")
    try:
        lo, hi = int(low), int(high or low)
    except ValueError:
        raise FewtaskError(f"{what} must be N or LOW-HIGH, e.g. 1-3; got {text!r}") from None
    if not 0 <= lo <= hi:
        raise FewtaskError(f"{what} {text!r} needs 0 <= LOW <= HIGH")
    return lo, hi


def parse_fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or any(p <= 0 for p in parts):
        raise FewtaskError(f"--alphabet-split must be three positive numbers TRAIN,VAL,TEST, e.g. 0.6,0.2,0.2; got {text!r}")
    return parts  # type: ignore[return-value]


def build_omniglot_families(
    out: Path,
    *,
    root: Path | None = None,
    sets: Sequence[str] = omniglot.DEFAULT_SETS,
    split: str = "alphabets",
    families_per_alphabet: int = 10,
    eval_families_per_alphabet: int | None = None,
    image_size: int = 28,
    space: str = "handwritten",
    fixed_dims: tuple[int, int] = (1, 3),
    rotations: bool | None = None,
    alphabet_fractions: Sequence[float] = (0.6, 0.2, 0.2),
    materialize_eval: bool = False,
    vinyals_dir: Path | None = None,
    glyph_alphabets: int | None = None,
    glyph_characters: int = 20,
    glyph_drawers: int = 20,
    options: BuildOptions = BuildOptions(),
    progress=None,
) -> BuildReport:
    """The whole command as a function (see module doc)."""
    if image_size < 8:
        raise FewtaskError(f"--image-size must be >= 8, got {image_size}")
    if split not in fam.SPLIT_MODES:
        raise FewtaskError(f"--split must be one of {', '.join(fam.SPLIT_MODES)}, got {split!r}")
    seed = options.seed
    if root is not None:
        chars = omniglot.list_characters(root, sets)
        base_decoder = omniglot.OmniglotDecoder(image_size)
        dataset, synthetic = "omniglot", False
        source = {"fingerprint": omniglot.fingerprint(root, sets), "kind": "omniglot", "sets": list(sets)}
    else:
        if split == "vinyals":
            raise FewtaskError("the Vinyals split is defined on real Omniglot characters; pass --root with the Omniglot zips")
        chars = glyphs.list_glyph_characters(glyph_alphabets, glyph_characters, glyph_drawers, seed)
        base_decoder = glyphs.GlyphDecoder(image_size)
        dataset, synthetic = "glyphs-synthetic", True
        source = {
            "fingerprint": glyphs.fingerprint(seed),
            **glyphs.describe(),
            "alphabets": len({c.alphabet for c in chars}),
            "characters_per_alphabet": glyph_characters,
            "drawers": glyph_drawers,
        }

    use_rotations = split == "vinyals" if rotations is None else rotations
    assignment = fam.assign_splits(
        chars, split, seed=seed, fractions=alphabet_fractions, rotations=use_rotations, split_dir=vinyals_dir
    )
    fam.check_hygiene(assignment, alphabet_disjoint=split != "vinyals")
    bases = fam.base_families(assignment, use_rotations)
    eval_count = families_per_alphabet if eval_families_per_alphabet is None else eval_families_per_alphabet
    augmented = families_per_alphabet > 0 or eval_count > 0
    aug_space, space_name = load_space(space) if augmented else (None, None)
    materialize = tuple(s for s in assignment if s != "train") if materialize_eval and eval_count else ()
    plan = fam.plan_families(
        bases,
        space=aug_space,
        per_alphabet=families_per_alphabet,
        eval_per_alphabet=eval_families_per_alphabet,
        seed=seed,
        fixed_count=fixed_dims,
        materialize=materialize,
        split_kind=split,
    )
    params = {
        "split": split,
        "vinyals_split_file": None if vinyals_dir is None else "given",
        "alphabet_fractions": list(alphabet_fractions) if split == "alphabets" else None,
        "rotations": use_rotations,
        "image_size": image_size,
        "image_polarity": "bright strokes on black",
        "families_per_alphabet": families_per_alphabet,
        "eval_families_per_alphabet": eval_count,
        "fixed_dims": list(fixed_dims),
        "augment_space_name": space_name,
        "materialized_splits": list(materialize),
    }
    decode = fam.FamilyImageDecoder(base_decoder, aug_space.to_json() if materialize else None)
    return build(
        out,
        dataset=dataset,
        builder=BUILDER,
        builder_version=BUILDER_VERSION,
        source=source,
        classes=[SourceClass(cid, items, meta) for cid, items, meta in plan.classes],
        decode=decode,
        splits=plan.splits,
        options=options,
        params=params,
        seeds={"families": seed, "alphabet_split": seed},
        synthetic=synthetic,
        augment_space=aug_space.to_json() if aug_space is not None else None,
        progress=progress,
    )


def omniglot_families_command(
    out: Path = typer.Option(..., help="output folder for shards, index.json, build_report.json, manifest.json"),
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
    sets: str = typer.Option(",".join(omniglot.DEFAULT_SETS), help="Omniglot sets to read (comma-separated), e.g. images_background_small1"),
    glyph_alphabets: int = typer.Option(None, help="synthetic glyphs: number of scripts (default: all)"),
    glyph_characters: int = typer.Option(20, help="synthetic glyphs: characters per alphabet"),
    glyph_drawers: int = typer.Option(20, help="synthetic glyphs: drawers (images) per character"),
    workers: int = typer.Option(0, help="decode processes (0 = all cores, 1 = in this process)"),
    shard_size: int = typer.Option(2000, help="images per shard"),
    seed: int = typer.Option(0, help="seed of the alphabet split, family specs, glyph drawers and within-class shuffle"),
    strict: bool = typer.Option(False, help="an unreadable image stops the build (default: skipped and listed in build_report.json)"),
) -> None:
    """Build Omniglot alphabet families, augmentation-parameterized, into class-contiguous shards."""
    options = BuildOptions(encoding="png", shard_size=shard_size, seed=seed, workers=workers, strict=strict)
    with BuildProgress(BUILDER) as progress:
        report = build_omniglot_families(
            out,
            root=root,
            sets=[s for s in sets.split(",") if s],
            split=split,
            families_per_alphabet=families_per_alphabet,
            eval_families_per_alphabet=eval_families_per_alphabet,
            image_size=image_size,
            space=space,
            fixed_dims=parse_range(fixed_dims, "--fixed-dims"),
            rotations=rotations,
            alphabet_fractions=parse_fractions(alphabet_split),
            materialize_eval=materialize_eval,
            vinyals_dir=vinyals_dir,
            glyph_alphabets=glyph_alphabets,
            glyph_characters=glyph_characters,
            glyph_drawers=glyph_drawers,
            options=options,
            progress=progress,
        )
    echo_build_report(report, out, "skipped")
