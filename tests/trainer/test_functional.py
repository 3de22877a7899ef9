"""The torch.func core: adapt, meta_adapt, losses; classification through the algorithms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fewtask_data import EpisodeShape, FamilyBatch
from trainer.algorithms import make_algorithm
from trainer.core import functional as fn
from trainer.models import MLP, build_model

torch.set_num_threads(1)


def test_adapt_descends_and_zero_steps_is_identity():
    torch.manual_seed(0)
    model = MLP()
    forward = fn.make_forward(model)
    params = {k: v.detach() for k, v in model.named_parameters()}
    x = torch.linspace(-5, 5, 20).unsqueeze(-1)
    y = torch.sin(x)
    lrs = {k: torch.tensor(0.01) for k in params}
    assert fn.adapt(forward, params, {}, x, y, lrs, 0) is params
    before = fn.loss_on(forward, params, {}, x, y)
    after = fn.loss_on(forward, fn.adapt(forward, params, {}, x, y, lrs, 5), {}, x, y)
    assert after < before


def test_meta_adapt_without_tasks_passes_through():
    model = MLP()
    forward = fn.make_forward(model)
    params = {k: v.detach() for k, v in model.named_parameters()}
    empty = (torch.zeros(0, 4, 1), torch.zeros(0, 4, 1))
    lrs = {k: torch.tensor(0.1) for k in params}
    assert fn.meta_adapt(forward, params, {}, empty, empty, lrs, lrs, 1, 1) is params


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_meta_adapt_equals_a_maml_step_on_the_task_sum_or_mean(reduction):
    torch.manual_seed(1)
    model = MLP(1, (6,), 1).double()
    forward = fn.make_forward(model)
    params = {k: v.detach() for k, v in model.named_parameters()}
    sx, sy, qx, qy = (torch.randn(3, 4, 1, dtype=torch.float64) for _ in range(4))
    a = {k: torch.tensor(0.1, dtype=torch.float64) for k in params}
    b = {k: torch.tensor(0.2, dtype=torch.float64) for k in params}
    got = fn.meta_adapt(forward, params, {}, (sx, sy), (qx, qy), a, b, 1, 1, reduction=reduction)
    losses = lambda p: torch.stack(  # noqa: E731
        [fn.loss_on(forward, fn.adapt(forward, p, {}, sx[i], sy[i], a, 1), {}, qx[i], qy[i]) for i in range(3)]
    )
    g = torch.func.grad(lambda p: losses(p).sum() if reduction == "sum" else losses(p).mean())(params)
    for k in params:
        torch.testing.assert_close(got[k], params[k] - 0.2 * g[k])


def test_losses_pick_by_target_dtype():
    pred = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    assert torch.isclose(fn.task_loss(pred, torch.tensor([0, 1])), nn.functional.cross_entropy(pred, torch.tensor([0, 1])))
    assert fn.task_loss(pred, pred.clone()) == 0
    assert fn.accuracy(pred, torch.tensor([0, 0])) == 0.5


class TinyClassifier(nn.Module):
    def __init__(self, ways: int):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(4, 6), nn.ReLU())
        self.head = nn.Linear(6, ways)

    def forward(self, x):
        return self.head(self.body(x))


def test_classification_batches_run_every_algorithm():
    """Any nn.Module and int64 labels: cross-entropy loss and an accuracy metric."""
    torch.manual_seed(2)
    shape = EpisodeShape(ways=3, shots=2, queries=2, val=2, meta_tasks=2, goal_tasks=1)
    b = 2
    labels = lambda n, t: torch.arange(3).repeat_interleave(n).expand(b, t, -1).clone()  # noqa: E731
    batch = FamilyBatch(
        torch.randn(b, 2, shape.meta_size, 2, 2), torch.cat([labels(2, 2), labels(2, 2)], -1),
        torch.randn(b, 1, shape.goal_size, 2, 2), torch.cat([labels(2, 1), labels(2, 1)], -1),
        shape, ["f0", "f1"],
    )  # fmt: skip
    model = TinyClassifier(3)
    params = {k: v.detach() for k, v in model.named_parameters()}
    for name in ("maltml", "fo-maltml", "maml", "fomaml", "reptile", "anil", "boil", "pretrain"):
        algo = make_algorithm(name, model, alpha=0.1, beta=0.1, gamma=0.1)
        grads, _, metrics = algo.outer_grads(params, algo.init_step_sizes(params), {}, batch)
        assert set(grads) == set(params)
        assert torch.isfinite(metrics["loss"]) and 0 <= float(metrics["acc"]) <= 1, name
    # FO-MALTML logs the goal validation loss and accuracy after its first-order steps:
    # fully first-order MALTML's (it used to log a zero accuracy placeholder).
    fo, exact = (make_algorithm(n, model, alpha=0.1, beta=0.1, gamma=0.1, **kw) for n, kw in
                 (("fo-maltml", {}), ("maltml", {"order": 1})))  # fmt: skip
    m_fo, m_exact = (a.outer_grads(params, a.init_step_sizes(params), {}, batch)[2] for a in (fo, exact))
    assert float(m_fo["acc"]) == pytest.approx(float(m_exact["acc"])) and float(m_fo["acc"]) > 0
    assert float(m_fo["loss"]) == pytest.approx(float(m_exact["loss"]), rel=1e-6)


def test_build_model_registry():
    assert isinstance(build_model("mlp", hidden=(4,)), MLP)
