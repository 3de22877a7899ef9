"""WordNet access, the hierarchy algorithms, and the split presets against the published files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from fewtask_data.sources import wordnet as wnmod
from fewtask_data import FewtaskError
from fewtask_data.families import hierarchy as fw
from fewtask_data.families.definitions import check_definitions


# ------------------------------------------------------------------ WordNet access


def test_lexnames_has_the_45_lexicographer_files_in_nltks_format():
    lines = wnmod.lexnames_text().splitlines()
    assert len(lines) == 45
    for i, line in enumerate(lines):  # nltk: index, lexname, _ = line.split(); assert int(index) == i
        index, name, cat = line.split("\t")
        assert int(index) == i and cat in "1234"
    assert lines[3].split("\t")[1] == "noun.Tops" and lines[44].split("\t")[1] == "adj.ppl"
    assert all(l.split("\t")[2] == "1" for l in lines if ".noun" in l or l.split("\t")[1].startswith("noun."))


@pytest.mark.parametrize("bad", ["n123", "x01440764", "n0144076a", "", "n014407640"])
def test_bad_wnids_are_rejected(bad):
    with pytest.raises(FewtaskError, match="8 digits"):
        wnmod.wnid_offset(bad)


def test_no_wordnet_anywhere_gives_one_error_with_both_fixes(monkeypatch, tmp_path):
    monkeypatch.delenv(wnmod.ENV_VAR, raising=False)
    monkeypatch.setattr(wnmod, "DEBIAN_DIR", tmp_path / "absent")
    monkeypatch.setattr(wnmod, "_nltk_installed_corpus", lambda: None)
    with pytest.raises(FewtaskError) as err:
        wnmod.locate()
    text = str(err.value)
    assert "apt-get install wordnet-base wordnet-sense-index" in text and "nltk.download('wordnet')" in text
    assert "\n" not in text
    ok, reason = wnmod.wordnet_available()
    assert not ok and "apt-get" in reason


def test_wordnet_dir_must_be_a_complete_wordnet_30(tmp_path, monkeypatch):
    with pytest.raises(FewtaskError, match="does not exist"):
        wnmod.locate(tmp_path / "nope")
    with pytest.raises(FewtaskError, match="lacks data.noun"):
        wnmod.locate(tmp_path)
    for name in wnmod.DATABASE_FILES:
        (tmp_path / name).write_text("  1 not wordnet\n")
    with pytest.raises(FewtaskError, match="not WordNet 3.0"):
        wnmod.locate(tmp_path)
    monkeypatch.setenv(wnmod.ENV_VAR, str(tmp_path))
    with pytest.raises(FewtaskError, match=wnmod.ENV_VAR):
        wnmod.locate()


def test_wordnet_lookups(wordnet):
    assert wordnet.parents("n01440764") == ("n01439121",)  # tench -> cyprinid
    assert wordnet.lemma("n02075296") == "carnivore"
    assert wordnet.words("n01440764") == "tench, Tinca tinca"
    with pytest.raises(FewtaskError, match="not a WordNet 3.0 noun synset"):
        wordnet.synset("n00000001")


def test_a_bare_database_folder_is_made_readable_by_nltk(wordnet, tmp_path, monkeypatch):
    """Debian's folder has no lexnames: a cached corpus copy with one is built, via the env var."""
    if wordnet.source == "nltk corpus" or not wnmod.is_wordnet30(wordnet.folder):
        pytest.skip("WordNet comes from nltk's own corpus here, not a bare database folder")
    monkeypatch.setenv(wnmod.CACHE_ENV_VAR, str(tmp_path / "cache"))
    monkeypatch.setenv(wnmod.ENV_VAR, str(wordnet.folder))
    wnmod._open.cache_clear()
    try:
        wn = wnmod.load_wordnet()
        assert wn.source == wnmod.ENV_VAR
        assert wn.lemma("n03183080") == "device"
        corpus = next((tmp_path / "cache" / "fewtask").glob("nltk-wordnet-*/corpora/wordnet"))
        assert (corpus / "lexnames").read_text() == wnmod.lexnames_text()
    finally:
        wnmod._open.cache_clear()


# ------------------------------------------------------------------ hierarchy on a toy taxonomy


class Toy:
    """A dict-backed taxonomy: child -> parents."""

    def __init__(self, up: dict[str, tuple[str, ...]]):
        self.up = up

    def parents(self, wnid):
        return self.up.get(wnid, ())

    def lemma(self, wnid):
        return f"lemma_{wnid}"


# root -> chain -> {A, B}; A -> {a1, a2, a3}; B -> {b1, b2}; single-child chain C -> D -> c1,c2
TOY = Toy(
    {
        "chain": ("root",),
        "A": ("chain",),
        "B": ("chain",),
        "a1": ("A",), "a2": ("A",), "a3": ("A",),
        "b1": ("B",), "b2": ("B",),
        "C": ("root",), "D": ("C",),
        "c1": ("D",), "c2": ("D",),
    }
)
TOY_CLASSES = ["a1", "a2", "a3", "b1", "b2", "c1", "c2"]


def test_collapse_removes_single_child_chains_and_keeps_spans():
    h = fw.build_hierarchy(TOY_CLASSES, TOY)
    assert "C" not in h.children  # C had one child (D)
    assert h.parents["D"] == ("root",)
    assert "chain" in h.children  # two children: kept
    assert h.spans["root"] == frozenset(TOY_CLASSES)
    assert h.spans["A"] == {"a1", "a2", "a3"} and h.spans["D"] == {"c1", "c2"}
    assert h.depth == {"root": 0, "chain": 1, "D": 1, "A": 2, "B": 2, "a1": 3, "a2": 3, "a3": 3, "b1": 3, "b2": 3, "c1": 2, "c2": 2}
    assert h.roots == ("root",)


def test_leaf_order_keeps_every_subtree_contiguous():
    h = fw.build_hierarchy(TOY_CLASSES, TOY)
    assert h.leaf_order == ("c1", "c2", "a1", "a2", "a3", "b1", "b2")  # children by wnid: "D" < "chain"
    pos = {c: i for i, c in enumerate(h.leaf_order)}
    for node in h.internal:
        idx = sorted(pos[c] for c in h.spans[node])
        assert idx == list(range(idx[0], idx[0] + len(idx))), node


def test_a_class_that_is_an_ancestor_is_never_collapsed():
    toy = Toy({"mid": ("top",), "leaf": ("mid",), "other": ("top",)})
    h = fw.build_hierarchy(["mid", "leaf", "other"], toy)  # ImageNet-21k: 'mid' is a class with one child
    assert "mid" in h.children and h.spans["mid"] == {"mid", "leaf"}
    assert h.leaf_order == ("mid", "leaf", "other")  # a class comes before its descendants


def test_families_within_bounds_nested_and_disjoint():
    h = fw.build_hierarchy(TOY_CLASSES, TOY)
    fams = fw.span_families(h, TOY, min_classes=2, max_classes=5)
    assert [(f.wnid, len(f.classes)) for f in fams] == [("D", 2), ("chain", 5), ("A", 3), ("B", 2)]
    assert fams[2].lemma == "lemma_A" and fams[2].depth == 2
    disjoint = fw.span_families(h, TOY, 2, 5, disjoint=True)
    assert [f.wnid for f in disjoint] == ["D", "chain"]  # largest first, then no shared class
    assert [f.wnid for f in fw.span_families(h, TOY, 2, 4, disjoint=True)] == ["D", "A", "B"]
    with pytest.raises(FewtaskError, match="min-classes"):
        fw.span_families(h, TOY, 1, 5)


def test_custom_roots_split_and_split_hierarchy_stays_under_its_root():
    p = fw.preset("custom", {"val": ("A",), "test": ("D",)})
    splits = fw.assign_splits(p, TOY_CLASSES, TOY)
    assert splits == {"train": ("b1", "b2"), "val": ("a1", "a2", "a3"), "test": ("c1", "c2")}
    h = fw.build_hierarchy(splits["val"], TOY, roots=("A",))
    assert h.roots == ("A",)
    with pytest.raises(FewtaskError, match="needs split roots"):
        fw.preset("custom", {})
    with pytest.raises(FewtaskError, match="unknown preset"):
        fw.preset("nope")


def test_a_class_under_two_split_roots_alternates_or_is_dropped():
    toy = Toy({"x1": ("P", "Q"), "x2": ("P", "Q"), "y": ("P",)})
    alt = fw.assign_splits(fw.Preset("t", "", roots={"val": ("P",), "test": ("Q",)}), ["x1", "x2", "y"], toy)
    assert alt == {"train": (), "val": ("x1", "y"), "test": ("x2",)}
    drop = fw.assign_splits(fw.Preset("t", "", roots={"val": ("P",), "test": ("Q",)}, drop_shared=True), ["x1", "x2", "y"], toy)
    assert drop == {"train": (), "val": ("y",), "test": ()}


# ------------------------------------------------------------------ presets vs the published splits


def _wnid_lines(path: Path) -> set[str]:
    return {line.split()[0] for line in path.read_text().splitlines() if line.strip()}


def test_ilsvrc_class_list_matches_the_shared_file(splits_dir):
    assert fw.ilsvrc2012_classes() == tuple(sorted(_wnid_lines(splits_dir / "ilsvrc2012_wnids.txt")))
    assert len(fw.ilsvrc2012_classes()) == 1000


def test_meta_dataset_split_and_subgraphs_are_exact(wordnet, splits_dir):
    md = splits_dir / "meta-dataset-ilsvrc"
    p = fw.preset("meta-dataset")
    splits = fw.assign_splits(p, fw.ilsvrc2012_classes(), wordnet)
    names = {"train": "train", "val": "valid", "test": "test"}
    for split, name in names.items():
        assert set(splits[split]) == _wnid_lines(md / f"ilsvrc_2012_{name}_wnids.txt"), split
    assert [len(splits[s]) for s in fw.SPLITS] == [712, 158, 130]
    spec = json.loads((md / "ilsvrc_2012_dataset_spec.json").read_text())["split_subgraphs"]
    for split, key in {"train": "TRAIN", "val": "VALID", "test": "TEST"}.items():
        h = fw.build_hierarchy(splits[split], wordnet, roots=p.roots.get(split, ()))
        theirs = {n["wn_id"]: sorted(n["parents_ids"]) for n in spec[key]}
        assert {n: list(ps) for n, ps in h.parents.items()} == theirs, split  # 1011 / 200 / 180 nodes


def test_full_dag_equals_meta_datasets_v2_graph_once_that_is_fully_collapsed(wordnet, splits_dir):
    """The v2 spec leaves two single-child nodes (automatic_firearm, contestant) uncollapsed."""
    spec = json.loads((splits_dir / "meta-dataset-ilsvrc" / "ilsvrc_2012_v2_dataset_spec.json").read_text())
    theirs = {n["wn_id"]: n["parents_ids"] for n in spec["split_subgraphs"]["TRAIN"]}
    assert len(theirs) == 1399
    collapsed = fw.collapse(theirs, keep=frozenset(fw.ilsvrc2012_classes()))
    h = fw.build_hierarchy(fw.ilsvrc2012_classes(), wordnet)
    assert {n: sorted(ps) for n, ps in collapsed.items()} == {n: list(ps) for n, ps in h.parents.items()}
    assert len(h.parents) == 1397 and h.roots == ("n00001740",)


def test_tiered_split_and_categories_are_exact(wordnet, splits_dir):
    splits = fw.assign_splits(fw.preset("tiered"), fw.ilsvrc2012_classes(), wordnet)
    defs = fw.family_definitions("t", fw.preset("tiered"), fw.ilsvrc2012_classes(), wordnet, fw.FamilyRule(kind="tiered"))
    for split in fw.SPLITS:
        rows = list(csv.reader((splits_dir / "tiered-imagenet" / f"{split}.csv").open()))
        assert set(splits[split]) == {r[0] for r in rows}
        published = {}
        for cls, cat in rows:
            published.setdefault(cat, set()).add(cls)
        ours = {f["wnid"]: set(f["classes"]) for f in defs["splits"][split]["families"]}
        assert ours == published, split
    assert [len(splits[s]) for s in fw.SPLITS] == [351, 97, 160]
    assert [len(defs["splits"][s]["families"]) for s in fw.SPLITS] == [20, 6, 8]


def test_mini_split_is_exact(splits_dir):
    splits = fw.assign_splits(fw.preset("mini"), fw.ilsvrc2012_classes(), None)
    for split in fw.SPLITS:
        rows = csv.DictReader((splits_dir / "mini-imagenet-ravi" / f"{split}.csv").open())
        assert set(splits[split]) == {r["label"] for r in rows}
    assert [len(splits[s]) for s in fw.SPLITS] == [64, 16, 20]


@pytest.mark.parametrize("name", ["meta-dataset", "tiered", "mini"])
@pytest.mark.parametrize("disjoint", [False, True])
def test_split_hygiene_and_family_records(wordnet, name, disjoint):
    defs = fw.family_definitions(name, fw.preset(name), fw.ilsvrc2012_classes(), wordnet, fw.FamilyRule(disjoint=disjoint))
    check_definitions(defs)  # no class in two splits, no family outside its split
    seen_ids, owner = set(), {}
    for split, body in defs["splits"].items():
        for c in body["classes"]:
            assert owner.setdefault(c, split) == split
        used = set()
        for fam in body["families"]:
            assert fam["id"] not in seen_ids and 5 <= len(fam["classes"]) <= 50
            assert set(fam["classes"]) <= set(body["classes"])
            assert fam["lemma"] == wordnet.lemma(fam["wnid"]) and fam["depth"] >= 0
            seen_ids.add(fam["id"])
            if disjoint:
                assert not used & set(fam["classes"])
                used |= set(fam["classes"])


def test_family_counts_for_the_1000_classes(wordnet):
    """The numbers reported in docs/imagenet.md (bounds 5..50)."""
    counts = {}
    for name in ("meta-dataset", "tiered", "mini"):
        for disjoint in (False, True):
            defs = fw.family_definitions(name, fw.preset(name), fw.ilsvrc2012_classes(), wordnet, fw.FamilyRule(disjoint=disjoint))
            counts[name, disjoint] = [len(defs["splits"][s]["families"]) for s in fw.SPLITS]
    assert counts["meta-dataset", False] == [97, 14, 14]
    assert counts["meta-dataset", True] == [30, 7, 5]
    assert counts["tiered", False] == [47, 16, 21]
    assert counts["mini", False] == [11, 5, 6]


def test_category_families_skip_categories_with_fewer_than_two_classes():
    fams = fw.category_families(["a1", "a2", "b1"], ["A", "B"], TOY, order=["a1", "a2", "b1"])
    assert [(f.wnid, f.classes) for f in fams] == [("A", ("a1", "a2"))]  # B has one class: no task


def test_imagenet21k_style_class_sets_where_a_class_is_an_ancestor(wordnet):
    """dog (n02084071) is a class and an ancestor of two other classes, as in ImageNet-21k."""
    classes = ["n02084071", "n02085620", "n02085782", "n02121808"]  # dog, Chihuahua, Japanese spaniel, domestic cat
    h = fw.build_hierarchy(classes, wordnet)
    assert h.spans["n02084071"] == {"n02084071", "n02085620", "n02085782"}
    order = h.leaf_order
    assert order.index("n02084071") < order.index("n02085620") and sorted(order) == sorted(classes)
    fams = fw.span_families(h, wordnet, 2, 3)
    assert ("n02084071", "dog") in {(f.wnid, f.lemma) for f in fams}
