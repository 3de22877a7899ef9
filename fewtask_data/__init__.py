"""fewtask_data: few-task few-shot families as sharded webdataset archives."""

from fewtask_data.episode import EpisodeShape, FamilyBatch, FamilyEpisode, collate
from fewtask_data.errors import FewtaskError

# The rest of the public API, imported on first use (PEP 562) so that `import fewtask_data`
# stays light: name -> module that defines it.
_LAZY = {
    "Manifest": "fewtask_data.manifest",
    "load_manifest": "fewtask_data.manifest",
    "FamilyStream": "fewtask_data.stream",
    "FlatStream": "fewtask_data.stream",
    "EpisodeStore": "fewtask_data.hdf5",
    "write_episodes": "fewtask_data.hdf5",
    "BuildOptions": "fewtask_data.build",
    "build_omniglot_families": "fewtask_data.omniglot_build",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'fewtask_data' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)


__all__ = ["EpisodeShape", "FamilyBatch", "FamilyEpisode", "FewtaskError", "collate", *_LAZY]
__version__ = "0.1.0"
