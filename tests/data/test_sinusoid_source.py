"""Sinusoid families: shapes, the family/task structure, determinism, the oracle view."""

from __future__ import annotations

import math

import pytest
import torch

from fewtask_data import EpisodeShape, FewtaskError
from fewtask_data.sources import sinusoid

SHAPE = EpisodeShape(ways=1, shots=5, queries=5, val=7, meta_tasks=4, goal_tasks=2)


def test_shapes_and_views():
    b = sinusoid.sample_batch(torch.Generator().manual_seed(0), 3, SHAPE)
    assert b.meta_x.shape == (3, 4, 10, 1) and b.goal_x.shape == (3, 2, 12, 1)
    assert b.meta_support()[0].shape == (3, 4, 5, 1) and b.goal_val()[1].shape == (3, 2, 7, 1)
    assert b.meta_info.shape == (3, 4, 2) and b.goal_info.shape == (3, 2, 2)
    assert len(b.families) == 3


def test_phase_shared_in_a_family_amplitude_per_task_and_targets_exact():
    b = sinusoid.sample_batch(torch.Generator().manual_seed(1), 4, SHAPE, dtype=torch.float64)
    info = torch.cat([b.meta_info, b.goal_info], 1)  # [B, L+C, (amp, phase)]
    assert torch.all(info[:, :, 1] == info[:, :1, 1])  # one phase per family
    assert not torch.all(info[:, :, 0] == info[:, :1, 0])  # amplitudes vary
    assert info[..., 0].min() >= 0.1 and info[..., 0].max() <= 5.0
    assert info[..., 1].min() >= 0 and info[..., 1].max() <= math.pi
    amp, phase = b.meta_info[..., 0, None, None], b.meta_info[..., 1, None, None]
    torch.testing.assert_close(b.meta_y, amp * torch.sin(b.meta_x - phase))
    assert b.meta_x.abs().max() <= 5


def test_plain_maml_tasks_have_their_own_phase():
    spec = sinusoid.SinusoidSpec(per_task_phase=True)
    b = sinusoid.sample_batch(torch.Generator().manual_seed(2), 2, SHAPE, spec)
    assert not torch.all(b.meta_info[:, :, 1] == b.meta_info[:, :1, 1])


def test_batches_depend_only_on_seed_and_step():
    a = list(zip(range(4), sinusoid.batches(7, 2, SHAPE)))[3][1]
    b = next(sinusoid.batches(7, 2, SHAPE, start_step=3))
    assert torch.equal(a.meta_x, b.meta_x) and torch.equal(a.goal_y, b.goal_y)
    c = next(sinusoid.batches(8, 2, SHAPE, start_step=3))
    assert not torch.equal(a.meta_x, c.meta_x)


def test_oracle_view_appends_true_parameters():
    b = sinusoid.sample_batch(torch.Generator().manual_seed(3), 2, SHAPE)
    o = sinusoid.with_task_info(b)
    assert o.meta_x.shape == (2, 4, 10, 3)
    assert torch.equal(o.meta_x[..., 1:], b.meta_info[:, :, None, :].expand(2, 4, 10, 2))


def test_bad_requests_are_clear_errors():
    with pytest.raises(FewtaskError, match="shots"):
        EpisodeShape(ways=1, shots=0, queries=5, val=5, meta_tasks=5, goal_tasks=2)
    with pytest.raises(FewtaskError, match="ways must be 1"):
        sinusoid.sample_batch(torch.Generator(), 2, EpisodeShape(2, 5, 5, 5, 5, 2))


def test_resuming_mid_chunk_gives_the_same_batches():
    straight = [b for _, b in zip(range(sinusoid.CHUNK + 5), sinusoid.batches(1, 3, SHAPE))]
    for start in (1, sinusoid.CHUNK - 1, sinusoid.CHUNK, sinusoid.CHUNK + 2):
        b = next(sinusoid.batches(1, 3, SHAPE, start_step=start))
        assert torch.equal(b.meta_x, straight[start].meta_x) and b.families == straight[start].families
    assert not torch.equal(straight[0].meta_x, straight[1].meta_x)
