"""The procedural manifest kind: family definitions whose tasks are parameters, not stored
examples (navigation crops, continual-sine frequencies, sinusoid phases).

``schema/procedural.schema.json`` describes it: the builder, its settings (``params``),
seeds, and per split the families (``{id, params}``) plus an optional ``pool`` of
parameter records the split's families share (continual sines: its functions). No
images, shards or index. Every procedural loader reads through `load_procedural`, which
checks the builder's name and version once for all of them.

Builds made before this kind existed are image manifests with count-0 classes marked
``params.procedural``; `from_legacy` reads them into the same document, so they load
with the same families and keep their build id.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from fewtask_data.errors import FewtaskError
from fewtask_data.formats.manifest import PROCEDURAL_FORMAT, BuildRecord, Manifest, check_id, check_schema, read_document
from fewtask_data.io import json_bytes, sha256_bytes

FORMAT_VERSION = 1
SCHEMA_PATH = Path(__file__).parents[1] / "schema" / "procedural.schema.json"
LEGACY_PARAMS = ("procedural", "shard_size")  # the old kind's image-build settings, no part of the families
LEGACY_SEEDS = ("shuffle",)
SHOWN = 12  # families listed per split by `inspect`


@lru_cache(maxsize=1)
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def validate_procedural(doc: Any) -> None:
    """Schema check, then what it cannot say: split names are ids, family ids are unique."""
    if not isinstance(doc, dict):
        raise FewtaskError("manifest must be a JSON object")
    version = doc.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise FewtaskError(f"procedural manifest format_version {version} is newer than this fewtask ({FORMAT_VERSION}); upgrade fewtask")
    check_schema(doc, schema(), "manifest", schema())
    seen: dict[str, str] = {}
    for split, body in doc["splits"].items():
        check_id(split, "split name")
        for fam in body["families"]:
            if fam["id"] in seen:
                raise FewtaskError(f"family {fam['id']!r} appears twice (splits {seen[fam['id']]!r} and {split!r})")
            seen[fam["id"]] = split


def content_id(doc: dict) -> str:
    """sha256 of the document without its build id: a new build's id."""
    return sha256_bytes(json_bytes({k: v for k, v in doc.items() if k != "build_id"}))


def is_procedural(data: Any) -> bool:
    """Either kind: the procedural format, or an old image manifest marked ``params.procedural``."""
    if not isinstance(data, dict):
        return False
    params = data.get("params")
    return data.get("format") == PROCEDURAL_FORMAT or (isinstance(params, dict) and params.get("procedural") is True)


def from_legacy(data: dict, root: str) -> dict:
    """The procedural document an old image-kind procedural manifest stands for. Family
    ``meta`` becomes ``params``; a class named after its family is that family (navigation
    kept its splits disjoint so), the split's other classes are its pool (continual sines'
    functions, their meta in recorded order). The old build id is kept."""
    old = Manifest(data, root)  # validates the old kind
    splits = {}
    for split in old.splits:
        families = old.families(split)
        own = {f["id"] for f in families}
        pool = [old.class_meta(c) for c in old.recorded_classes(split) or old.split_classes(split) if c not in own]
        splits[split] = {"families": [{"id": f["id"], "params": f["meta"]} for f in families], **({"pool": pool} if pool else {})}
    return {
        "format": PROCEDURAL_FORMAT, "format_version": FORMAT_VERSION, "build_id": old.build_id, "dataset": old.dataset,
        "description": data["source"]["fingerprint"], "builder": data["builder"],
        "params": {k: v for k, v in old.params.items() if k not in LEGACY_PARAMS},
        "seeds": {k: v for k, v in data["seeds"].items() if k not in LEGACY_SEEDS},
        "splits": splits,
    }  # fmt: skip


class ProceduralManifest(BuildRecord):
    """A validated procedural document (``data``) and the root it was read from; ``legacy``
    when it was read from the old image kind."""

    def __init__(self, data: dict, root: str, legacy: bool = False):
        validate_procedural(data)
        self.data, self.root, self.legacy = data, root, legacy

    @property
    def seeds(self) -> dict:
        return self.data["seeds"]

    @property
    def splits(self) -> list[str]:
        return sorted(self.data["splits"])

    def families(self, split: str) -> list[dict]:
        """``[{id, params}]`` of the split, in build order."""
        if split not in self.data["splits"]:
            raise FewtaskError(f"split {split!r} is not in {self.root}; it has {', '.join(self.splits)}")
        return self.data["splits"][split]["families"]

    def pool(self, split: str) -> list[dict]:
        """The parameter records the split's families share (empty when it has none)."""
        self.families(split)
        return self.data["splits"][split].get("pool", [])

    def _rebuild(self) -> str:
        return f"rebuild it with `fewtask-data build {self.builder} --out DIR`"

    def param(self, name: str) -> Any:
        """One build setting; a missing one is a one-line error."""
        if name not in self.params:
            raise FewtaskError(f"{self.root}: the build settings lack {name!r}; {self._rebuild()}")
        return self.params[name]

    def values(self, split: str, name: str) -> list:
        """Each family's parameter ``name``, in build order."""
        missing = [f["id"] for f in self.families(split) if name not in f["params"]]
        if missing:
            raise FewtaskError(f"{self.root}: family {missing[0]!r} has no parameter {name!r}; {self._rebuild()}")
        return [f["params"][name] for f in self.families(split)]


def load_any(source: str | Path) -> Manifest | ProceduralManifest:
    """The manifest at ``source``, validated: procedural definitions (either kind) or an image dataset."""
    root, data = read_document(source)
    if not is_procedural(data):
        return Manifest(data, root)
    if data.get("format") == PROCEDURAL_FORMAT:
        return ProceduralManifest(data, root)
    return ProceduralManifest(from_legacy(data, root), root, legacy=True)


def load_procedural(source: str | Path, builder: str, version: str) -> ProceduralManifest:
    """The families ``builder`` (at ``version``) wrote to ``source``; anything else is a one-line error."""
    m = load_any(source)
    rebuild = f"`fewtask-data build {builder} --out DIR`"
    if not isinstance(m, ProceduralManifest) or m.builder != builder:
        raise FewtaskError(f"{source} holds {m.builder} families, not {builder}; build them with {rebuild}")
    if m.version != version:
        raise FewtaskError(f"{source} was built by {builder} version {m.version}; this fewtask reads version {version}; rebuild it with {rebuild}")
    return m


# ---------------------------------------------------------------- `fewtask-data inspect`


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _span(values: Any) -> str:
    return f"{min(values):.4g}..{max(values):.4g}"


def ranges(params: list[dict]) -> str:
    """Each family parameter's range over ``params``: 'phase 0.01..3.1'; a list of numbers per component."""
    parts = []
    for key in sorted({k for p in params for k in p}):
        values = [p.get(key) for p in params]
        if all(_is_number(v) for v in values):
            parts.append(f"{key} {_span(values)}")
        elif all(isinstance(v, list) and v and all(map(_is_number, v)) for v in values) and len({len(v) for v in values}) == 1:
            parts.append(f"{key} [{', '.join(_span(column) for column in zip(*values))}]")
        else:
            parts.append(f"{key}: {len({json.dumps(v, sort_keys=True) for v in values})} distinct")
    return "; ".join(parts)


def procedural_summary(m: ProceduralManifest) -> str:
    """Readable overview: builder, settings, seeds, and per split its families' parameters."""
    lines = [
        f"dataset   {m.dataset} (procedural)  builder {m.builder} {m.version}  format {m.data['format']} v{m.data['format_version']}",
        f"about     {m.data['description']}",
        f"build     {m.build_id}",
        f"params    {json.dumps(m.params, sort_keys=True)}",
        f"seeds     {json.dumps(m.seeds, sort_keys=True)}",
        f"{'split':<12}{'families':>9}{'pool':>7}  family parameters (min..max)",
    ]
    for split in m.splits:
        fams = m.families(split)
        lines.append(f"{split:<12}{len(fams):>9}{len(m.pool(split)):>7}  {ranges([f['params'] for f in fams])}")
    for split in m.splits:
        shown = [json.dumps(f["params"], sort_keys=True) for f in m.families(split)[:SHOWN]]
        lines.append(f"{split:<12}family params: {', '.join(shown)}{' ...' if len(m.families(split)) > SHOWN else ''}")
    if m.legacy:
        lines.append("note      written in the old format (an image manifest with count-0 classes); it reads the same, "
                     "a build into a new folder writes the procedural kind")  # fmt: skip
    return "\n".join(lines)
