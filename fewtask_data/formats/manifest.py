"""The versioned manifest: splits -> families -> classes, build parameters, seeds, checksums.

``schema/manifest.schema.json`` is the single description of the format; this module
checks documents against it (a small JSON-Schema subset, so no extra dependency) and
then checks what a schema cannot say: family classes exist, family ids are unique,
no class sits in two splits, shard counts add up. Procedural families (tasks are
parameters, nothing stored) have their own kind, ``formats/procedural.py``.
"""

from __future__ import annotations

import copy
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from fewtask_data.errors import FewtaskError
from fewtask_data.io import is_url, join, read_bytes, write_json

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
PROCEDURAL_FORMAT = "fewtask-procedural"  # the other manifest kind (formats/procedural.py), refused here with a hint
SCHEMA_PATH = Path(__file__).parents[1] / "schema" / "manifest.schema.json"
ID_PATTERN = re.compile(r"^[^./\\\s]+$")


# ---------------------------------------------------------------- locations


def resolve(source: str | Path) -> tuple[str, str]:
    """(root, manifest location) for a dataset folder, a manifest.json path, or a URL prefix."""
    s = str(source)
    if is_url(s):
        if s.endswith(".json"):
            return s.rsplit("/", 1)[0], s
        return s.rstrip("/"), join(s, MANIFEST_NAME)
    p = Path(s)
    if p.is_dir():
        return str(p), str(p / MANIFEST_NAME)
    if p.suffix == ".json":
        return str(p.parent), str(p)
    raise FewtaskError(f"{s} is neither a dataset folder nor a manifest .json file; pass the build output folder")


# ---------------------------------------------------------------- schema checks

_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


@lru_cache(maxsize=1)
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def check_schema(value: Any, node: dict, where: str, root: dict) -> None:
    """Raise FewtaskError naming the first field of ``value`` that breaks ``node``."""
    if "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[1]]
    if "enum" in node and value not in node["enum"]:
        raise FewtaskError(f"manifest field {where} is {value!r}, expected one of {node['enum']}")
    if "type" in node:
        names = node["type"] if isinstance(node["type"], list) else [node["type"]]
        if not any(_is_type(value, n) for n in names):
            raise FewtaskError(f"manifest field {where} must be {' or '.join(names)}, got {type(value).__name__}")
    if isinstance(value, str):
        if len(value) < node.get("minLength", 0):
            raise FewtaskError(f"manifest field {where} must not be empty")
        if "pattern" in node and not re.search(node["pattern"], value):
            raise FewtaskError(f"manifest field {where} = {value!r} does not match {node['pattern']}")
    if _is_type(value, "number"):
        if "minimum" in node and value < node["minimum"]:
            raise FewtaskError(f"manifest field {where} = {value} is below {node['minimum']}")
        if "maximum" in node and value > node["maximum"]:
            raise FewtaskError(f"manifest field {where} = {value} is above {node['maximum']}")
    if isinstance(value, list):
        if len(value) < node.get("minItems", 0) or len(value) > node.get("maxItems", len(value)):
            raise FewtaskError(f"manifest field {where} has {len(value)} items, outside the allowed range")
        for i, item in enumerate(value):
            if "items" in node:
                check_schema(item, node["items"], f"{where}[{i}]", root)
    if isinstance(value, dict):
        for key in node.get("required", []):
            if key not in value:
                raise FewtaskError(f"manifest field {where}.{key} is missing")
        if len(value) < node.get("minProperties", 0):
            raise FewtaskError(f"manifest field {where} must not be empty")
        props = node.get("properties", {})
        extra = node.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                check_schema(item, props[key], f"{where}.{key}", root)
            elif extra is False:
                raise FewtaskError(f"manifest field {where}.{key} is not part of format version {FORMAT_VERSION}")
            elif isinstance(extra, dict):
                check_schema(item, extra, f"{where}.{key}", root)


def check_id(value: str, what: str) -> None:
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise FewtaskError(f"{what} {value!r} is not a valid id; ids must be non-empty without '.', '/', '\\' or spaces")


def validate_manifest(data: dict) -> None:
    """Schema check, then the cross-field rules (see module doc)."""
    if not isinstance(data, dict):
        raise FewtaskError("manifest must be a JSON object")
    if data.get("format") == PROCEDURAL_FORMAT:
        raise FewtaskError("this manifest holds procedural family definitions (tasks are parameters; no images): "
                           "read it with its family loader (e.g. load_navigation_families) or `fewtask-data inspect`")  # fmt: skip
    version = data.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise FewtaskError(f"manifest format_version {version} is newer than this fewtask ({FORMAT_VERSION}); upgrade fewtask")
    check_schema(data, schema(), "manifest", schema())
    counts: dict[str, int] = {}
    for i, c in enumerate(data["classes"]):
        if c["id"] in counts:
            raise FewtaskError(f"manifest field manifest.classes[{i}].id: class {c['id']!r} is listed twice")
        counts[c["id"]] = c["count"]
    family_split: dict[str, str] = {}
    class_split: dict[str, str] = {}
    for split, body in data["splits"].items():
        check_id(split, "split name")
        for fam in body["families"]:
            if fam["id"] in family_split:
                raise FewtaskError(f"family {fam['id']!r} appears twice (splits {family_split[fam['id']]!r} and {split!r})")
            family_split[fam["id"]] = split
            if len(set(fam["classes"])) != len(fam["classes"]):
                raise FewtaskError(f"family {fam['id']!r} lists a class twice")
            for cls in fam["classes"]:
                if cls not in counts:
                    raise FewtaskError(f"family {fam['id']!r} uses class {cls!r}, which is not in manifest.classes")
                other = class_split.setdefault(cls, split)
                if other != split:
                    raise FewtaskError(f"class {cls!r} is in splits {other!r} and {split!r}; a class may sit in one split only")
    for split, body in data["splits"].items():
        if "classes" in body:
            _check_split_record(split, body, counts, class_split)
    total = sum(s["count"] for s in data["shards"])
    if total != sum(counts.values()):
        raise FewtaskError(f"manifest shards hold {total} samples but classes count {sum(counts.values())}")


def _check_split_record(split: str, body: dict, counts: dict[str, int], class_split: dict[str, str]) -> None:
    """``splits.<name>.classes``, the split's whole class list: each class built and listed
    once, in no other split, and every class of the split's families among them.
    ``class_split`` holds each family class's split (and gains the recorded ones)."""
    recorded = body["classes"]
    if len(set(recorded)) != len(recorded):
        raise FewtaskError(f"manifest field manifest.splits.{split}.classes lists a class twice")
    for cls in recorded:
        if cls not in counts:
            raise FewtaskError(f"split {split!r} lists class {cls!r}, which is not in manifest.classes")
        other = class_split.setdefault(cls, split)
        if other != split:
            raise FewtaskError(f"class {cls!r} is in splits {other!r} and {split!r}; a class may sit in one split only")
    unlisted = sorted({c for fam in body["families"] for c in fam["classes"]} - set(recorded))
    if unlisted:
        raise FewtaskError(
            f"split {split!r} has families with classes its class list lacks: {', '.join(unlisted[:5])}; "
            "a split's classes must include its families' classes"
        )


# ---------------------------------------------------------------- the Manifest view


class BuildRecord:
    """What both manifest kinds (this one and formats/procedural.py) say about their
    build, read from the validated document ``data``."""

    data: dict

    @property
    def dataset(self) -> str:
        return self.data["dataset"]

    @property
    def build_id(self) -> str:
        return self.data["build_id"]

    @property
    def builder(self) -> str:
        """The builder's name, e.g. ``omniglot-families``."""
        return self.data["builder"]["name"]

    @property
    def version(self) -> str:
        """The builder's version."""
        return self.data["builder"]["version"]

    @property
    def params(self) -> dict:
        """The builder's free parameters."""
        return self.data["params"]


class Manifest(BuildRecord):
    """A validated manifest plus the root its shards live under. Read it through the
    accessors below; ``data`` is the raw JSON document."""

    def __init__(self, data: dict, root: str):
        validate_manifest(data)
        self.data = data
        self.root = root
        self._family = {f["id"]: (s, f) for s, b in data["splits"].items() for f in b["families"]}
        self._class = {c["id"]: c for c in data["classes"]}
        self._order = {c["id"]: i for i, c in enumerate(data["classes"])}

    # ---- what was built, from what (and the BuildRecord fields)
    @property
    def synthetic(self) -> bool:
        return self.data["synthetic"]

    @property
    def episode_sampler(self) -> dict | None:
        """``params.episode_sampler``: the sampler the builder asks streams to use (None: class episodes)."""
        return self.data["params"].get("episode_sampler")

    @property
    def augment_space(self) -> dict:
        return self.data.get("augment_space", {})

    # ---- images and files
    @property
    def image_shape(self) -> tuple[int, ...]:
        """[H, W] (grayscale) or [H, W, 3] (RGB)."""
        return tuple(self.data["image"]["shape"])

    @property
    def image_encoding(self) -> str:
        return self.data["image"]["encoding"]

    @property
    def shards(self) -> list[dict]:
        """[{name, sha256, bytes, count}] in order."""
        return self.data["shards"]

    @property
    def index_sha256(self) -> str:
        return self.data["index"]["sha256"]

    def location(self, name: str) -> str:
        return join(self.root, name)

    # ---- splits, families, classes
    @property
    def splits(self) -> list[str]:
        return sorted(self.data["splits"])

    def families(self, split: str) -> list[dict]:
        if split not in self.data["splits"]:
            raise FewtaskError(f"split {split!r} is not in the manifest; it has {', '.join(self.splits)}")
        return self.data["splits"][split]["families"]

    def family(self, family_id: str) -> dict:
        if family_id not in self._family:
            raise FewtaskError(f"family {family_id!r} is not in the manifest")
        return self._family[family_id][1]

    def split_of(self, family_id: str) -> str:
        self.family(family_id)
        return self._family[family_id][0]

    @property
    def classes(self) -> list[str]:
        """Every class id, in shard order."""
        return list(self._class)

    def class_count(self, class_id: str) -> int:
        return self._class[class_id]["count"]

    def class_meta(self, class_id: str) -> dict:
        return self._class[class_id]["meta"]

    def split_classes(self, split: str) -> list[str]:
        """Every class of the split's families (the classes episodes can reach), in shard order."""
        ids = {c for f in self.families(split) for c in f["classes"]}
        return sorted(ids, key=self._order.__getitem__)

    def recorded_classes(self, split: str) -> list[str] | None:
        """The split's whole class list as the build recorded it (``splits.<name>.classes``),
        in shard order; None for a manifest written before builds recorded it."""
        self.families(split)  # a FewtaskError naming the splits when there is no such split
        recorded = self.data["splits"][split].get("classes")
        return None if recorded is None else sorted(recorded, key=self._order.__getitem__)

    def unreached_classes(self, split: str) -> list[str] | None:
        """The split's recorded classes that no family holds (so no episode can use them),
        in shard order; None when the manifest has no record of the split's classes."""
        recorded = self.recorded_classes(split)
        if recorded is None:
            return None
        reached = {c for f in self.families(split) for c in f["classes"]}
        return [c for c in recorded if c not in reached]

    @property
    def max_visit_classes(self) -> int | None:
        """``params.max_visit_classes``: a stream's visit to a larger family loads this many
        of its classes, drawn per visit (None: every visit loads the whole family)."""
        return self.data["params"].get("max_visit_classes")

    def pooled(self) -> "Manifest":
        """The same shards with each split's families merged into one family ``all-<split>``,
        so tasks are drawn uniformly from every class of the split (the standard Omniglot
        benchmark task distribution). Augmentation specs are dropped."""
        data = copy.deepcopy(self.data)
        for split, body in data["splits"].items():
            body["families"] = [{"id": f"all-{split}", "classes": self.split_classes(split), "meta": {"pooled": True}}]
        return Manifest(data, self.root)


def read_document(source: str | Path) -> tuple[str, Any]:
    """(root, the parsed JSON) of a manifest of either kind, unvalidated, from a dataset
    folder, a manifest .json path, or a URL prefix."""
    root, location = resolve(source)
    if not is_url(location) and not Path(location).exists():
        raise FewtaskError(f"no manifest at {location}; the build is missing or did not finish (rerun it)")
    try:
        return root, json.loads(read_bytes(location))
    except json.JSONDecodeError as err:
        raise FewtaskError(f"{location} is not valid JSON ({err})") from None


def load_manifest(source: str | Path | Manifest) -> Manifest:
    """Load and validate from a dataset folder, a manifest .json path, or a URL prefix."""
    if isinstance(source, Manifest):
        return source
    root, data = read_document(source)
    return Manifest(data, root)


def save_manifest(data: dict, path: Path) -> None:
    """Validate, then write with sorted keys atomically."""
    validate_manifest(data)
    write_json(Path(path), data)


# ---------------------------------------------------------------- `fewtask-data inspect`


NO_RECORD = "no record"


def summary(manifest: Manifest, name_unreached: bool = False) -> str:
    """Readable overview: dataset, image format, splits with family/class/image counts,
    how many of each split's classes no family reaches, shard sizes. With
    ``name_unreached`` the unreached classes are listed per split (with their lemma when
    the class meta has one)."""
    d = manifest.data
    quality = d["image"]["quality"]
    lines = [
        f"dataset   {manifest.dataset}{' (SYNTHETIC)' if manifest.synthetic else ''}  "
        f"builder {manifest.builder} {d['builder']['version']}  format v{d['format_version']}",
        f"source    {d['source']['fingerprint']}",
        f"images    {manifest.image_encoding} {'x'.join(map(str, manifest.image_shape))}" + (f" quality {quality}" if quality else ""),
        f"shards    {len(manifest.shards)} ({sum(s['bytes'] for s in manifest.shards) / 1e6:.1f} MB), "
        f"{sum(s['count'] for s in manifest.shards)} images, {d['report']['failed']} failed at build",
        f"seeds     {json.dumps(d['seeds'], sort_keys=True)}",
    ]
    if manifest.max_visit_classes:
        lines.append(f"visits    a family of more than {manifest.max_visit_classes} classes loads {manifest.max_visit_classes} of them, drawn per visit")
    lines.append(f"{'split':<12}{'families':>9}{'classes':>9}{'images':>9}{'unreached':>11}  classes/family (min-max)  augmented")
    named = []
    for split in manifest.splits:
        fams = manifest.families(split)
        unreached = manifest.unreached_classes(split)
        classes = manifest.recorded_classes(split) or manifest.split_classes(split)
        sizes = [len(f["classes"]) for f in fams] or [0]
        augmented = sum("augment" in f for f in fams)
        images = sum(manifest.class_count(c) for c in classes)
        lines.append(
            f"{split:<12}{len(fams):>9}{len(classes):>9}{images:>9}{NO_RECORD if unreached is None else len(unreached):>11}"
            f"  {min(sizes)}-{max(sizes):<22}{augmented:>9}"
        )
        if name_unreached and unreached:
            named.append(f"unreached in {split} ({len(unreached)} of {len(classes)} classes, in no family):")
            named += [f"  {c}  {manifest.class_meta(c).get('lemma', '')}".rstrip() for c in unreached]
    if any(manifest.unreached_classes(s) is None for s in manifest.splits):
        lines.append(
            "note      this manifest does not record each split's whole class list (built before fewtask recorded it), "
            "so classes in no family cannot be counted; rebuild to record them"
        )
    elif name_unreached and not named:
        lines.append("every class of every split is in a family")
    return "\n".join(lines + named)
