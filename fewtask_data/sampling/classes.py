"""Class episodes: ordinary N-way K-shot tasks drawn from a family's classes."""

from __future__ import annotations

import numpy as np

from fewtask_data.episode import EpisodeShape, FamilyEpisode
from fewtask_data.errors import FewtaskError
from fewtask_data.sampling.base import FamilyBuffer, Transform, episode_from_records, register_sampler


class ClassEpisodeSampler:
    """N classes without replacement per task; K support + Q query (or V validation)
    images per class without replacement; labels 0..N-1 in the order classes were drawn;
    all supports first, class by class, then all queries. Draws come from the episode rng
    in a fixed order: class choice, image choice, then the per-image transform."""

    name = "class"

    @staticmethod
    def _need(shape: EpisodeShape) -> list[tuple[str, int]]:
        parts = [("goal", shape.shots + shape.val)]
        if shape.meta_tasks:
            parts.insert(0, ("meta", shape.shots + shape.queries))
        return parts

    def check(self, family: dict, counts: dict[str, int], shape: EpisodeShape) -> None:
        classes = family["classes"]
        if shape.ways > len(classes):
            raise FewtaskError(
                f"family {family['id']!r} has {len(classes)} classes but episodes ask for {shape.ways} ways; "
                "lower --ways or drop the family"
            )
        for part, per_class in self._need(shape):
            enough = [c for c in classes if counts[c] >= per_class]
            if len(enough) < shape.ways:
                what = "queries" if part == "meta" else "val"
                raise FewtaskError(
                    f"family {family['id']!r}: {shape.ways}-way {part} tasks need {shape.ways} classes with "
                    f"{shape.shots} shots + {per_class - shape.shots} {what} = {per_class} images, but only "
                    f"{len(enough)} of its {len(classes)} classes have that many (smallest has "
                    f"{min(counts[c] for c in classes)}); lower the shots/{what}"
                )

    def _task(
        self, buffer: FamilyBuffer, shape: EpisodeShape, extra: int, rng: np.random.Generator, transform, eligible
    ) -> tuple[np.ndarray, np.ndarray, dict]:
        per_class = shape.shots + extra
        chosen = [eligible[i] for i in rng.choice(len(eligible), shape.ways, replace=False)]
        picks = [rng.choice(len(buffer.images[c]), per_class, replace=False) for c in chosen]
        k = shape.shots
        labels = np.concatenate([np.repeat(np.arange(shape.ways), k), np.repeat(np.arange(shape.ways), extra)])
        if transform is None and all(c in buffer.arrays for c in chosen):
            gathered = [buffer.arrays[c][p] for c, p in zip(chosen, picks)]  # one fancy index per class
            x = np.concatenate([g[:k] for g in gathered] + [g[k:] for g in gathered])
        else:
            order = [(label, j) for label in range(shape.ways) for j in range(k)]
            order += [(label, j) for label in range(shape.ways) for j in range(k, per_class)]
            images = []
            for label, j in order:
                img = buffer.images[chosen[label]][picks[label][j]][1]
                images.append(transform(img, rng) if transform is not None else img)
            x = np.stack(images)
        record = {
            "classes": chosen,
            "samples": [[buffer.images[c][i][0] for i in p] for c, p in zip(chosen, picks)],
        }
        return x, labels, record

    def sample(
        self, buffer: FamilyBuffer, shape: EpisodeShape, seed: int, transform: Transform | None
    ) -> FamilyEpisode:
        rng = np.random.default_rng(seed)

        def eligible(per_class: int) -> list[str]:
            return [c for c in buffer.classes if len(buffer.images.get(c, ())) >= per_class]

        meta_ok, goal_ok = eligible(shape.shots + shape.queries), eligible(shape.shots + shape.val)
        meta = [self._task(buffer, shape, shape.queries, rng, transform, meta_ok) for _ in range(shape.meta_tasks)]
        goal = [self._task(buffer, shape, shape.val, rng, transform, goal_ok) for _ in range(shape.goal_tasks)]
        return episode_from_records(buffer, shape, self.name, seed, meta, goal)


register_sampler(ClassEpisodeSampler.name, lambda manifest: ClassEpisodeSampler())
