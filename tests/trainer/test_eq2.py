"""Eq. 2 as the paper writes it: the meta-finetuning step descends the SUM of the L task losses,

    theta'_j = theta - beta * grad_theta sum_i L_Ti(U_alpha(theta))      (Eq. 2, Algorithm 1 line 10)

checked against a separate nested loop over families and tasks written here with plain
torch.autograd, on the paper's configuration (MLP 1-40-40-1, L = 5, C = 2, K = Q = V = 5,
alpha 0.001, beta 0.01, gamma 0.001) in float64.
"""

from __future__ import annotations

import pytest
import torch

from fewtask_data import EpisodeShape
from fewtask_data.sources.sinusoid import sample_batch, step_generator
from trainer.algorithms import batch_parts, make_algorithm
from trainer.core import functional as fn
from trainer.models import MLP

torch.set_num_threads(1)
PAPER = dict(alpha=0.001, beta=0.01, gamma=0.001)
L = 5
SHAPE = EpisodeShape(ways=1, shots=5, queries=5, val=5, meta_tasks=L, goal_tasks=2)


def paper_setup(families: int = 2, seed: int = 0, shape: EpisodeShape = SHAPE):
    torch.manual_seed(seed)
    model = MLP(1, (40, 40), 1).double()
    batch = sample_batch(step_generator(seed, 0), families, shape, dtype=torch.float64)
    params = {k: v.detach() for k, v in model.named_parameters()}
    return model, batch, params


def outer_loss(model, theta, parts, alpha, beta, gamma, reduction="sum", order=3):
    """MALTML's outer loss written out: for each family j, one meta step on its L tasks
    (Eq. 2, summed or averaged), then one gamma step on each goal task, validation loss;
    mean over families and goal tasks. ``order`` < 3 makes the task steps constants; 1 also
    the meta and goal steps (their gradients computed without a graph)."""
    forward = fn.make_forward(model)
    msx, msy, mqx, mqy, gsx, gsy, gvx, gvy = parts

    def mse(p, x, y):
        return ((forward(p, {}, x) - y) ** 2).mean()

    def step(p, loss, lr, keep_graph):
        grads = torch.autograd.grad(loss, list(p.values()), create_graph=keep_graph, retain_graph=True)
        return {k: v - lr * g for (k, v), g in zip(p.items(), grads)}

    goal_losses = []
    for j in range(msx.shape[0]):
        task_losses = []
        for i in range(msx.shape[1]):
            adapted = step(theta, mse(theta, msx[j, i], msy[j, i]), alpha, order == 3)  # U_alpha on task i's support
            task_losses.append(mse(adapted, mqx[j, i], mqy[j, i]))
        theta_j = theta  # L = 0: nothing to meta-finetune on
        if task_losses:
            meta_loss = sum(task_losses) if reduction == "sum" else sum(task_losses) / len(task_losses)
            theta_j = step(theta, meta_loss, beta, order >= 2)
        for c in range(gsx.shape[1]):
            finetuned = step(theta_j, mse(theta_j, gsx[j, c], gsy[j, c]), gamma, order >= 2)
            goal_losses.append(mse(finetuned, gvx[j, c], gvy[j, c]))
    return torch.stack(goal_losses).mean()


def reference_grads(model, params, parts, reduction="sum", order=3, **lrs):
    theta = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    loss = outer_loss(model, theta, parts, **{**PAPER, **lrs}, reduction=reduction, order=order)
    return dict(zip(theta, torch.autograd.grad(loss, list(theta.values()))))


def rel_err(a: dict, b: dict) -> float:
    num = sum(((a[k] - b[k]) ** 2).sum() for k in a) ** 0.5
    return float(num / sum((b[k] ** 2).sum() for k in b) ** 0.5)


def maltml_grads(model, params, batch, **hp):
    algo = make_algorithm("maltml", model, **{**PAPER, **hp})
    return algo.outer_grads(params, algo.init_step_sizes(params), {}, batch)[0]


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_order_3_equals_the_nested_loop_the_plain_loop_reference_and_finite_differences(reduction):
    model, batch, params = paper_setup(families=3)
    parts = batch_parts(batch)
    want = reference_grads(model, params, parts, reduction)
    assert rel_err(maltml_grads(model, params, batch, meta_reduction=reduction), want) < 1e-10
    assert rel_err(maltml_grads(model, params, batch, meta_reduction=reduction, impl="loop"), want) < 1e-10
    gen, eps = torch.Generator().manual_seed(1), 1e-5
    for _ in range(2):  # central differences of the nested loop along random directions
        v = {k: torch.randn(p.shape, generator=gen, dtype=p.dtype) for k, p in params.items()}
        with torch.enable_grad():
            plus = outer_loss(model, {k: (p + eps * v[k]).requires_grad_() for k, p in params.items()}, parts, **PAPER, reduction=reduction)
            minus = outer_loss(model, {k: (p - eps * v[k]).requires_grad_() for k, p in params.items()}, parts, **PAPER, reduction=reduction)
        fd = float((plus - minus).detach()) / (2 * eps)
        analytic = sum(float((want[k] * v[k]).sum()) for k in params)
        assert abs(fd - analytic) <= 1e-6 * max(abs(fd), 1e-4), (fd, analytic)


def test_the_sum_is_not_the_mean_and_equals_the_mean_with_L_times_beta():
    model, batch, params = paper_setup(seed=2)
    summed = maltml_grads(model, params, batch, meta_reduction="sum")
    assert rel_err(summed, maltml_grads(model, params, batch, meta_reduction="mean")) > 1e-3
    assert rel_err(summed, maltml_grads(model, params, batch, meta_reduction="mean", beta=L * PAPER["beta"])) < 1e-12


@pytest.mark.parametrize("order", [1, 2])
def test_lower_orders_equal_explicitly_detached_versions(order):
    model, batch, params = paper_setup(seed=3)
    want = reference_grads(model, params, batch_parts(batch), "sum", order)
    assert rel_err(maltml_grads(model, params, batch, order=order), want) < 1e-10


def test_no_meta_tasks_pass_the_parameters_through():
    model, batch, params = paper_setup(seed=4, shape=EpisodeShape(1, 5, 5, 5, meta_tasks=0, goal_tasks=2))
    msx, msy, mqx, mqy = batch_parts(batch)[:4]
    for reduction in ("sum", "mean"):
        lrs = {k: torch.tensor(0.01, dtype=torch.float64) for k in params}
        out = fn.meta_adapt(fn.make_forward(model), params, {}, (msx[0], msy[0]), (mqx[0], mqy[0]), lrs, lrs, 1, 1,
                            reduction=reduction)  # fmt: skip
        assert out is params
        got = maltml_grads(model, params, batch, meta_reduction=reduction)
        assert rel_err(got, reference_grads(model, params, batch_parts(batch), reduction)) < 1e-10


def test_fo_maltml_and_the_evaluation_meta_update_sum_too():
    """FO-MALTML's first-order meta step and the evaluation protocol's meta-update follow
    the same switch: sum with beta = mean with L * beta."""
    from trainer.evaluation.protocol import family_curves

    model, batch, params = paper_setup(seed=5)
    for name in ("fo-maltml", "maml"):
        summed = make_algorithm(name, model, **PAPER)
        mean_l = make_algorithm(name, model, **{**PAPER, "beta": L * PAPER["beta"]}, meta_reduction="mean")
        mean_1 = make_algorithm(name, model, **PAPER, meta_reduction="mean")
        curves = [family_curves(a, params, a.init_step_sizes(params), {}, batch, 1, True)[0] for a in (summed, mean_l, mean_1)]
        torch.testing.assert_close(curves[0], curves[1], rtol=1e-12, atol=1e-14)
        assert not torch.allclose(curves[0], curves[2], rtol=1e-9, atol=0)
    grads = [a.outer_grads(params, a.init_step_sizes(params), {}, batch)[0] for a in (
        make_algorithm("fo-maltml", model, **PAPER),
        make_algorithm("fo-maltml", model, **{**PAPER, "beta": L * PAPER["beta"]}, meta_reduction="mean"),
    )]  # fmt: skip
    assert rel_err(grads[0], grads[1]) < 1e-12
