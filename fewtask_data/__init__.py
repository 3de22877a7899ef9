"""fewtask_data: few-task few-shot families as sharded webdataset archives.

The public API, by layer (imports only point down: each layer uses the ones below it):

    cli/        the fewtask-data commands
    build/      build_omniglot_families, build_imagenet_families, build_unsupervised_families,
                build_dataset (the generic resumable core), BuildOptions, BuildReport
    families/   family definitions (alphabets, the WordNet hierarchy, unsupervised pools),
                load_definitions / list_definitions (shipped WordNet family definitions)
    sources/    readers (Omniglot, glyphs, ImageNet, image folders, WordNet, sinusoids), SourceClass
    stream      FamilyStream, FlatStream, family_loader, batches, first_episodes
    sampling/   EpisodeSampler, FamilyBuffer, ClassEpisodeSampler, UmtraSampler, register_sampler
    augment/    AugmentSpace, named_space, sample_family_augment, family_transform
    formats/    Manifest, load_manifest, save_manifest, ProceduralManifest, load_procedural,
                ShardReader, read_shard, write_shard, encode_image, decode_image,
                EpisodeStore, write_episodes, verify
    episode     EpisodeShape, FamilyEpisode, FamilyBatch, collate (the contract with trainer/)
    io, errors  write_json, temp_path, ...; FewtaskError

Names load on first use (PEP 562), so ``import fewtask_data`` (and the CLI) starts
without torch, webdataset or albumentations; those load with the names that need them.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "fewtask_data.errors": ["FewtaskError"],
    "fewtask_data.episode": ["EpisodeShape", "FamilyBatch", "FamilyEpisode", "collate"],
    "fewtask_data.formats.manifest": ["Manifest", "load_manifest", "save_manifest", "validate_manifest"],
    "fewtask_data.formats.procedural": ["ProceduralManifest", "load_procedural"],
    "fewtask_data.formats.shards": ["ShardReader", "read_shard", "write_shard", "load_index"],
    "fewtask_data.formats.image": ["encode_image", "decode_image"],
    "fewtask_data.formats.hdf5": ["EpisodeStore", "write_episodes"],
    "fewtask_data.formats.verify": ["verify"],
    "fewtask_data.augment.space": ["AugmentSpace", "named_space", "sample_family_augment"],
    "fewtask_data.augment.transforms": ["FamilyTransform", "family_transform"],
    "fewtask_data.sampling.base": ["EpisodeSampler", "FamilyBuffer", "register_sampler", "sampler_for"],
    "fewtask_data.sampling.classes": ["ClassEpisodeSampler"],
    "fewtask_data.sampling.umtra": ["UmtraSampler"],
    "fewtask_data.stream": ["FamilyStream", "FlatStream", "family_loader", "batches", "first_episodes"],
    "fewtask_data.sources": ["SourceClass"],
    "fewtask_data.families.definitions": ["list_definitions", "load_definitions"],
    "fewtask_data.builders.plan": ["BuildOptions"],
    "fewtask_data.builders.finalize": ["BuildReport"],
    "fewtask_data.builders.core": ["build_dataset"],
    "fewtask_data.builders.omniglot": ["build_omniglot_families"],
    "fewtask_data.builders.imagenet": ["build_imagenet_families"],
    "fewtask_data.builders.unsupervised": ["build_unsupervised_families"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'fewtask_data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
