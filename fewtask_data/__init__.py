"""fewtask_data: few-task few-shot families as sharded webdataset archives."""

from fewtask_data.episode import EpisodeShape, FamilyBatch, FamilyEpisode, collate
from fewtask_data.errors import FewtaskError

__all__ = ["EpisodeShape", "FamilyBatch", "FamilyEpisode", "FewtaskError", "collate"]
__version__ = "0.1.0"
