"""ImageNet families from the WordNet hierarchy: DAG, collapse, leaf spans, presets, families.

Everything here is a pure function of a class list and a ``Taxonomy`` (anything with
``parents(wnid)`` and ``lemma(wnid)``: ``fewtask_data.sources.wordnet.WordNet``, or a
dict-backed stand-in in tests), so the algorithms run and test without WordNet. The
result is a family definitions document (``families/definitions.py``).

The hierarchy (built in ``families/dag.py``, whose names are importable from here too)
follows Meta-Dataset's ``imagenet_specification.py``:

1. the graph is the classes plus all their hypernym ancestors (links to nodes outside
   it dropped); a split rooted at named nodes keeps only ancestors at or below a root;
2. collapse: every node with exactly one child is removed and its child attached to all
   of its parents, repeated until no node has one child (a node that is itself a class
   is never removed, which matters for ImageNet-21k where classes can be ancestors);
3. each node's leaf span is the set of classes at or below it;
4. the depth-first leaf order (roots and children by wnid) puts every subtree's
   classes next to each other as far as a DAG allows; shards are laid out in it.

Splits (``Preset``): classes under a split's roots go to that split. A class under the
roots of two splits is given to them in turn (Meta-Dataset's rule; it never happens for
the 1,000 ILSVRC classes); ``rest`` receives classes under no root. tieredImageNet's
categories are roots too, except that a class under two categories is dropped, which
reproduces the published 608 classes exactly.

Families in a split are the nodes of the split's collapsed DAG whose leaf span has
``min_classes..max_classes`` classes: nested (overlapping) by default. The meta-dataset
preset's default bounds are Meta-Dataset's, 5..392, so every class is in a family; the
other presets default to 5..50. With
``disjoint=True`` they are reduced to an antichain by this rule: visit candidates by
decreasing class count, then increasing depth, then wnid; keep one when it shares no
class with a family already kept.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from fewtask_data.errors import FewtaskError
from fewtask_data.families.dag import (  # noqa: F401 -- the DAG's names stay importable from here
    Taxonomy, Hierarchy, ancestors_closure, _ancestor_sets, collapse, build_hierarchy, _spans, _depths, _leaf_order,
)
from fewtask_data.families.definitions import DEFINITIONS_FORMAT, DEFINITIONS_VERSION

SPLITS = ("train", "val", "test")

# Meta-Dataset's fixed roots (meta_dataset/data/imagenet_specification.py).
CARNIVORE = "n02075296"
DEVICE = "n03183080"

# Meta-Dataset's episode rule (meta_dataset/data/sampling.py): a node spanning 5..392
# leaves is eligible (392 = MAX_SPANNING_LEAVES_ELIGIBLE, the smallest bound that makes
# every ILSVRC-2012 leaf reachable), and an episode from a node spanning more than 50
# (MAX_WAYS_UPPER_BOUND) subsamples 50 of its classes; our streams do that per visit.
MAX_SPANNING_LEAVES_ELIGIBLE = 392
MAX_WAYS_UPPER_BOUND = 50
DEFAULT_MIN_CLASSES = 5
DEFAULT_MAX_CLASSES = 50  # every preset but meta-dataset

@dataclass(frozen=True)
class Preset:
    """A class split: named roots per split, a split for the rest, or fixed class lists."""

    name: str
    description: str
    classes: tuple[str, ...] | None = None  # the preset's class set; None: the user's classes
    roots: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    rest: str | None = "train"  # split for classes under no root (None: drop them)
    drop_shared: bool = False  # drop (not alternate) classes under roots of two splits or two roots
    fixed: Mapping[str, tuple[str, ...]] | None = None  # split -> class list, no hierarchy needed
    max_classes: int = DEFAULT_MAX_CLASSES  # default upper family bound (--max-classes) for this preset

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "roots": {s: list(r) for s, r in self.roots.items()},
            "rest": self.rest,
            "drop_shared": self.drop_shared,
            "fixed": None if self.fixed is None else {s: list(c) for s, c in self.fixed.items()},
        }


def _data_rows(name: str) -> list[list[str]]:
    """Whitespace-separated rows of a text file shipped in fewtask_data/data ('#' comments)."""
    from importlib.resources import files

    text = files("fewtask_data").joinpath("data", name).read_text()
    return [line.split() for line in text.splitlines() if line.strip() and not line.startswith("#")]


@functools.lru_cache(maxsize=None)
def ilsvrc2012_classes() -> tuple[str, ...]:
    """The 1,000 ILSVRC-2012 class wnids, sorted (= the standard class index)."""
    return tuple(sorted(row[0] for row in _data_rows("ilsvrc2012_wnids.txt")))


# tieredImageNet categories (Ren et al. 2018), from its split files.
TIERED_CATEGORIES = {
    "train": (
        "n01524359", "n01674216", "n01726692", "n01844917", "n02087551", "n02092468", "n02120997",
        "n02370806", "n02469914", "n02913152", "n03125870", "n03278248", "n03297735", "n03414162",
        "n03419014", "n03574816", "n03800933", "n04014297", "n04081844", "n04451818",
    ),
    "val": ("n02098550", "n03257877", "n03405265", "n03699975", "n03738472", "n03791235"),
    "test": ("n00020090", "n01473806", "n02103406", "n02159955", "n03839993", "n04531098", "n09287968", "n15046900"),
}


@functools.lru_cache(maxsize=None)
def mini_classes() -> dict[str, tuple[str, ...]]:
    """Ravi & Larochelle's mini-ImageNet classes per split (64/16/20)."""
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for split, wnid in _data_rows("mini_imagenet_ravi.txt"):
        out[split].append(wnid)
    return {s: tuple(sorted(c)) for s, c in out.items()}


def preset(name: str, roots: Mapping[str, Sequence[str]] | None = None) -> Preset:
    """A split preset by name: meta-dataset, tiered, mini, or custom (with roots)."""
    if name == "meta-dataset":
        return Preset(
            name,
            "Meta-Dataset ILSVRC-2012: val = leaves under carnivore, test = leaves under device, train = rest",
            classes=ilsvrc2012_classes(),
            roots={"val": (CARNIVORE,), "test": (DEVICE,)},
            max_classes=MAX_SPANNING_LEAVES_ELIGIBLE,
        )
    if name == "tiered":
        return Preset(
            name,
            "tieredImageNet: 34 categories (20/6/8); classes under exactly one category",
            classes=ilsvrc2012_classes(),
            roots=TIERED_CATEGORIES,
            rest=None,
            drop_shared=True,
        )
    if name == "mini":
        fixed = mini_classes()
        return Preset(
            name,
            "mini-ImageNet, Ravi & Larochelle split: 64/16/20 classes",
            classes=tuple(sorted(c for cs in fixed.values() for c in cs)),
            fixed=fixed,
        )
    if name == "custom":
        roots = {s: tuple(r) for s, r in (roots or {}).items() if r}
        bad = sorted(set(roots) - set(SPLITS))
        if bad or not roots:
            raise FewtaskError(
                "preset custom needs split roots, e.g. --roots val=n02075296 --roots test=n03183080 "
                f"(splits: {', '.join(SPLITS)}){'; unknown split ' + ', '.join(bad) if bad else ''}"
            )
        return Preset(name, "user-named roots; classes under no root go to train", roots=roots,
                      rest=None if "train" in roots else "train")
    raise FewtaskError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")


PRESETS = ("meta-dataset", "tiered", "mini", "custom")


def assign_splits(p: Preset, classes: Iterable[str], taxonomy: Taxonomy | None) -> dict[str, tuple[str, ...]]:
    """split -> sorted classes, for the given class set (see module doc for the rules)."""
    classes = sorted(set(classes))
    if p.fixed is not None:
        have = set(classes)
        return {s: tuple(c for c in p.fixed.get(s, ()) if c in have) for s in SPLITS}
    if taxonomy is None:
        raise FewtaskError(f"preset {p.name} needs WordNet to assign classes to splits")
    lineage = _ancestor_sets(ancestors_closure(classes, taxonomy))
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    turn = 0
    for wnid in classes:
        hits = [(s, r) for s in SPLITS for r in p.roots.get(s, ()) if r in lineage[wnid]]
        splits = sorted({s for s, _ in hits}, key=SPLITS.index)
        if p.drop_shared and len(hits) > 1:
            continue
        if not splits:
            if p.rest is not None:
                out[p.rest].append(wnid)
            continue
        if len(splits) > 1:  # Meta-Dataset's rule: alternate between the claiming splits
            out[splits[turn % len(splits)]].append(wnid)
            turn += 1
        else:
            out[splits[0]].append(wnid)
    return {s: tuple(c) for s, c in out.items()}


# ---------------------------------------------------------------------------------------
# Families


@dataclass(frozen=True)
class Family:
    wnid: str
    lemma: str
    depth: int
    classes: tuple[str, ...]  # in the split's depth-first leaf order

    def as_dict(self) -> dict:
        return {"wnid": self.wnid, "lemma": self.lemma, "depth": self.depth, "classes": list(self.classes)}


def span_families(h: Hierarchy, taxonomy: Taxonomy, min_classes: int, max_classes: int, disjoint: bool = False) -> list[Family]:
    """Internal nodes whose leaf span has min..max classes, sorted by leaf order position.

    Nodes with identical spans (possible in a DAG) give one family: the deepest, then
    the lowest wnid."""
    if min_classes < 2 or max_classes < min_classes:
        raise FewtaskError(f"need 2 <= --min-classes <= --max-classes, got {min_classes} and {max_classes}")
    position = {c: i for i, c in enumerate(h.leaf_order)}
    best: dict[frozenset[str], str] = {}
    for node in h.internal:
        span = h.spans[node]
        if min_classes <= len(span) <= max_classes:
            held = best.get(span)
            if held is None or (-h.depth[node], node) < (-h.depth[held], held):
                best[span] = node
    chosen = sorted(best.items(), key=lambda kv: (-len(kv[0]), h.depth[kv[1]], kv[1]))
    if disjoint:
        used: set[str] = set()
        kept = []
        for span, node in chosen:
            if not (span & used):
                kept.append((span, node))
                used |= span
        chosen = kept
    families = [
        Family(node, taxonomy.lemma(node), h.depth[node], tuple(sorted(span, key=position.__getitem__)))
        for span, node in chosen
    ]
    return sorted(families, key=lambda f: (position[f.classes[0]], -len(f.classes), f.wnid))


def category_families(split_classes: Sequence[str], categories: Sequence[str], taxonomy: Taxonomy, order: Sequence[str]) -> list[Family]:
    """One family per category (e.g. tieredImageNet's): the split's classes under it; a
    category with fewer than 2 of them (possible for a partial class set) makes no task."""
    lineage = _ancestor_sets(ancestors_closure(split_classes, taxonomy))
    position = {c: i for i, c in enumerate(order)}
    out = []
    for cat in categories:
        members = tuple(sorted((c for c in split_classes if cat in lineage[c]), key=position.__getitem__))
        if len(members) >= 2:
            out.append(Family(cat, taxonomy.lemma(cat), 0, members))
    return sorted(out, key=lambda f: (position[f.classes[0]], f.wnid))


@dataclass(frozen=True)
class SplitFamilies:
    split: str
    classes: tuple[str, ...]  # depth-first leaf order
    families: tuple[Family, ...]


FAMILY_KINDS = ("wordnet", "tiered")


@dataclass(frozen=True)
class FamilyRule:
    """Which families a split gets: WordNet nodes with min..max classes (nested, or an
    antichain when disjoint), or tieredImageNet's categories (kind "tiered")."""

    min_classes: int = DEFAULT_MIN_CLASSES
    max_classes: int = DEFAULT_MAX_CLASSES
    disjoint: bool = False
    kind: str = "wordnet"

    def __post_init__(self) -> None:
        if self.kind not in FAMILY_KINDS:
            raise FewtaskError(f"unknown family kind {self.kind!r}; choose one of {', '.join(FAMILY_KINDS)}")
        if self.min_classes < 2 or self.max_classes < self.min_classes:
            raise FewtaskError(f"need 2 <= --min-classes <= --max-classes, got {self.min_classes} and {self.max_classes}")

    def as_dict(self) -> dict:
        return {"min_classes": self.min_classes, "max_classes": self.max_classes, "disjoint": self.disjoint, "families": self.kind}

    @classmethod
    def for_preset(cls, p: Preset, min_classes: int | None = None, max_classes: int | None = None,
                   disjoint: bool = False, kind: str = "wordnet") -> "FamilyRule":
        """The rule with the preset's default bounds where none is given: 5..392 for
        meta-dataset (Meta-Dataset's own rule, every class reachable), 5..50 otherwise."""
        return cls(DEFAULT_MIN_CLASSES if min_classes is None else min_classes,
                   p.max_classes if max_classes is None else max_classes, disjoint, kind)


def split_families(p: Preset, classes: Iterable[str], taxonomy: Taxonomy, rule: FamilyRule | None = None) -> list[SplitFamilies]:
    """Assign classes to splits, build each split's hierarchy and its families (by default
    with the preset's bounds, ``FamilyRule.for_preset``)."""
    rule = rule or FamilyRule.for_preset(p)
    if rule.kind == "tiered" and p.name != "tiered":
        raise FewtaskError("--families tiered needs --preset tiered (the categories are tieredImageNet's roots)")
    out = []
    for split, members in assign_splits(p, classes, taxonomy).items():
        if not members:
            continue
        h = build_hierarchy(members, taxonomy, roots=p.roots.get(split, ()) if p.fixed is None else ())
        if rule.kind == "tiered":
            fams = category_families(members, p.roots[split], taxonomy, h.leaf_order)
        else:
            fams = span_families(h, taxonomy, rule.min_classes, rule.max_classes, rule.disjoint)
        out.append(SplitFamilies(split, h.leaf_order, tuple(fams)))
    return out



# ---------------------------------------------------------------------------------------
# Family definitions: the JSON a build consumes and `manifests/` ships (no images)

def family_id(split: str, wnid: str) -> str:
    """Unique across splits (a node can head a family in two splits, e.g. in mini)."""
    return f"{split}-{wnid}"


def family_definitions(name: str, p: Preset, classes: Iterable[str], taxonomy: Taxonomy, rule: FamilyRule | None = None) -> dict:
    """Splits, their classes (leaf order) and families as one JSON-ready document."""
    rule = rule or FamilyRule.for_preset(p)
    result = split_families(p, classes, taxonomy, rule)
    splits = {}
    for sf in result:
        splits[sf.split] = {
            "classes": list(sf.classes),
            "families": [{"id": family_id(sf.split, f.wnid), **f.as_dict()} for f in sf.families],
        }
    return {
        "format": DEFINITIONS_FORMAT,
        "format_version": DEFINITIONS_VERSION,
        "name": name,
        "taxonomy": "WordNet 3.0",
        "preset": p.as_dict(),
        "params": rule.as_dict(),
        "lemmas": {c: taxonomy.lemma(c) for sf in result for c in sf.classes},
        "splits": splits,
    }


# The family definitions shipped in fewtask_data/data/manifests/ (`fewtask-data manifests`):
# name -> (preset, family kind); all over the 1,000 ILSVRC-2012 classes with the preset's
# default bounds (meta-dataset 5..392, the others 5..50), overlapping.
# scripts/make_imagenet_manifests.py writes them.
SHIPPED = {
    "imagenet-meta-dataset": ("meta-dataset", "wordnet"),
    "imagenet-tiered": ("tiered", "wordnet"),
    "imagenet-tiered-categories": ("tiered", "tiered"),
    "imagenet-mini": ("mini", "wordnet"),
}


def shipped_definitions(taxonomy: Taxonomy) -> dict[str, dict]:
    """The shipped definitions documents as WordNet gives them today."""
    return {
        name: family_definitions(name, preset(p), ilsvrc2012_classes(), taxonomy, FamilyRule.for_preset(preset(p), kind=kind))
        for name, (p, kind) in SHIPPED.items()
    }
