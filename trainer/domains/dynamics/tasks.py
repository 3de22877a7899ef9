"""Task vectors of a dynamics family file as tensors: ``[..., P]`` with the parameters in
the file's order (`TaskSpace.names`), drawn with a torch generator so training and
evaluation are reproducible from their seeds."""

from __future__ import annotations

import torch

from fewtask_data.sources.dynamics import TaskSpace


def tasks_in(space: TaskSpace, bands: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` tasks per band ``bands`` [*lead, 2]: [*lead, count, P] (float32); the banded
    parameter uniform in the band, every other one uniform in its range."""
    lead = bands.shape[:-1]
    u = torch.rand(*lead, count, len(space.names), generator=generator, dtype=torch.float64)
    lo = torch.tensor([r[0] for r in space.ranges.values()], dtype=torch.float64)
    hi = torch.tensor([r[1] for r in space.ranges.values()], dtype=torch.float64)
    lo, hi = lo.expand(*lead, count, -1).clone(), hi.expand(*lead, count, -1).clone()
    b = space.band_index
    lo[..., b], hi[..., b] = bands[..., None, 0], bands[..., None, 1]
    return (lo + u * (hi - lo)).float()


def as_vectors(space: TaskSpace, tasks: list[dict]) -> torch.Tensor:
    """Task dicts (checked against their ranges) -> [len(tasks), P]."""
    return torch.tensor([space.vector(space.check_task(t)) for t in tasks], dtype=torch.float32)


def bands_of(families: list[dict]) -> torch.Tensor:
    return torch.tensor([f["band"] for f in families], dtype=torch.float64)
