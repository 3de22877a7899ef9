"""Regenerate the shipped ImageNet family definitions from WordNet 3.0.

    .venv/bin/python scripts/make_imagenet_manifests.py [--check]

Writes fewtask_data/data/manifests/imagenet-*.json (the files `fewtask-data manifests`
lists); --check only compares and exits 1 when a shipped file differs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fewtask_data.families import wordnet as fw
from fewtask_data.manifests_api import definitions_json
from fewtask_data.wordnet import load_wordnet

OUT = Path(__file__).resolve().parents[1] / "fewtask_data" / "data" / "manifests"

# name -> (preset, family kind); all use the command's default bounds 5..50, overlapping.
SHIPPED = {
    "imagenet-meta-dataset": ("meta-dataset", "wordnet"),
    "imagenet-tiered": ("tiered", "wordnet"),
    "imagenet-tiered-categories": ("tiered", "tiered"),
    "imagenet-mini": ("mini", "wordnet"),
}


def generate() -> dict[str, str]:
    wn = load_wordnet()
    return {
        name: definitions_json(fw.family_definitions(name, fw.preset(p), fw.ilsvrc2012_classes(), wn, fw.FamilyRule(kind=kind)))
        for name, (p, kind) in SHIPPED.items()
    }


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in generate().items():
        path = OUT / f"{name}.json"
        if path.exists() and path.read_text() == text:
            continue
        stale.append(name)
        if not check:
            path.write_text(text)
    print(("differ: " if check else "written: ") + (", ".join(stale) or "none"))
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
