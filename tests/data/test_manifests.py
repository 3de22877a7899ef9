"""The shipped family definitions: load without WordNet, clean splits, CLI, up to date."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fewtask_data import FewtaskError, list_definitions, load_definitions
from fewtask_data.families import hierarchy as fw
from fewtask_data.families.definitions import definitions_json

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ["imagenet-meta-dataset", "imagenet-mini", "imagenet-tiered", "imagenet-tiered-categories"]


def test_shipped_definitions_are_listed_and_clean():
    assert list_definitions() == SHIPPED
    for name in SHIPPED:
        defs = load_definitions(name)
        assert defs["name"] == name and defs["taxonomy"] == "WordNet 3.0"
        owner = {}
        for split, body in defs["splits"].items():
            for c in body["classes"]:
                assert owner.setdefault(c, split) == split, f"{c} in two splits of {name}"
            for fam in body["families"]:
                assert set(fam["classes"]) <= set(body["classes"])
                assert {"id", "wnid", "lemma", "depth", "classes"} <= fam.keys()
        assert set(owner) <= set(fw.ilsvrc2012_classes())


def test_shipped_meta_dataset_definitions_reach_every_class():
    """Meta-Dataset's rule (families span 5..392 classes) puts every class in a family."""
    defs = load_definitions("imagenet-meta-dataset")
    assert defs["params"] == {"min_classes": 5, "max_classes": 392, "disjoint": False, "families": "wordnet"}
    for split, size in zip(fw.SPLITS, (712, 158, 130)):
        body = defs["splits"][split]
        assert len({c for fam in body["families"] for c in fam["classes"]}) == len(body["classes"]) == size
    largest = max(len(fam["classes"]) for fam in defs["splits"]["train"]["families"])
    assert largest == fw.MAX_SPANNING_LEAVES_ELIGIBLE


def test_shipped_split_sizes():
    sizes = lambda name: [len(load_definitions(name)["splits"][s]["classes"]) for s in fw.SPLITS]  # noqa: E731
    assert sizes("imagenet-meta-dataset") == [712, 158, 130]
    assert sizes("imagenet-tiered") == sizes("imagenet-tiered-categories") == [351, 97, 160]
    assert sizes("imagenet-mini") == [64, 16, 20]
    cats = load_definitions("imagenet-tiered-categories")["splits"]
    assert [len(cats[s]["families"]) for s in fw.SPLITS] == [20, 6, 8]


def test_top_level_manifests_folder_points_at_the_package_files():
    for name in SHIPPED:
        assert (REPO / "manifests" / f"{name}.json").read_text() == (
            REPO / "fewtask_data" / "data" / "manifests" / f"{name}.json"
        ).read_text()


def test_loading_needs_no_wordnet_or_nltk():
    code = (
        "import sys; sys.modules['nltk'] = None\n"  # any nltk import now fails
        "from fewtask_data.families.definitions import list_definitions, load_definitions\n"
        "n = [len(load_definitions(x)['splits']['val']['families']) for x in list_definitions()]\n"
        "assert 'fewtask_data.sources.wordnet' not in sys.modules\n"
        "print(n)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[18, 5, 16, 6]"


def test_bad_names_and_files_are_one_line_errors(tmp_path):
    with pytest.raises(FewtaskError, match="no family definitions named 'nope'; known: imagenet-meta-dataset"):
        load_definitions("nope")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(FewtaskError, match="not valid JSON"):
        load_definitions(bad)
    bad.write_text(json.dumps({"format": "other"}))
    with pytest.raises(FewtaskError, match="not a fewtask-family-definitions"):
        load_definitions(bad)
    defs = load_definitions("imagenet-mini")
    defs["splits"]["val"]["classes"].append(defs["splits"]["train"]["classes"][0])
    bad.write_text(json.dumps(defs))
    with pytest.raises(FewtaskError, match="is in splits train and val"):
        load_definitions(bad)


def test_cli_list_and_show():
    from typer.testing import CliRunner

    from fewtask_data.cli.manifests import manifests_app

    run = lambda *args: CliRunner().invoke(manifests_app, list(args))  # noqa: E731
    listed = run("list")
    assert listed.exit_code == 0, listed.output
    assert "imagenet-meta-dataset        wordnet 5-392 classes: train 712 classes / 113 families / 0 in no family" in listed.output
    assert "imagenet-mini                wordnet 5-50 classes: train 64 classes / 11 families / 6 in no family" in listed.output
    shown = run("show", "imagenet-meta-dataset", "--split", "val")
    assert "[val] 158 classes, 0 in no family" in shown.output
    assert "val-n02075296    carnivore                    depth 0  158 classes" in shown.output  # 158 <= 392
    assert "val-n02120997    feline" in shown.output
    assert json.loads(run("show", "imagenet-mini", "--json").output) == load_definitions("imagenet-mini")


def test_cli_show_names_the_classes_no_family_reaches():
    from typer.testing import CliRunner

    from fewtask_data.cli.manifests import manifests_app

    run = lambda *args: CliRunner().invoke(manifests_app, list(args)).output  # noqa: E731
    plain, named = run("show", "imagenet-mini", "--split", "train"), run("show", "imagenet-mini", "--unreached")
    assert "[train] 64 classes, 6 in no family" in plain and "in no family (6):" not in plain
    lines = named.splitlines()
    at = lines.index("  in no family (6):")
    assert lines[at + 1 : at + 7] == [
        "    n07747607  orange", "    n13133613  ear", "    n09246464  cliff",
        "    n07584110  consomme", "    n07697537  hotdog", "    n06794110  street_sign",
    ]
    train = load_definitions("imagenet-mini")["splits"]["train"]
    reached = {c for fam in train["families"] for c in fam["classes"]}
    assert {line.split()[0] for line in lines[at + 1 : at + 7]} == set(train["classes"]) - reached
    assert "[val] 16 classes, 0 in no family" in named and named.count("in no family (") == 1


def test_cli_error_is_one_line_and_exit_2():
    code = (
        "import sys; from fewtask_data.cli.common import run; from fewtask_data.cli.manifests import manifests_app\n"
        "sys.argv = ['fewtask-data manifests', 'show', 'nope']; run(manifests_app)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("error: no family definitions named 'nope'") and done.stderr.count("\n") == 1


def test_shipped_files_are_what_wordnet_gives_today(wordnet):
    for name, defs in fw.shipped_definitions(wordnet).items():
        text = definitions_json(defs)
        assert load_definitions(name) == json.loads(text)
        assert definitions_json(load_definitions(name)) == text
