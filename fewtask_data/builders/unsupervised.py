"""An unlabelled image collection -> UMTRA-style task families with hierarchical
augmentation (`fewtask-data build unsupervised-families`), in the same shards, manifest,
FamilyStream and HDF5 episode store as the labelled families (see
fewtask_data/families/unsupervised.py and fewtask_data/sampling/umtra.py).

Sources: ``--images DIR`` (any folder tree of images, zips included) or ``--shards DIR``
(a built dataset; its class ids are kept only as labels for collision reports and the
optional ``--avoid-collisions``). Unsupervised families are for *training*; evaluate on
labelled families built by the other builders (docs/unsupervised.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from fewtask_data.builders.core import build_dataset
from fewtask_data.builders.finalize import BuildReport
from fewtask_data.builders.plan import BuildOptions
from fewtask_data.errors import FewtaskError
from fewtask_data.families import unsupervised as uns
from fewtask_data.sampling.umtra import SUPPORT_MODES, UmtraSampler
from fewtask_data.sources import images as src

BUILDER = "unsupervised-families"
BUILDER_VERSION = "1"
EVALUATION_NOTE = (
    "unsupervised families are for training only: evaluate on labelled families "
    "(`fewtask-data build omniglot-families` / `build imagenet-families`, then "
    "`fewtask-data episodes DATA --split test --out test.h5` and "
    "`fewtask-train eval --checkpoint RUN --episodes test.h5`)"
)


def build_unsupervised_families(
    out: Path,
    *,
    images: Sequence[Path] | None = None,
    shards: Path | None = None,
    policy: str = "handwritten",
    families: int = 20,
    fixed_dims: tuple[int, int] | None = None,
    pool_fraction: float = 1.0,
    group_size: int = 64,
    ways: int = 5,
    avoid_collisions: bool = False,
    support: str = "original",
    image_size: int | None = None,
    color: str | None = None,
    invert: bool | None = None,
    resize: str = "squash",
    options: BuildOptions = BuildOptions(),
    progress=None,
) -> tuple[BuildReport, src.Collection, dict]:
    """The whole command as a function: (build report, listed collection, manifest params)."""
    if bool(images) == (shards is not None):
        raise FewtaskError("pass exactly one source: --images DIR (image files, any layout) or --shards DIR (a built dataset)")
    if shards is not None and (image_size is not None or color is not None or invert is not None or resize != "squash"):
        raise FewtaskError("--image-size, --color, --invert and --resize apply to --images; shard images are used as built")
    if support not in SUPPORT_MODES:
        raise FewtaskError(f"--support must be one of {', '.join(SUPPORT_MODES)}, got {support!r}")
    chosen = uns.load_policy(policy)
    if fixed_dims is not None:
        chosen = uns.validate_policy({**chosen, "fixed_dims": list(fixed_dims)}, chosen["name"])
    look = chosen["image"]
    decoder = src.CollectionDecoder(
        image_size or look["size"], color or look["color"], look["invert"] if invert is None else invert, resize
    )
    collection = src.list_images(images) if images else src.list_shards(shards)
    plan = uns.plan_unsupervised(
        collection.images,
        policy=chosen,
        families=families,
        pool_fraction=pool_fraction,
        group_size=group_size,
        ways=ways,
        seed=options.seed,
        labelled=collection.labelled,
        avoid_collisions=avoid_collisions,
    )
    encoding = collection.encoding or ("png" if decoder.color == "gray" else "jpeg")
    options = BuildOptions(encoding, options.quality, options.shard_size, options.seed, options.workers, options.strict)
    params = {
        "policy": chosen,
        "episode_sampler": {"name": UmtraSampler.name, "support": support, "avoid_collisions": avoid_collisions},
        "families": families,
        "pool_fraction": pool_fraction,
        "group_size": group_size,
        "label_collisions": plan.collisions,
        "decode": {"color": decoder.color, "size": decoder.size, "invert": decoder.invert, "resize": decoder.resize}
        if collection.kind == "images"
        else "as in the source shards",
        "evaluation": EVALUATION_NOTE,
    }
    source = {
        "fingerprint": collection.fingerprint,
        "kind": collection.kind,
        "images": len(collection.images),
        "skipped_files": len(collection.skipped),
        "skipped_examples": collection.skipped[:20],
    }
    name = Path(images[0] if images else shards).resolve().name
    report = build_dataset(
        out,
        dataset=f"unsupervised-{src.safe_id(name)}",
        builder=BUILDER,
        builder_version=BUILDER_VERSION,
        source=source,
        classes=plan.classes,
        decode=decoder,
        splits={"train": plan.families},
        options=options,
        params=params,
        seeds={"groups": options.seed, "families": options.seed},
        augment_space=chosen["space"],
        progress=progress,
    )
    return report, collection, params
