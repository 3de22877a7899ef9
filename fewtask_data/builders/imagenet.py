"""An ImageNet folder -> WordNet family shards (`fewtask-data build imagenet-families`).

Steps: find the folder layout and its classes; get the family definitions (computed
from WordNet for a preset, or read from a shipped/saved definitions file); check the
preset's classes are present; hand the classes, in each split's depth-first leaf
order, to the generic build (fewtask_data.builders.core), which decodes in worker processes
with the picklable ImageDecoder and writes shards, index, report and manifest. The
manifest records each split's whole class list (also classes no family reaches) and
``params.max_visit_classes`` = 50: a stream's visit to a larger family (meta-dataset's
default bounds allow 392 classes) loads 50 of its classes, as Meta-Dataset subsamples.
"""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from fewtask_data.builders.core import build_dataset
from fewtask_data.builders.finalize import BuildReport
from fewtask_data.builders.plan import BuildOptions
from fewtask_data.errors import FewtaskError
from fewtask_data.families import hierarchy as fw
from fewtask_data.families.definitions import load_definitions, restrict_definitions
from fewtask_data.sources import SourceClass
from fewtask_data.sources import imagenet as src

BUILDER = "imagenet-families"
BUILDER_VERSION = "1"


def parse_roots(specs: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """['val=n02075296', 'test=n03183080,n04576211'] -> {split: wnids}."""
    out: dict[str, list[str]] = {}
    for spec in specs:
        split, sep, wnids = spec.partition("=")
        if not sep or split not in fw.SPLITS or not wnids:
            raise FewtaskError(f"--roots {spec!r}: expected SPLIT=WNID[,WNID...] with SPLIT one of {', '.join(fw.SPLITS)}")
        for wnid in wnids.split(","):
            src.WNID.match(wnid) or _bad_wnid(wnid)
            out.setdefault(split, []).append(wnid)
    return {s: tuple(w) for s, w in out.items()}


def _bad_wnid(wnid: str) -> None:
    raise FewtaskError(f"{wnid!r} is not a wnid; expected 'n' and 8 digits, e.g. n02075296")


def read_class_file(path: Path) -> list[str]:
    """Class wnids from a text file: the first token of each non-empty, non-# line."""
    if not path.is_file():
        raise FewtaskError(f"class list {path} does not exist")
    wnids = [line.split()[0] for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    for w in wnids:
        src.WNID.match(w) or _bad_wnid(w)
    return wnids


def missing_error(missing: Sequence[str], where: Path, what: str) -> FewtaskError:
    shown = ", ".join(missing[:20]) + (f" ... ({len(missing)} in all)" if len(missing) > 20 else "")
    return FewtaskError(
        f"{len(missing)} class(es) of {what} are missing from {where}: {shown}; "
        "add them, or pass --allow-missing to build without them (recorded in the manifest)"
    )


def resolve_definitions(
    folder_classes: Sequence[str],
    *,
    preset_name: str,
    roots: dict[str, tuple[str, ...]],
    class_list: Sequence[str] | None,
    definitions: str | None,
    rule: fw.FamilyRule | None,
    wordnet_dir: str | None,
) -> tuple[dict, list[str], str]:
    """(definitions over the wanted classes, the wanted classes, what they come from)."""
    if definitions:
        defs = load_definitions(definitions)
        wanted = sorted({c for body in defs["splits"].values() for c in body["classes"]})
        return defs, wanted, f"definitions {definitions}"
    from fewtask_data.sources.wordnet import load_wordnet  # nltk: only when families come from WordNet

    p = fw.preset(preset_name, roots)
    wanted = sorted(set(class_list)) if class_list else sorted(p.classes or folder_classes)
    present = sorted(set(wanted) & set(folder_classes))
    if not present:
        return {}, wanted, f"preset {preset_name}"
    defs = fw.family_definitions(f"imagenet-{preset_name}", p, present, load_wordnet(wordnet_dir), rule or fw.FamilyRule.for_preset(p))
    return defs, wanted, f"preset {preset_name}"


def select_items(images: list[Path], cls: str, max_per_class: int | None, seed: int) -> list[tuple[str, str]]:
    """(sample id, path) pairs; with max_per_class a seeded subset, kept in name order."""
    if max_per_class is not None and len(images) > max_per_class:
        rng = np.random.default_rng([seed, zlib.crc32(cls.encode()), 1])
        images = sorted(images[i] for i in rng.choice(len(images), max_per_class, replace=False))
    return [(src.sample_id(p), str(p)) for p in images]


def fingerprint(layout: str, listing: dict[str, list[tuple[str, str]]]) -> str:
    """Layout + class + file names + sizes: cheap, independent of where the folder lives."""
    h = hashlib.sha256(layout.encode())
    for cls in sorted(listing):
        for sid, path in listing[cls]:
            h.update(f"{cls}/{sid}:{Path(path).stat().st_size}\n".encode())
    return h.hexdigest()


def build_imagenet_families(
    imagenet_root: Path,
    out: Path,
    *,
    preset_name: str = "meta-dataset",
    roots: dict[str, tuple[str, ...]] | None = None,
    class_list: Sequence[str] | None = None,
    definitions: str | None = None,
    image_size: int = 84,
    resize: str = "squash",
    max_per_class: int | None = None,
    rule: fw.FamilyRule | None = None,
    allow_missing: bool = False,
    wordnet_dir: str | None = None,
    options: BuildOptions = BuildOptions(encoding="jpeg", quality=95),
    progress=None,
) -> BuildReport:
    """The whole command as a function (see module doc). Without ``rule`` the families
    follow the preset's default bounds (``FamilyRule.for_preset``)."""
    decoder = src.ImageDecoder(image_size, resize)
    if max_per_class is not None and max_per_class < 1:
        raise FewtaskError(f"--max-per-class must be >= 1, got {max_per_class}")
    layout, train_dir = src.find_train_dir(imagenet_root)
    images = {c: src.list_images(folder) for c, folder in src.list_classes(train_dir).items()}
    available = sorted(c for c, files in images.items() if files)  # an empty folder counts as missing
    defs, wanted, what = resolve_definitions(
        available, preset_name=preset_name, roots=roots or {}, class_list=class_list,
        definitions=definitions, rule=rule, wordnet_dir=wordnet_dir,
    )
    missing = sorted(set(wanted) - set(available))
    if missing and not allow_missing:
        raise missing_error(missing, train_dir, what)
    if len(missing) == len(wanted):
        raise FewtaskError(f"none of the {len(wanted)} classes of {what} has images in {train_dir}")
    listing = {c: select_items(images[c], c, max_per_class, options.seed) for c in wanted if c in images and images[c]}
    if definitions and missing:
        defs = restrict_definitions(defs, set(wanted) - set(missing))

    lemmas = defs.get("lemmas", {})
    classes, splits, split_classes = [], {}, {}
    for split in (s for s in fw.SPLITS if s in defs["splits"]):
        body = defs["splits"][split]
        for c in body["classes"]:
            classes.append(SourceClass(c, listing[c], {"lemma": lemmas.get(c, ""), "split": split}))
        split_classes[split] = body["classes"]  # the whole split, also classes no family reaches
        splits[split] = [
            {"id": f["id"], "classes": f["classes"], "meta": {k: f[k] for k in ("wnid", "lemma", "depth")}}
            for f in body["families"]
        ]
    if not any(splits.values()):
        p = defs["params"]
        if p["families"] == "tiered":
            kind, fix = "tieredImageNet category with 2 or more classes", "add classes"
        else:
            kind, fix = f"family of {p['min_classes']}..{p['max_classes']} classes", "add classes, or lower --min-classes"
        raise FewtaskError(f"no {kind} is left among the {len(classes)} classes found ({what}); {fix}")
    params = {
        "preset": defs.get("preset", {}).get("name", preset_name),
        "definitions": definitions,
        "family_params": defs["params"],
        "image_size": image_size,
        "resize": resize,
        "max_per_class": max_per_class,
        "layout": layout,
        "allow_missing": allow_missing,
        "missing_classes": missing,
        "taxonomy": defs.get("taxonomy", "WordNet 3.0"),
        "max_visit_classes": fw.MAX_WAYS_UPPER_BOUND,
    }
    if progress:  # start the clock now: the generic build reports only finished shards
        progress(0, sum(len(c.items) for c in classes))
    return build_dataset(
        out,
        dataset=f"imagenet-{params['preset']}",
        builder=BUILDER,
        builder_version=BUILDER_VERSION,
        source={"fingerprint": fingerprint(layout, listing), "layout": layout, "classes": len(listing)},
        classes=classes,
        decode=decoder,
        splits=splits,
        split_classes=split_classes,
        options=options,
        params=params,
        seeds={"max_per_class": options.seed},
        progress=progress,
    )
