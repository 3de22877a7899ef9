"""Regenerate the shipped ImageNet family definitions from WordNet 3.0.

    .venv/bin/python scripts/make_imagenet_manifests.py [--check]

Writes fewtask_data/data/manifests/imagenet-*.json (the files `fewtask-data manifests`
lists; their recipes are ``fewtask_data.families.hierarchy.SHIPPED``); --check only
compares and exits 1 when a shipped file differs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fewtask_data.families.definitions import definitions_json
from fewtask_data.families.hierarchy import shipped_definitions
from fewtask_data.sources.wordnet import load_wordnet

OUT = Path(__file__).resolve().parents[1] / "fewtask_data" / "data" / "manifests"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    OUT.mkdir(parents=True, exist_ok=True)
    for name, defs in shipped_definitions(load_wordnet()).items():
        text = definitions_json(defs)
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
