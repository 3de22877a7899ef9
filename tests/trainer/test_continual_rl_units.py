"""Continual RL pieces without MuJoCo: Continual World metrics against a hand-computed
example, and the replay strategies (MTR's cascade proportions, reservoir, half/half)."""

from __future__ import annotations

import torch

from trainer.domains.dynamics.replay import Cascade, Fifo, Half, Reservoir
from trainer.evaluation import cw


def test_cw_metrics_equal_a_hand_computed_example():
    # 2 tasks; random returns (0, 10), reference returns (10, 20)
    returns = torch.tensor([[0.0, 10.0], [10.0, 15.0], [5.0, 20.0]])  # rows: before, after phase 1, after phase 2
    p = cw.normalise(returns, torch.tensor([0.0, 10.0]), torch.tensor([10.0, 20.0]))
    assert torch.allclose(p, torch.tensor([[0.0, 0.0], [1.0, 0.5], [0.5, 1.0]]))
    m = cw.metrics(p)
    assert torch.allclose(m["performance"], torch.tensor([0.5, 1.0]))  # mean 0.75
    assert torch.allclose(m["forgetting"], torch.tensor([0.5]))  # task 1: 1.0 right after it, 0.5 at the end
    # AUC: task 1 (0 + 1)/2 = 0.5 -> 0; task 2 (0.5 + 1)/2 = 0.75 -> 0.5
    assert torch.allclose(m["forward_transfer"], torch.tensor([0.0, 0.5]))


def test_a_reference_no_better_than_random_does_not_divide_by_zero():
    p = cw.normalise(torch.tensor([[1.0]]), torch.tensor([1.0]), torch.tensor([1.0]))
    assert torch.isfinite(p).all()


def fill(strategy, n):
    for _ in range(n):
        strategy.insert()
    return strategy


def test_mtr_cascade_keeps_the_documented_proportions():
    c = fill(Cascade(2000, seed=0, levels=10, keep=0.85), 60000)
    assert len(c.occupied) == 2000 and all(len(q) == 200 for q in c.levels) and not c.overflow
    ratios = [b / a for a, b in zip(c.entered, c.entered[1:])]
    assert all(abs(r - 0.85) < 0.02 for r in ratios), ratios  # each sub-buffer gets 0.85 of the one before
    assert abs(c.entered[-1] / c.entered[0] - 0.85**9) < 0.02  # so the last spans ~0.85^-9 = 4.3x the first's window


def test_mtr_uses_the_overflow_before_the_cascade_fills():
    c = fill(Cascade(1000, seed=0, levels=10, keep=0.5), 400)
    assert len(c.occupied) == 400 and len(c.overflow) > 0  # nothing dropped while there is room


def kept_items(strategy, n):
    """Which of n inserted items (0..n-1) the strategy holds at the end."""
    item_of = {}
    for i in range(n):
        for slot in strategy.insert_many() if isinstance(strategy, Half) else [strategy.insert()]:
            if slot is not None:
                item_of[slot] = i
    return [item_of[s] for s in strategy.occupied.items]


def test_fifo_reservoir_and_half_keep_what_they_promise():
    assert sorted(kept_items(Fifo(100), 1000)) == list(range(900, 1000))
    early = sum(sum(1 for i in kept_items(Reservoir(100, seed=t), 1000) if i < 500) for t in range(40))
    assert abs(early / 4000 - 0.5) < 0.05  # every item seen equally likely to be kept
    half = kept_items(Half(100, seed=0), 1000)
    assert len(half) == 100 and sum(1 for i in half if i >= 950) >= 50  # the FIFO half holds the newest 50
