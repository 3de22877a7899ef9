"""Alphabet families of Omniglot-layout sources: splits of characters, alphabet families, and
augmentation-parameterized families (the paper's "data augmentations ... to generate a
large number of training families").

Splits (each maps split name -> ordered (character, rotation) pairs):

* ``lake``: Lake et al.'s background alphabets -> train, evaluation alphabets -> test.
* ``vinyals``: Vinyals et al.'s character split, 1,028 / 172 / 423 characters for
  train / val / test, each in 4 rotations (0, 90, 180, 270 degrees) that are classes of
  their own (4,112 / 688 / 1,692 classes). ``VINYALS`` below writes the released split
  (prototypical-networks' ``splits/vinyals``) as ordered alphabet lists; expanding it
  reproduces those files line for line. It is a *character* split: Gurmukhi has
  characters 1-41 in train and 42-45 in test, so it is not alphabet-disjoint.
* ``alphabets``: alphabet-disjoint train / val / test, a seeded permutation of the
  alphabets cut by fractions (0.6 / 0.2 / 0.2 by default).

A base family is one alphabet within one split. An augmented family is
(alphabet, ``augment``) where ``augment`` = ``{"fixed": {dim: value}, "seed": int}``
from ``fewtask_data.augment.space``: the stream applies it per image (fixed dimensions at
their values, the rest random). With materialization, evaluation families get their
augmented images written into the shards as classes of their own, and the family keeps
its spec under ``meta.materialized_augment`` (no ``augment`` key, so the stream does
not augment twice).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from fewtask_data.augment.space import AugmentSpace, image_rng, sample_family_augment
from fewtask_data.errors import FewtaskError
from fewtask_data.sources.omniglot import BACKGROUND, EVALUATION, ROTATIONS, Character

SPLIT_MODES = ("alphabets", "lake", "vinyals")

# The Vinyals split as released with prototypical networks: per split, alphabets in
# file order, all characters of each, except that Gurmukhi is cut after character 41.
VINYALS: dict[str, list[str]] = {
    "train": [
        "Angelic", "Grantha", "N_Ko", "Aurek-Besh", "Japanese_(hiragana)", "Malay_(Jawi_-_Arabic)",
        "Asomtavruli_(Georgian)", "Sanskrit", "Ojibwe_(Canadian_Aboriginal_Syllabics)", "Korean", "Arcadian",
        "Greek", "Alphabet_of_the_Magi", "Blackfoot_(Canadian_Aboriginal_Syllabics)", "Futurama", "Gurmukhi",
        "Tagalog", "Anglo-Saxon_Futhorc", "Braille", "Cyrillic", "Burmese_(Myanmar)", "Avesta", "Gujarati",
        "Ge_ez", "Syriac_(Estrangelo)", "Atlantean", "Japanese_(katakana)", "Balinese", "Atemayar_Qelisayer",
        "Glagolitic", "Tifinagh", "Latin", "Inuktitut_(Canadian_Aboriginal_Syllabics)",
    ],
    "val": ["Hebrew", "Mkhedruli_(Georgian)", "Armenian", "Early_Aramaic", "Bengali"],
    "test": [
        "Gurmukhi", "Kannada", "Keble", "Malayalam", "Manipuri", "Mongolian", "Old_Church_Slavonic_(Cyrillic)",
        "Oriya", "Syriac_(Serto)", "Sylheti", "Tengwar", "Tibetan", "ULOG",
    ],
}
VINYALS_CUT = ("Gurmukhi", 41)  # characters 1..41 train, the rest test

Assignment = dict[str, list[tuple[Character, int]]]  # split -> (character, rotation) in order


def _by_alphabet(chars: Sequence[Character]) -> dict[str, list[Character]]:
    out: dict[str, list[Character]] = {}
    for c in chars:
        out.setdefault(c.alphabet, []).append(c)
    return out


def _with_rotations(chars: Sequence[Character], rotations: bool) -> list[tuple[Character, int]]:
    return [(c, r) for c in chars for r in (ROTATIONS if rotations else (0,))]


def lake_split(chars: Sequence[Character], rotations: bool = False) -> Assignment:
    """Background alphabets -> train, evaluation alphabets -> test."""
    out = {
        "train": _with_rotations([c for c in chars if c.set == BACKGROUND], rotations),
        "test": _with_rotations([c for c in chars if c.set == EVALUATION], rotations),
    }
    for split, pairs in out.items():
        if not pairs:
            raise FewtaskError(f"lake split: no characters for {split}; the source needs both background and evaluation sets")
    return out


def alphabet_counts(total: int, fractions: Sequence[float]) -> list[int]:
    """Cut ``total`` alphabets by fractions (largest remainders), at least one per split."""
    if len(fractions) != 3 or any(f <= 0 for f in fractions):
        raise FewtaskError(f"alphabet fractions must be three positive numbers (train,val,test), got {list(fractions)}")
    if total < 3:
        raise FewtaskError(f"an alphabet-disjoint split needs at least 3 alphabets, the source has {total}")
    share = np.asarray(fractions, float) / sum(fractions) * total
    counts = np.floor(share).astype(int)
    for i in np.argsort(-(share - counts), kind="stable")[: total - counts.sum()]:
        counts[i] += 1
    while (counts == 0).any():  # take from the largest split
        counts[np.argmax(counts)] -= 1
        counts[np.argmin(counts)] += 1
    return counts.tolist()


def alphabet_split(
    chars: Sequence[Character], fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0, rotations: bool = False
) -> Assignment:
    """Alphabet-disjoint train/val/test: a seeded permutation of the sorted alphabets."""
    groups = _by_alphabet(chars)
    names = sorted(groups)
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    counts = alphabet_counts(len(names), fractions)
    out, start = {}, 0
    for split, n in zip(("train", "val", "test"), counts):
        chosen = sorted(order[start : start + n])
        start += n
        out[split] = _with_rotations([c for a in chosen for c in groups[a]], rotations)
    return out


def vinyals_keys(split_dir: str | Path | None = None) -> dict[str, list[tuple[str, str, int]]]:
    """Split -> ordered (alphabet, character, rotation). From ``split_dir``'s
    train/val/test.txt when given, else from ``VINYALS``."""
    if split_dir is not None:
        out = {}
        for split in ("train", "val", "test"):
            path = Path(split_dir) / f"{split}.txt"
            if not path.is_file():
                raise FewtaskError(f"Vinyals split file {path} not found; pass the folder holding train/val/test.txt")
            keys = []
            for line in path.read_text().split():
                parts = line.split("/")
                if len(parts) != 3 or not parts[2].startswith("rot"):
                    raise FewtaskError(f"{path}: line {line!r} is not <Alphabet>/characterNN/rotDDD")
                keys.append((parts[0], parts[1], int(parts[2][3:])))
            out[split] = keys
        return out
    return {split: [(a, c, r) for a, c in _vinyals_characters(split) for r in ROTATIONS] for split in VINYALS}


# Characters per alphabet in Omniglot (Lake et al.); 1,623 in all.
_OMNIGLOT_CHARACTER_COUNTS: dict[str, int] = {
    "Alphabet_of_the_Magi": 20, "Angelic": 20, "Anglo-Saxon_Futhorc": 29, "Arcadian": 26, "Armenian": 41,
    "Asomtavruli_(Georgian)": 40, "Atemayar_Qelisayer": 26, "Atlantean": 26, "Aurek-Besh": 26, "Avesta": 26,
    "Balinese": 24, "Bengali": 46, "Blackfoot_(Canadian_Aboriginal_Syllabics)": 14, "Braille": 26,
    "Burmese_(Myanmar)": 34, "Cyrillic": 33, "Early_Aramaic": 22, "Futurama": 26, "Ge_ez": 26, "Glagolitic": 45,
    "Grantha": 43, "Greek": 24, "Gujarati": 48, "Gurmukhi": 45, "Hebrew": 22,
    "Inuktitut_(Canadian_Aboriginal_Syllabics)": 16, "Japanese_(hiragana)": 52, "Japanese_(katakana)": 47,
    "Kannada": 41, "Keble": 26, "Korean": 40, "Latin": 26, "Malay_(Jawi_-_Arabic)": 40, "Malayalam": 47,
    "Manipuri": 40, "Mkhedruli_(Georgian)": 41, "Mongolian": 30, "N_Ko": 33,
    "Ojibwe_(Canadian_Aboriginal_Syllabics)": 14, "Old_Church_Slavonic_(Cyrillic)": 45, "Oriya": 46,
    "Sanskrit": 42, "Sylheti": 28, "Syriac_(Estrangelo)": 23, "Syriac_(Serto)": 23, "Tagalog": 17,
    "Tengwar": 25, "Tibetan": 42, "Tifinagh": 55, "ULOG": 26,
}


def _vinyals_characters(split: str) -> list[tuple[str, str]]:
    """(alphabet, character) of one Vinyals split, from the alphabet lists and counts."""
    out = []
    for alphabet in VINYALS[split]:
        first, last = 1, _OMNIGLOT_CHARACTER_COUNTS[alphabet]
        if alphabet == VINYALS_CUT[0]:
            first, last = (1, VINYALS_CUT[1]) if split == "train" else (VINYALS_CUT[1] + 1, last)
        out.extend((alphabet, f"character{i:02d}") for i in range(first, last + 1))
    return out


def vinyals_lines(split_dir: str | Path | None = None) -> dict[str, list[str]]:
    """The split as ``Alphabet/characterNN/rotDDD`` lines (the released file format)."""
    return {s: [f"{a}/{c}/rot{r:03d}" for a, c, r in keys] for s, keys in vinyals_keys(split_dir).items()}


def vinyals_split(chars: Sequence[Character], split_dir: str | Path | None = None) -> Assignment:
    """The Vinyals character split over a source's characters (rotations included)."""
    lookup = {(c.alphabet, c.name): c for c in chars}
    out: Assignment = {}
    missing: list[str] = []
    for split, keys in vinyals_keys(split_dir).items():
        pairs = []
        for alphabet, name, rotation in keys:
            char = lookup.get((alphabet, name))
            if char is None:
                missing.append(f"{alphabet}/{name}")
            else:
                pairs.append((char, rotation))
        out[split] = pairs
    if missing:
        unique = sorted(set(missing))
        raise FewtaskError(
            f"the Vinyals split names {len(unique)} characters the source lacks (e.g. {unique[0]}); "
            "it needs the full Omniglot images_background + images_evaluation sets"
        )
    return out


def assign_splits(
    chars: Sequence[Character],
    mode: str,
    *,
    seed: int = 0,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    rotations: bool | None = None,
    split_dir: str | Path | None = None,
) -> Assignment:
    if mode == "vinyals":
        if rotations is False:
            raise FewtaskError("the Vinyals split defines rotated characters as classes; drop --no-rotations")
        return vinyals_split(chars, split_dir)
    if mode == "lake":
        return lake_split(chars, bool(rotations))
    if mode == "alphabets":
        return alphabet_split(chars, fractions, seed, bool(rotations))
    raise FewtaskError(f"unknown split {mode!r}; choose one of {', '.join(SPLIT_MODES)}")


# ----------------------------------------------------------------------------- classes and families


def class_id(char: Character, rotation: int, rotations: bool) -> str:
    """``Alphabet~characterNN`` (+ ``~rotDDD`` when rotations are classes): no dots or slashes."""
    base = f"{char.alphabet}~{char.name}"
    return f"{base}~rot{rotation:03d}" if rotations else base


def check_hygiene(assignment: Assignment, alphabet_disjoint: bool) -> None:
    """No class in two splits; for alphabet-disjoint modes, no alphabet in two splits."""
    seen_class: dict[tuple[str, str, int], str] = {}
    seen_alphabet: dict[str, str] = {}
    for split, pairs in assignment.items():
        for char, rotation in pairs:
            key = (char.alphabet, char.name, rotation)
            if seen_class.setdefault(key, split) != split:
                raise FewtaskError(f"split hygiene: class {char.key} rot {rotation} is in {seen_class[key]} and {split}")
            if alphabet_disjoint and seen_alphabet.setdefault(char.alphabet, split) != split:
                raise FewtaskError(
                    f"split hygiene: alphabet {char.alphabet} is in {seen_alphabet[char.alphabet]} and {split}"
                )


@dataclass(frozen=True)
class BaseFamily:
    """One alphabet within one split, and its classes in order."""

    id: str
    alphabet: str
    split: str
    classes: tuple[tuple[str, Character, int], ...]  # (class id, character, rotation)


def base_families(assignment: Assignment, rotations: bool) -> list[BaseFamily]:
    """Group each split's classes by alphabet (order of first appearance). An alphabet
    cut across splits (Vinyals' Gurmukhi) gets ``@split`` in its family ids."""
    splits_of: dict[str, set[str]] = {}
    for split, pairs in assignment.items():
        for char, _ in pairs:
            splits_of.setdefault(char.alphabet, set()).add(split)
    out = []
    for split, pairs in assignment.items():
        grouped: dict[str, list[tuple[str, Character, int]]] = {}
        for char, rotation in pairs:
            grouped.setdefault(char.alphabet, []).append((class_id(char, rotation, rotations), char, rotation))
        for alphabet, classes in grouped.items():
            fid = alphabet if len(splits_of[alphabet]) == 1 else f"{alphabet}@{split}"
            out.append(BaseFamily(fid, alphabet, split, tuple(classes)))
    return out


@dataclass(frozen=True)
class FamilyImageDecoder:
    """Picklable build decoder: item = (base item, augment or None, sample key). With an
    augment, the image is augmented with an rng fixed by (augment seed, sample key), so
    materialized families are reproducible."""

    base: Callable[[Any], np.ndarray]
    space: Mapping[str, Any] | None = None

    def __call__(self, item: tuple[Any, Mapping[str, Any] | None, str]) -> np.ndarray:
        base_item, augment, key = item
        image = self.base(base_item)
        if augment is None:
            return image
        return _transform(json.dumps(self.space, sort_keys=True), json.dumps(augment, sort_keys=True))(
            image, image_rng(augment["seed"], key)
        )


_TRANSFORMS: dict[tuple[str, str], Callable] = {}


def _transform(space_json: str, augment_json: str) -> Callable:
    """Per-process cache: building albumentations transforms costs ~1 ms each."""
    from fewtask_data.augment.transforms import FamilyTransform  # albumentations: only when materializing

    key = (space_json, augment_json)
    if key not in _TRANSFORMS:
        if len(_TRANSFORMS) > 512:
            _TRANSFORMS.clear()
        _TRANSFORMS[key] = FamilyTransform(AugmentSpace.from_json(json.loads(space_json)), json.loads(augment_json))
    return _TRANSFORMS[key]


@dataclass
class FamilyPlan:
    """What the generic build needs: classes in shard order and split -> family dicts."""

    classes: list[tuple[str, list[tuple[str, Any]], dict]]  # (class id, [(sample id, decoder item)], meta)
    splits: dict[str, list[dict]]


def plan_families(
    bases: Sequence[BaseFamily],
    *,
    space: AugmentSpace | None,
    per_alphabet: int,
    eval_per_alphabet: int | None = None,
    seed: int = 0,
    fixed_count: tuple[int, int] = (1, 3),
    materialize: Sequence[str] = (),
    split_kind: str = "",
) -> FamilyPlan:
    """Families for every base family, and the classes the shards must hold.

    ``per_alphabet`` = 0 gives plain alphabet families (no augmentation); otherwise each
    alphabet gets that many augmented families, their specs drawn from one generator
    seeded with ``seed`` in base-family order. ``eval_per_alphabet`` (default: the same)
    sets the count for every split but train. Splits in ``materialize`` get their
    augmented images written as classes of their own."""
    if per_alphabet < 0 or (eval_per_alphabet is not None and eval_per_alphabet < 0):
        raise FewtaskError(f"families per alphabet must be >= 0, got {per_alphabet} / {eval_per_alphabet}")
    if (per_alphabet or eval_per_alphabet) and space is None:
        raise FewtaskError("augmented families need an augmentation space")
    rng = np.random.default_rng(seed)
    classes: list[tuple[str, list[tuple[str, Any]], dict]] = []
    written: set[str] = set()
    splits: dict[str, list[dict]] = {}

    def add_class(cid: str, char: Character, rotation: int, augment: dict | None, extra: dict) -> None:
        items = [(sid, ((loc, rotation), augment, f"{cid}/{sid}")) for sid, loc in char.images]
        meta = {"alphabet": char.alphabet, "character": char.name, "set": char.set, "rotation": rotation, **extra}
        classes.append((cid, items, meta))
        written.add(cid)

    for base in bases:
        family_meta = {"alphabet": base.alphabet, "split_kind": split_kind}
        fams = splits.setdefault(base.split, [])
        count = per_alphabet if base.split == "train" or eval_per_alphabet is None else eval_per_alphabet
        if count == 0:
            for cid, char, rotation in base.classes:
                add_class(cid, char, rotation, None, {})
            fams.append({"id": base.id, "classes": [c for c, _, _ in base.classes], "meta": family_meta})
            continue
        for j in range(count):
            augment = sample_family_augment(space, rng, fixed_count)
            fid = f"{base.id}~aug{j:03d}"
            meta = {**family_meta, "augment_index": j}
            if base.split in materialize:
                suffix = f"~aug{j:03d}"
                for cid, char, rotation in base.classes:
                    add_class(cid + suffix, char, rotation, augment, {"base_class": cid, "family": fid})
                fams.append(
                    {
                        "id": fid,
                        "classes": [cid + suffix for cid, _, _ in base.classes],
                        "meta": {**meta, "materialized_augment": augment},
                    }
                )
            else:
                for cid, char, rotation in base.classes:
                    if cid not in written:
                        add_class(cid, char, rotation, None, {})
                fams.append({"id": fid, "classes": [c for c, _, _ in base.classes], "meta": meta, "augment": augment})
    return FamilyPlan(classes, splits)
