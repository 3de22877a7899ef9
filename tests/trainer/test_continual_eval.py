"""Javed & White's evaluation (`trainer.evaluation.continual.function_mse`, batched over
problems) against an obvious loop: per problem, online SGD step by step with autograd on
the layers from ``split`` on, then each function's MSE."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fewtask_data.sources.continual_sines import ContinualSpec, function_pool, sample_problems
from trainer.domains.continual.net import ContinualNet, layer_of, run_layers
from trainer.evaluation import continual as evaluation

SPEC = ContinualSpec(functions=3, steps_per_function=2, batch=4, rand_points=3)


def size_at(lr, s: int, name: str) -> float | torch.Tensor:
    """Step s's size of tensor ``name``: a number, or from a per-step schedule (a list of
    {name: size}) entry s, the last entry for steps past its end."""
    return lr if isinstance(lr, float) else lr[min(s, len(lr) - 1)][name]


def loop_function_mse(params, batch, test, lr, split, depth):
    rows = []
    for i in range(len(batch)):
        p = dict(params)
        for s in range(batch.traj_x.shape[1]):
            online = [k for k in p if layer_of(k) >= split]
            leaves = {k: p[k].detach().requires_grad_() for k in online}
            loss = F.mse_loss(run_layers({**p, **leaves}, batch.traj_x[i, s], 0, depth, depth), batch.traj_y[i, s])
            grads = torch.autograd.grad(loss, list(leaves.values()))
            p.update({k: (v - size_at(lr, s, k) * g).detach() for (k, v), g in zip(leaves.items(), grads)})
        x, y = test[0][i], test[1][i]
        rows.append(torch.stack([(run_layers(p, x[f], 0, depth, depth) - y[f]).pow(2).mean() for f in range(x.shape[0])]))
    return torch.stack(rows)


@pytest.mark.parametrize("split", [0, 2, 3])
def test_batched_evaluation_equals_the_step_by_step_loop(split):
    torch.manual_seed(0)
    net = ContinualNet(SPEC.in_features, rln=2, pln=2, width=5).double()
    params = {k: v.detach() for k, v in net.named_parameters()}
    batch = sample_problems(torch.Generator().manual_seed(1), function_pool(0, "eval", SPEC), 3, SPEC, dtype=torch.float64)
    test = evaluation.test_points(batch, SPEC, 7, seed=5)
    got = evaluation.function_mse(params, batch, test, 0.05, split, net.depth)
    want = loop_function_mse(params, batch, test, 0.05, split, net.depth)
    assert got.shape == (3, SPEC.functions) and torch.allclose(got, want, rtol=1e-10, atol=0)


def test_a_per_step_schedule_takes_step_s_at_step_s_and_its_last_entry_past_its_end():
    """Learned per-step sizes at evaluation (issue 24): the trajectory's step s takes the
    schedule's entry s; a schedule shorter than the trajectory (here 4 of 6 steps) repeats its
    last entry; equal entries are exactly the per-tensor sizes."""
    torch.manual_seed(0)
    net = ContinualNet(SPEC.in_features, rln=2, pln=2, width=5).double()
    params = {k: v.detach() for k, v in net.named_parameters()}
    batch = sample_problems(torch.Generator().manual_seed(1), function_pool(0, "eval", SPEC), 3, SPEC, dtype=torch.float64)
    test = evaluation.test_points(batch, SPEC, 7, seed=5)
    pln = [k for k in params if layer_of(k) >= 2]
    schedule = [{k: torch.tensor(0.01 * (s + 1) * (i + 1), dtype=torch.float64) for i, k in enumerate(pln)} for s in range(4)]
    got = evaluation.function_mse(params, batch, test, schedule, 2, net.depth)
    assert torch.allclose(got, loop_function_mse(params, batch, test, schedule, 2, net.depth), rtol=1e-10, atol=0)
    assert not torch.allclose(got, evaluation.function_mse(params, batch, test, schedule[:1], 2, net.depth))
    same = evaluation.function_mse(params, batch, test, [schedule[0]] * SPEC.steps, 2, net.depth)
    assert torch.equal(same, evaluation.function_mse(params, batch, test, schedule[0], 2, net.depth))
    assert evaluation.lr_label(schedule) == evaluation.lr_label(schedule[0]) == "learned"
