"""Streaming from shards: family episodes for meta-training, flat batches for pretraining.

``FamilyStream`` is a webdataset pipeline whose unit of work is a family visit:

    visits (families shuffled per epoch with the seed)
      -> wds.split_by_node -> wds.split_by_worker
      -> the visit's classes: all of the family's, or, for a family of more than
         ``max_visit_classes`` classes, that many drawn with the visit's seed
         (Meta-Dataset's subsampling of large nodes; recorded in the episode identity)
      -> load them: read only the shards holding those classes (checksums checked)
      -> FamilyBuffer (one family in memory per worker)
      -> episodes_per_visit FamilyEpisodes from the pluggable sampler
      -> (optional) a shuffle buffer of ``mix`` episodes, so consecutive episodes (and
         so one DataLoader batch) come from several families; memory grows by ``mix``
         episodes, not by family buffers

Episode seeds come from (seed, epoch, visit position, episode number), never from the
worker, so the set of episodes does not depend on how many workers or nodes share it;
a visit's class draw comes from (seed, epoch, visit position) in the same way.

``FamilyStream.resumable`` gives the same stream for a DataLoader that resumes training
at a step: it skips what the earlier steps used without loading those families, and can
skip families whose shards cannot be read.

``FlatStream`` reads the shards of a split's classes (shard order shuffled per epoch
with the seed, split by node and worker), shuffles samples in a buffer and yields
labelled (x, y) batches for the pretraining baseline.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import pickle
import random
import sys
from itertools import count, islice
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from fewtask_data.episode import EpisodeShape, FamilyBatch, FamilyEpisode, collate
from fewtask_data.errors import FewtaskError
from fewtask_data.formats.image import decode_image
from fewtask_data.formats.manifest import Manifest, load_manifest
from fewtask_data.formats.shards import ShardReader
from fewtask_data.sampling.base import EpisodeSampler, FamilyBuffer, Transform, sampler_for, to_tensor

TransformFactory = Callable[[dict, dict], Transform]


def default_transform_factory(space: dict, family_augment: dict) -> Transform:
    from fewtask_data.augment.transforms import family_transform  # albumentations: only for augmented families

    return family_transform(space, family_augment)


def episode_seed(seed: int, epoch: int, position: int, episode: int) -> int:
    """A 63-bit seed for one episode, independent of workers and nodes."""
    state = np.random.SeedSequence([seed, epoch, position, episode]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


VISIT_DRAW = 0x76697374  # leads the visit draws' seed sequences, keeping them apart from the episodes'


def visit_classes(family: dict, limit: int | None, seed: int, epoch: int, position: int) -> list[str]:
    """The classes one visit loads: every class of the family, or, when it has more than
    ``limit``, ``limit`` of them drawn uniformly without replacement with the visit's seed
    (kept in the family's order, so they are read shard by shard)."""
    classes = list(family["classes"])
    if not limit or len(classes) <= limit:
        return classes
    rng = np.random.default_rng([VISIT_DRAW, seed, epoch, position])
    return [classes[i] for i in sorted(rng.choice(len(classes), limit, replace=False))]


def with_visit_classes(episode: FamilyEpisode, classes: list[str] | None) -> FamilyEpisode:
    """The episode with ``visit_classes`` in its identity (unchanged for a whole-family visit)."""
    if classes is None:
        return episode
    return dataclasses.replace(episode, identity={**episode.identity, "visit_classes": list(classes)})


def worker_rng(seed: int) -> random.Random:
    """A generator fixed by (seed, node rank, worker id), for shuffle buffers."""
    rank, _, worker, _ = wds.utils.pytorch_worker_info()
    return random.Random(f"{seed}-{rank}-{worker}")


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
        max_visit_classes: int | None = None,
    ):
        super().__init__()
        if episodes_per_visit < 1 or mix < 0:
            raise FewtaskError(f"episodes_per_visit must be >= 1 and mix >= 0, got {episodes_per_visit} and {mix}")
        if max_visit_classes is not None and max_visit_classes < 0:
            raise FewtaskError(f"max_visit_classes must be >= 0 (0: whole families), got {max_visit_classes}")
        self.manifest = load_manifest(source)
        self.split, self.shape, self.seed = split, shape, seed
        self.episodes_per_visit, self.epochs, self.mix = episodes_per_visit, epochs, mix
        # None: what the manifest asks for (params.max_visit_classes; absent: whole families)
        limit = self.manifest.max_visit_classes if max_visit_classes is None else max_visit_classes
        self.max_visit_classes = limit or None
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
            self.check_family(fam, counts)
        self.families = fams
        self._transforms: dict[str, Transform | None] = {}
        self.buffer: FamilyBuffer | None = None  # the family in memory (the last one visited)
        for fam in fams:  # a bad augment spec fails here, not later inside a DataLoader worker
            self.transform_for(fam)

    def check_family(self, family: dict, counts: dict[str, int]) -> None:
        """FewtaskError unless every visit to the family can give episodes of the shape. A
        visit to a large family loads a random subset of its classes, so the subset of its
        smallest classes must pass the sampler's check (then every subset does)."""
        limit = self.max_visit_classes
        if not limit or len(family["classes"]) <= limit:
            self.sampler.check(family, counts, self.shape)
            return
        smallest = sorted(family["classes"], key=counts.__getitem__)[:limit]
        try:
            self.sampler.check({**family, "classes": smallest}, counts, self.shape)
        except FewtaskError as err:
            raise FewtaskError(
                f"a visit to family {family['id']!r} loads {limit} of its {len(family['classes'])} classes "
                f"(max_visit_classes), drawn at random, and its {limit} smallest do not allow the episode shape: "
                f"{err}; or raise max_visit_classes"
            ) from None

    def transform_for(self, family: dict) -> Transform | None:
        if "augment" not in family:
            return None
        if family["id"] not in self._transforms:
            self._transforms[family["id"]] = self.transform_factory(self.manifest.augment_space, family["augment"])
        return self._transforms[family["id"]]

    def load_family(self, family: dict, split: str) -> FamilyBuffer:
        """A family's images read from its shards, as a buffer."""
        return FamilyBuffer(family, split, self.reader.load_images(family["classes"])).stack()

    def buffer_for(self, family: dict) -> FamilyBuffer:
        """The family's images (``family["classes"]``: the visit's classes); keeps only the
        last family (one buffer per worker)."""
        if self.buffer is not None and self.buffer.family["classes"] == family["classes"]:
            if self.buffer.family["id"] != family["id"]:
                # Same images, other augmentation (augmented or unsupervised families): no reload.
                self.buffer = FamilyBuffer(family, self.split, self.buffer.images, self.buffer.arrays)
            return self.buffer
        self.buffer = None  # free the old buffer before loading the next
        self.buffer = self.load_family(family, self.split)
        return self.buffer

    # ---- pipeline stages (plain functions over iterators, webdataset style)

    def visits(self) -> Iterator[tuple[int, int, dict]]:
        """(epoch, position, family) in stream order, before any node/worker split."""
        epochs = count() if self.epochs is None else range(self.epochs)
        for epoch in epochs:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.families))
            for position, i in enumerate(order):
                yield epoch, position, self.families[i]

    def visit(self, epoch: int, position: int, family: dict) -> Iterator[FamilyEpisode]:
        """The episodes of one family visit (a pure function of the visit and the seed). A
        visit that loads a subset of the family's classes names them in each episode's
        identity (``visit_classes``), which is what replay loads."""
        classes = visit_classes(family, self.max_visit_classes, self.seed, epoch, position)
        subset = len(classes) < len(family["classes"])
        buffer = self.buffer_for({**family, "classes": classes} if subset else family)
        transform = self.transform_for(family)
        for e in range(self.episodes_per_visit):
            episode = self.sampler.sample(buffer, self.shape, episode_seed(self.seed, epoch, position, e), transform)
            yield with_visit_classes(episode, classes if subset else None)

    def episodes(self, visits: Iterator[tuple[int, int, dict]], skip_unreadable: bool = False) -> Iterator[FamilyEpisode]:
        """The episodes of these visits. With ``skip_unreadable`` a family whose shard cannot
        be read (missing, truncated, altered) is skipped with a warning naming the shard."""
        failed_in_row = 0
        for visit in visits:
            if not skip_unreadable:
                yield from self.visit(*visit)
                continue
            try:
                episodes = list(self.visit(*visit))
            except FewtaskError as err:
                failed_in_row += 1
                if failed_in_row > len(self.families):
                    raise FewtaskError(f"no family of the split can be read any more (last: {err})") from None
                print(f"warning: skipping family {visit[2]['id']!r}: {err}", file=sys.stderr, flush=True)
                continue
            failed_in_row = 0
            yield from episodes

    def pipeline(self) -> wds.DataPipeline:
        stages = [self.visits, wds.split_by_node, wds.split_by_worker, self.episodes]
        if self.mix:
            stages.append(wds.shuffle(self.mix, initial=self.mix, rng=worker_rng(self.seed)))
        return wds.DataPipeline(*stages)

    def __iter__(self) -> Iterator[FamilyEpisode]:
        return iter(self.pipeline())

    def take(self, n: int) -> list[FamilyEpisode]:
        return list(islice(iter(self), n))

    def resumable(self, batch_size: int, start_step: int = 0, skip_bad_shards: bool = False) -> "ResumedEpisodes":
        """This stream for ``DataLoader(..., batch_size=batch_size)`` in a training run that
        resumes at ``start_step``: the loader yields the batches an uninterrupted run would
        have yielded from that step on, for any number of workers (see ``ResumedEpisodes``).
        With ``skip_bad_shards`` a family whose shard cannot be read is skipped with a warning."""
        return ResumedEpisodes(self, batch_size, start_step, skip_bad_shards)

    def replay(self, identity: dict) -> FamilyEpisode:
        """Rebuild an episode from its identity (family, the visit's classes when it loaded a
        subset, shape, seed); checks classes and samples match."""
        family = self.manifest.family(identity["family"])
        shape = EpisodeShape(**identity["shape"])
        loaded = {**family, "classes": identity["visit_classes"]} if "visit_classes" in identity else family
        unknown = sorted(set(loaded["classes"]) - set(family["classes"]))
        if unknown:
            raise FewtaskError(f"replay of a {identity['family']!r} episode names classes the family lacks ({', '.join(unknown[:5])}); the data has changed")
        episode = self.sampler.sample(
            self.load_family(loaded, identity["split"]), shape, identity["seed"], self.transform_for(family)
        )
        if episode.identity["tasks"] != identity["tasks"]:
            raise FewtaskError(f"replay of a {identity['family']!r} episode drew other samples; the data has changed")
        return with_visit_classes(episode, identity.get("visit_classes"))


class ResumedEpisodes(IterableDataset):
    """A FamilyStream's episodes for this rank and DataLoader worker, skipping those the
    first ``start_step`` batches already used, without loading their families.

    A DataLoader with W workers takes its i-th batch from worker i % W. Resuming at
    step s, a fresh loader's worker w must play the part of the old run's worker
    (w + s) % W (which has produced ceil((s - role) / W) batches by then), so workers
    split visits by that role rather than by their id. Visits are skipped whole; the
    rest of a half-used visit is dropped episode by episode.
    """

    def __init__(self, stream: FamilyStream, batch_size: int, start_step: int, skip_bad_shards: bool = False):
        super().__init__()
        self.stream, self.batch_size, self.start_step = stream, batch_size, start_step
        self.skip_bad_shards = skip_bad_shards

    def __iter__(self) -> Iterator[FamilyEpisode]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        role = (worker + self.start_step) % workers
        used = max(0, -(-(self.start_step - role) // workers)) * self.batch_size
        per_visit = self.stream.episodes_per_visit
        s = self.stream
        pipeline = wds.DataPipeline(
            s.visits,
            wds.split_by_node,
            lambda visits: islice(visits, role, None, workers),
            lambda visits: islice(visits, used // per_visit, None),
            lambda visits: s.episodes(visits, self.skip_bad_shards),
            lambda episodes: islice(episodes, used % per_visit, None),
        )
        return iter(pipeline)


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
        self.image_ndim = len(self.manifest.image_shape)

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
