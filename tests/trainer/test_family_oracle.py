"""maml-oracle: one MAML per family, trained together but exactly independently."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import grad

from fewtask_data import EpisodeShape, FewtaskError
from fewtask_data.sources import sinusoid
from trainer.algorithms import batch_parts, make_algorithm
from trainer.core import functional as fn
from trainer.core.step_sizes import level_lrs
from trainer.models import MLP
from trainer.training.family_oracle import stack, summed_loss, train_family_oracles

torch.set_num_threads(1)


def test_each_family_gets_the_gradient_of_its_own_maml_loss():
    torch.manual_seed(0)
    model = MLP(1, (8, 8), 1).double()
    algo = make_algorithm("maml", model, alpha=0.05)
    init = {k: v.detach() for k, v in model.named_parameters()}
    sizes = algo.init_step_sizes(init)
    shape = EpisodeShape(ways=1, shots=4, queries=3, val=3, meta_tasks=0, goal_tasks=5)
    batch = sinusoid.sample_batch(torch.Generator().manual_seed(1), 3, shape, dtype=torch.float64,
                                  phases=torch.tensor([0.1, 1.5, 3.0]))  # fmt: skip
    stacked = {k: (v + 0.01 * torch.randn(3, *v.shape, dtype=v.dtype)) for k, v in init.items()}
    stacked_sizes = stack(sizes, 3)
    got = grad(summed_loss(algo, 4))(stacked, stacked_sizes, batch.meta_x, batch.meta_y, batch.goal_x, batch.goal_y)
    for f in range(3):
        own = {k: v[f] for k, v in stacked.items()}
        _, _, _, _, sx, sy, vx, vy = (t[f] for t in batch_parts(batch))
        alpha = level_lrs(sizes, "alpha")
        want = grad(lambda p: fn.tasks_adapted_metrics(algo.forward, p, {}, (sx, sy), (vx, vy), alpha, 1)[0].mean())(own)
        for k in init:
            torch.testing.assert_close(got[k][f], want[k])


def test_oracles_specialize_to_their_family():
    """After training, family f's model fits new tasks of family f better than the
    model trained on the opposite phase does."""
    torch.manual_seed(0)
    model = MLP(1, (40, 40), 1)
    algo = make_algorithm("maml", model, alpha=0.01)
    init = {k: v.detach() for k, v in model.named_parameters()}
    phases = torch.tensor([0.0, math.pi], dtype=torch.float64)  # y and -y: opposite families
    params, _, _ = train_family_oracles(algo, init, phases, 300, 8, 5, 5, 3e-3, 0, progress=False)
    shape = EpisodeShape(ways=1, shots=5, queries=5, val=50, meta_tasks=0, goal_tasks=20)
    test = sinusoid.sample_batch(torch.Generator().manual_seed(9), 2, shape, phases=phases)
    for f in range(2):
        x, y = test.goal_x[f].reshape(-1, 1), test.goal_y[f].reshape(-1, 1)
        own = fn.loss_on(algo.forward, {k: v[f] for k, v in params.items()}, {}, x, y)
        other = fn.loss_on(algo.forward, {k: v[1 - f] for k, v in params.items()}, {}, x, y)
        assert own < 0.5 * other, (f, float(own), float(other))


def test_phases_must_match_the_families():
    shape = EpisodeShape(ways=1, shots=2, queries=2, val=2, meta_tasks=0, goal_tasks=1)
    with pytest.raises(FewtaskError, match="one per family"):
        sinusoid.sample_batch(torch.Generator(), 3, shape, phases=torch.zeros(2))


def test_each_family_learns_its_own_step_sizes():
    """With learned step sizes every family's MAML gets the gradient of its own loss w.r.t.
    its own log step sizes (the same as that family alone), and training moves them."""
    torch.manual_seed(0)
    model = MLP(1, (8, 8), 1).double()
    algo = make_algorithm("maml", model, alpha=0.05, learn_step_sizes=True, per_step_step_sizes=True, task_steps=2)
    init = {k: v.detach() for k, v in model.named_parameters()}
    shape = EpisodeShape(ways=1, shots=4, queries=3, val=3, meta_tasks=0, goal_tasks=5)
    phases = torch.tensor([0.1, 1.5, 3.0])
    batch = sinusoid.sample_batch(torch.Generator().manual_seed(1), 3, shape, dtype=torch.float64, phases=phases)
    stacked, sizes = stack(init, 3), stack(algo.init_step_sizes(init), 3)
    sizes = {k: v + 0.2 * torch.randn(3, dtype=v.dtype) for k, v in sizes.items()}
    tensors = (batch.meta_x, batch.meta_y, batch.goal_x, batch.goal_y)
    _, got = grad(summed_loss(algo, 4), argnums=(0, 1))(stacked, sizes, *tensors)
    for f in range(3):
        alone = grad(summed_loss(algo, 4), argnums=1)(stack({k: v[f] for k, v in stacked.items()}, 1),
                                                       {k: v[f : f + 1] for k, v in sizes.items()},
                                                       *(t[f : f + 1] for t in tensors))  # fmt: skip
        for k in sizes:
            torch.testing.assert_close(got[k][f], alone[k][0])
    model32 = MLP(1, (8, 8), 1)  # the oracle trains on float32 sinusoid batches
    algo32 = make_algorithm("maml", model32, alpha=0.05, learn_step_sizes=True, per_step_step_sizes=True, task_steps=2)
    init32 = {k: v.detach() for k, v in model32.named_parameters()}
    _, learned, _ = train_family_oracles(algo32, init32, phases.double(), 3, 4, 4, 3, 1e-2, 0, progress=False)
    assert all(v.shape == (3,) for v in learned.values())
    assert all(not torch.equal(v, torch.full_like(v, math.log(0.05))) for v in learned.values())
