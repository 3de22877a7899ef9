"""Streaming from shards: family episodes for meta-training, flat batches for pretraining.

``FamilyStream`` is a webdataset pipeline whose unit of work is a family visit:

    visits (families shuffled per epoch with the seed)
      -> wds.split_by_node -> wds.split_by_worker
      -> load the family: read only the shards holding its classes (checksums checked)
      -> FamilyBuffer (one family in memory per worker)
      -> episodes_per_visit FamilyEpisodes from the pluggable sampler
      -> (optional) a shuffle buffer of ``mix`` episodes, so consecutive episodes (and
         so one DataLoader batch) come from several families; memory grows by ``mix``
         episodes, not by family buffers

Episode seeds come from (seed, epoch, visit position, episode number), never from the
worker, so the set of episodes does not depend on how many workers or nodes share it.

``FlatStream`` reads the shards of a split's classes (shard order shuffled per epoch
with the seed, split by node and worker), shuffles samples in a buffer and yields
labelled (x, y) batches for the pretraining baseline.
"""

from __future__ import annotations

import multiprocessing
import pickle
import random
from itertools import count, islice
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset

from fewtask_data.episode import EpisodeShape, FamilyBatch, FamilyEpisode, collate
from fewtask_data.errors import FewtaskError
from fewtask_data.manifest import Manifest, load_manifest, read_bytes
from fewtask_data.sampling import ClassEpisodeSampler, EpisodeSampler, FamilyBuffer, Transform, sampler_for, to_tensor
from fewtask_data.shards import (
    INDEX_NAME,
    class_locations,
    decode_image,
    iter_class_ranges,
    iter_shard_bytes,
    load_index,
    sha256_bytes,
)

TransformFactory = Callable[[dict, dict], Transform]

__all__ = [
    "ClassEpisodeSampler",
    "EpisodeSampler",
    "FamilyBuffer",
    "FamilyStream",
    "FlatStream",
    "family_loader",
    "episode_seed",
]


def default_transform_factory(space: dict, family_augment: dict) -> Transform:
    from fewtask_data import augment  # owned by the augmentation module; imported only when used

    return augment.family_transform(space, family_augment)


def episode_seed(seed: int, epoch: int, position: int, episode: int) -> int:
    """A 63-bit seed for one episode, independent of workers and nodes."""
    state = np.random.SeedSequence([seed, epoch, position, episode]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def worker_rng(seed: int) -> random.Random:
    """A generator fixed by (seed, node rank, worker id), for shuffle buffers."""
    rank, _, worker, _ = wds.utils.pytorch_worker_info()
    return random.Random(f"{seed}-{rank}-{worker}")


class ShardReader:
    """Reads a dataset's index once and loads families' images from just their shards."""

    def __init__(self, manifest: Manifest, verify: bool = True):
        self.manifest = manifest
        self.verify = verify
        if verify:
            raw = read_bytes(manifest.location(INDEX_NAME))
            if sha256_bytes(raw) != manifest.data["index"]["sha256"]:
                raise FewtaskError(f"{manifest.location(INDEX_NAME)} does not match the manifest's checksum; rebuild")
        self.index = load_index(manifest.root)
        self.locations = class_locations(self.index)

    def shards_for(self, classes: Sequence[str]) -> dict[int, list[tuple[int, int]]]:
        """shard number -> [(start, stop), ...] of the wanted classes."""
        out: dict[int, list[tuple[int, int]]] = {}
        for cls in classes:
            for shard, start, stop in self.locations.get(cls, ()):
                out.setdefault(shard, []).append((start, stop))
        return out

    def shard_data(self, shard: int) -> bytes:
        """A shard's bytes, checked against the index's sha256 (error naming the shard)."""
        entry = self.index["shards"][shard]
        location = self.manifest.location(entry["name"])
        data = read_bytes(location)
        if self.verify and sha256_bytes(data) != entry["sha256"]:
            raise FewtaskError(f"shard {location} does not match its index checksum (truncated or altered); rebuild")
        return data

    def samples(self, shard: int, ranges: list[tuple[int, int]]) -> Iterator[tuple[str, str, bytes]]:
        """(class, sample, image bytes) at the given position ranges of a shard."""
        entry = self.index["shards"][shard]
        keep = np.zeros(entry["count"], bool)
        for start, stop in ranges:
            keep[start:stop] = True
        data = self.shard_data(shard)
        for _, cls, sample, image in iter_shard_bytes(data, entry["name"], keep.__getitem__, entry["count"]):
            yield cls, sample, image

    def class_samples(self, shard: int, classes: set[str]) -> Iterator[tuple[str, str, bytes]]:
        """(class, sample, image bytes) of whole classes, parsing only their byte ranges."""
        entry = self.index["shards"][shard]
        ranges = [r for r in entry["classes"] if r[0] in classes]
        data = self.shard_data(shard)
        # A verified sha256 covers every header, so header checksums are skipped then.
        for _, cls, sample, image in iter_class_ranges(data, entry["name"], ranges, check=not self.verify):
            yield cls, sample, image

    def load_family(self, family: dict, split: str) -> FamilyBuffer:
        buffer = FamilyBuffer(family, split, {c: [] for c in family["classes"]})
        wanted = set(family["classes"])
        for shard in sorted(self.shards_for(family["classes"])):
            for cls, sample, data in self.class_samples(shard, wanted):
                buffer.images[cls].append((sample, decode_image(data)))
        return buffer.stack()


class FamilyStream(IterableDataset):
    """FamilyEpisodes from a split's families; see the module doc. Iterate it directly or
    through ``family_loader`` (a DataLoader that collates to FamilyBatch)."""

    def __init__(
        self,
        source: str | Manifest,
        split: str,
        shape: EpisodeShape,
        *,
        seed: int = 0,
        episodes_per_visit: int = 8,
        epochs: int | None = None,
        families: Sequence[str] | None = None,
        sampler: EpisodeSampler | None = None,
        transform_factory: TransformFactory | None = None,
        verify: bool = True,
        mix: int = 0,
    ):
        super().__init__()
        if episodes_per_visit < 1 or mix < 0:
            raise FewtaskError(f"episodes_per_visit must be >= 1 and mix >= 0, got {episodes_per_visit} and {mix}")
        self.manifest = load_manifest(source)
        self.split, self.shape, self.seed = split, shape, seed
        self.episodes_per_visit, self.epochs, self.mix = episodes_per_visit, epochs, mix
        self.sampler = sampler or sampler_for(self.manifest)
        self.transform_factory = transform_factory or default_transform_factory
        self.reader = ShardReader(self.manifest, verify)
        fams = self.manifest.families(split)
        if families is not None:
            wanted = set(families)
            for f in wanted:
                if self.manifest.split_of(f) != split:
                    raise FewtaskError(f"family {f!r} belongs to split {self.manifest.split_of(f)!r}, not {split!r}")
            fams = [f for f in fams if f["id"] in wanted]
        if not fams:
            raise FewtaskError(f"split {split!r} has no families to stream")
        counts = {c: self.manifest.class_count(c) for f in fams for c in f["classes"]}
        for fam in fams:
            self.sampler.check(fam, counts, shape)
        self.families = fams
        self._transforms: dict[str, Transform | None] = {}
        self._last: FamilyBuffer | None = None
        for fam in fams:  # a bad augment spec fails here, not later inside a DataLoader worker
            self.transform_for(fam)

    def transform_for(self, family: dict) -> Transform | None:
        if "augment" not in family:
            return None
        if family["id"] not in self._transforms:
            space = self.manifest.data.get("augment_space", {})
            self._transforms[family["id"]] = self.transform_factory(space, family["augment"])
        return self._transforms[family["id"]]

    def buffer_for(self, family: dict) -> FamilyBuffer:
        """The family's images; keeps only the last family (one buffer per worker)."""
        if self._last is None or self._last.family["id"] != family["id"]:
            if self._last is not None and self._last.family["classes"] == family["classes"]:
                # Same images, other augmentation (augmented or unsupervised families): no reload.
                self._last = FamilyBuffer(family, self.split, self._last.images, self._last.arrays)
                return self._last
            self._last = None  # free the old buffer before loading the next
            self._last = self.reader.load_family(family, self.split)
        return self._last

    # ---- pipeline stages (plain functions over iterators, webdataset style)

    def visits(self) -> Iterator[tuple[int, int, dict]]:
        """(epoch, position, family) in stream order, before any node/worker split."""
        epochs = count() if self.epochs is None else range(self.epochs)
        for epoch in epochs:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.families))
            for position, i in enumerate(order):
                yield epoch, position, self.families[i]

    def visit(self, epoch: int, position: int, family: dict) -> Iterator[FamilyEpisode]:
        """The episodes of one family visit (a pure function of the visit and the seed)."""
        buffer = self.buffer_for(family)
        transform = self.transform_for(family)
        for e in range(self.episodes_per_visit):
            yield self.sampler.sample(buffer, self.shape, episode_seed(self.seed, epoch, position, e), transform)

    def _episodes(self, visits: Iterator[tuple[int, int, dict]]) -> Iterator[FamilyEpisode]:
        for v in visits:
            yield from self.visit(*v)

    def pipeline(self) -> wds.DataPipeline:
        stages = [self.visits, wds.split_by_node, wds.split_by_worker, self._episodes]
        if self.mix:
            stages.append(wds.shuffle(self.mix, initial=self.mix, rng=worker_rng(self.seed)))
        return wds.DataPipeline(*stages)

    def __iter__(self) -> Iterator[FamilyEpisode]:
        return iter(self.pipeline())

    def take(self, n: int) -> list[FamilyEpisode]:
        return list(islice(iter(self), n))

    def replay(self, identity: dict) -> FamilyEpisode:
        """Rebuild an episode from its identity (family, shape, seed); checks classes and samples match."""
        family = self.manifest.family(identity["family"])
        shape = EpisodeShape(**identity["shape"])
        episode = self.sampler.sample(
            self.reader.load_family(family, identity["split"]), shape, identity["seed"], self.transform_for(family)
        )
        if episode.identity["tasks"] != identity["tasks"]:
            raise FewtaskError(f"replay of a {identity['family']!r} episode drew other samples; the data has changed")
        return episode


_pool_stream: "FamilyStream | None" = None


def _init_pool(stream: "FamilyStream") -> None:
    global _pool_stream
    _pool_stream = stream


def _pool_visit(visit: tuple[int, int, dict]) -> bytes:
    # Plain pickle copies the tensors into the message; torch's multiprocessing
    # reductions would hold one shared-memory file descriptor per tensor instead.
    return pickle.dumps(list(_pool_stream.visit(*visit)))


def first_episodes(stream: "FamilyStream", count: int, workers: int = 0) -> Iterator[FamilyEpisode]:
    """The stream's first ``count`` episodes in stream order (no node/worker split, no mix),
    computed by ``workers`` processes: the worker count changes the speed, never the episodes."""
    needed = -(-count // stream.episodes_per_visit)
    visits = islice(stream.visits(), needed)
    if workers <= 1:
        episodes = (e for v in visits for e in stream.visit(*v))
        yield from islice(episodes, count)
        return
    with multiprocessing.get_context("fork").Pool(workers, initializer=_init_pool, initargs=(stream,)) as pool:
        episodes = (e for blob in pool.imap(_pool_visit, visits) for e in pickle.loads(blob))
        yield from islice(episodes, count)


def family_loader(stream: FamilyStream, batch_size: int, num_workers: int = 0, **kwargs) -> DataLoader:
    """A DataLoader yielding FamilyBatch (each worker streams its own families)."""
    return DataLoader(stream, batch_size=batch_size, num_workers=num_workers, collate_fn=collate, **kwargs)


def batches(stream: FamilyStream, batch_size: int) -> Iterator[FamilyBatch]:
    """FamilyBatches in this process, without a DataLoader."""
    it = iter(stream)
    while chunk := list(islice(it, batch_size)):
        yield collate(chunk)


class FlatStream(IterableDataset):
    """Labelled (x [B, C, H, W] float, y [B] int64) batches over a split's classes; label i is
    ``self.classes[i]``. Use with ``DataLoader(flat, batch_size=None, num_workers=...)``."""

    def __init__(
        self,
        source: str | Manifest,
        split: str,
        batch_size: int,
        *,
        seed: int = 0,
        shuffle_buffer: int = 5000,
        epochs: int | None = None,
        verify: bool = True,
    ):
        super().__init__()
        self.manifest = load_manifest(source)
        self.reader = ShardReader(self.manifest, verify)
        self.classes = self.manifest.split_classes(split)
        self.label = {c: i for i, c in enumerate(self.classes)}
        self.shards = sorted(self.reader.shards_for(self.classes))
        self.wanted = set(self.classes)
        self.batch_size, self.seed = batch_size, seed
        self.shuffle_buffer, self.epochs = shuffle_buffer, epochs
        self.image_ndim = len(self.manifest.data["image"]["shape"])

    def _shards(self) -> Iterator[int]:
        epochs = count() if self.epochs is None else range(self.epochs)
        for epoch in epochs:
            for i in np.random.default_rng([self.seed, epoch]).permutation(len(self.shards)):
                yield self.shards[i]

    def _samples(self, shards: Iterator[int]) -> Iterator[tuple[np.ndarray, int]]:
        for shard in shards:
            for cls, _, data in self.reader.class_samples(shard, self.wanted):
                yield decode_image(data), self.label[cls]

    def _collate(self, samples: list[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        x = to_tensor(np.stack([s[0] for s in samples]), self.image_ndim)
        return x, torch.tensor([s[1] for s in samples], dtype=torch.int64)

    def pipeline(self) -> wds.DataPipeline:
        return wds.DataPipeline(
            self._shards,
            wds.split_by_node,
            wds.split_by_worker,
            self._samples,
            wds.shuffle(self.shuffle_buffer, initial=min(self.shuffle_buffer, 1000), rng=worker_rng(self.seed)),
            wds.batched(self.batch_size, collation_fn=self._collate, partial=True),
        )

    def __iter__(self):
        return iter(self.pipeline())
