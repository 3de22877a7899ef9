"""Omniglot (or the embedded synthetic glyphs) -> alphabet families,
augmentation-parameterized, in class-contiguous shards (`fewtask-data build omniglot-families`).

Steps: list the characters (real Omniglot from ``--root``; without it the synthetic
glyph source), assign them to splits (alphabets | lake | vinyals), group each split's
classes by alphabet, draw each alphabet's augmented family specs, then hand the classes
(alphabet by alphabet, so a family's classes sit together in the shards) to the generic
build. Base images are written once; the specs live in the manifest and the stream
applies them per image. ``--materialize-eval`` writes val/test families' augmented
images instead, so evaluation does not depend on the augmentation code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from fewtask_data.augment.space import load_space
from fewtask_data.builders.core import build_dataset
from fewtask_data.builders.finalize import BuildReport
from fewtask_data.builders.plan import BuildOptions
from fewtask_data.errors import FewtaskError
from fewtask_data.families import alphabets as fam
from fewtask_data.sources import SourceClass, glyphs, omniglot

BUILDER = "omniglot-families"
BUILDER_VERSION = "1"


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
    return build_dataset(
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
