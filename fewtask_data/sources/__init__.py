"""Sources: readers of image collections (Omniglot, the embedded glyphs, ImageNet folders,
any image folder or built shards), WordNet, and procedural families (sinusoids, navigation
crops, continual sines: their sampling and the loaders of their built definitions).

An image source hands its classes to the build as ``SourceClass`` objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence


@dataclass(frozen=True)
class SourceClass:
    """One class as a source sees it: id, (sample id, item for decode) pairs, free metadata."""

    id: str
    items: Sequence[tuple[str, Any]]
    meta: dict = field(default_factory=dict)
