"""The evaluation protocol: curves, intervals, and a meta-update equal to training's."""

from __future__ import annotations

import math

import pytest
import torch

from fewtask_data import EpisodeShape
from fewtask_data.sources import sinusoid
from trainer.algorithms import make_algorithm
from trainer.core import functional as fn
from trainer.core.step_sizes import level_lrs
from trainer.evaluation.protocol import compare, evaluate, family_curves, paired, summarize
from trainer.models import MLP

torch.set_num_threads(1)
SHAPE = EpisodeShape(ways=1, shots=4, queries=4, val=6, meta_tasks=3, goal_tasks=2)


@pytest.mark.parametrize("order", [3, 2])
def test_meta_update_is_the_one_training_uses(order):
    """At 0 steps the curve is the goal loss after exactly training's V_beta (with the
    second-order meta-gradient for order 3: its value differs from the first-order one)."""
    torch.manual_seed(0)
    model = MLP(1, (8, 8), 1).double()
    algo = make_algorithm("maltml", model, alpha=0.05, beta=0.1, gamma=0.05, order=order)
    params = {k: v.detach() for k, v in model.named_parameters()}
    sizes = algo.init_step_sizes(params)
    batch = sinusoid.sample_batch(torch.Generator().manual_seed(1), 2, SHAPE, dtype=torch.float64)
    loss, _ = family_curves(algo, params, sizes, {}, batch, 2, meta_update=True)
    a, b = level_lrs(sizes, "alpha"), level_lrs(sizes, "beta")
    f = 1
    theta = fn.meta_adapt(algo.forward, params, {}, (batch.meta_support()[0][f], batch.meta_support()[1][f]),
                          (batch.meta_query()[0][f], batch.meta_query()[1][f]), a, b, 1, 1, None, order == 2)  # fmt: skip
    vx, vy = batch.goal_val()
    expected = torch.stack([fn.loss_on(algo.forward, theta, {}, vx[f, c], vy[f, c]) for c in range(2)]).mean()
    torch.testing.assert_close(loss[f, 0], expected)
    first_order = fn.meta_adapt(algo.forward, params, {}, (batch.meta_support()[0][f], batch.meta_support()[1][f]),
                                (batch.meta_query()[0][f], batch.meta_query()[1][f]), a, b, 1, 1, None, True)  # fmt: skip
    if order == 3:  # the distinction matters here
        assert not torch.allclose(first_order["head.weight"], theta["head.weight"])


@pytest.mark.parametrize("algorithm,order", [("maltml", 3), ("maltml", 2), ("maml", 2), ("fo-maltml", 3)])
def test_loop_curves_equal_vmap_curves(algorithm, order):
    """The plain-loop evaluation (fast for conv nets on CPU) computes the same numbers."""
    torch.manual_seed(2)
    model = MLP(1, (8, 8), 1).double()
    algo = make_algorithm(algorithm, model, alpha=0.05, beta=0.1, gamma=0.05, order=order)
    params = {k: v.detach() for k, v in model.named_parameters()}
    sizes = algo.init_step_sizes(params)
    batch = sinusoid.sample_batch(torch.Generator().manual_seed(3), 3, SHAPE, dtype=torch.float64)
    for meta_update in (False, True):
        fast = family_curves(algo, params, sizes, {}, batch, 3, meta_update, impl="vmap")
        slow = family_curves(algo, params, sizes, {}, batch, 3, meta_update, impl="loop")
        for x, y in zip(fast, slow):
            torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12)


def test_per_family_params_give_each_family_its_own_model():
    """With a leading family axis on the parameters, family f is scored with model f."""
    torch.manual_seed(4)
    models = [MLP(1, (8,), 1) for _ in range(2)]
    algo = make_algorithm("maml", models[0], alpha=0.01, gamma=0.01)
    each = [{k: v.detach() for k, v in m.named_parameters()} for m in models]
    stacked = {k: torch.stack([e[k] for e in each]) for k in each[0]}
    sizes = algo.init_step_sizes(each[0])
    batch = sinusoid.sample_batch(torch.Generator().manual_seed(5), 2, SHAPE)
    loss, _ = family_curves(algo, stacked, sizes, {}, batch, 2, True, per_family_params=True)
    for f in range(2):
        alone, _ = family_curves(algo, each[f], sizes, {}, batch, 2, True)
        torch.testing.assert_close(loss[f], alone[f])


def test_map_over_loop_matches_vmap_on_dicts_and_tuples():
    def f(p, x, c):
        return {"s": p["w"].sum() * x + c}, x.sum()

    p = {"w": torch.arange(3.0)}
    x = torch.randn(3, 4)
    for dims in ((0, 0, None), (None, 0, None)):
        want, got = fn.map_over(f, dims, "vmap")(p, x, 1.0), fn.map_over(f, dims, "loop")(p, x, 1.0)
        torch.testing.assert_close(want, got)


def test_curves_without_meta_update_start_from_theta_and_have_intervals():
    torch.manual_seed(1)
    model = MLP(1, (8,), 1)
    algo = make_algorithm("maml", model, alpha=0.01, gamma=0.01)
    params = {k: v.detach() for k, v in model.named_parameters()}
    batches = [sinusoid.sample_batch(torch.Generator().manual_seed(i), 5, SHAPE) for i in range(2)]
    res, curves = evaluate(algo, params, algo.init_step_sizes(params), {}, batches, steps=3)
    assert res["episodes"] == 10 and res["steps"] == [0, 1, 2, 3]
    x, y = batches[0].goal_val()
    direct = torch.stack([fn.loss_on(algo.forward, params, {}, x[0, c], y[0, c]) for c in range(2)]).mean()
    assert float(curves["without_meta_finetuning"]["loss"][0, 0]) == pytest.approx(float(direct), rel=1e-5)
    w = res["with_meta_finetuning"]["loss"]
    assert len(w["mean"]) == 4 and all(c > 0 for c in w["ci95"])
    gain = res["meta_finetuning_gain"]["loss"]["mean"]
    assert gain[2] == pytest.approx(w["mean"][2] - res["without_meta_finetuning"]["loss"]["mean"][2], abs=1e-9)


def test_summaries():
    s = summarize(torch.tensor([[1.0], [3.0]]))
    assert s["mean"] == [2.0] and s["ci95"][0] == pytest.approx(1.96 * math.sqrt(2) / math.sqrt(2))
    d = paired(torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([[0.5], [1.5], [2.5]]))
    assert d["mean"] == [pytest.approx(0.5)] and d["ci95"] == [pytest.approx(0.0)]


def test_progress_bar_counts_episodes_on_stderr_only_when_asked(capsys):
    torch.manual_seed(1)
    model = MLP(1, (8,), 1)
    algo = make_algorithm("maml", model, alpha=0.01, gamma=0.01)
    params = {k: v.detach() for k, v in model.named_parameters()}
    sizes = algo.init_step_sizes(params)
    batches = [sinusoid.sample_batch(torch.Generator().manual_seed(i), 3, SHAPE) for i in range(2)]
    quiet, _ = evaluate(algo, params, sizes, {}, batches, steps=1)
    assert capsys.readouterr().err == ""
    shown, _ = evaluate(algo, params, sizes, {}, batches, steps=1, progress=True, total=6)
    captured = capsys.readouterr()
    assert "evaluating" in captured.err and "6/6" in captured.err and captured.out == ""
    assert shown == quiet  # the bar changes nothing else


def test_compare_pairs_every_protocol_of_two_methods():
    a = {"without_meta_finetuning": {"accuracy": torch.tensor([[0.2], [0.4]])},
         "with_meta_finetuning": {"accuracy": torch.tensor([[0.6], [0.8]])}}  # fmt: skip
    b = {"without_meta_finetuning": {"accuracy": torch.tensor([[0.3], [0.3]])},
         "with_meta_finetuning": {"accuracy": torch.tensor([[0.1], [0.5]])}}  # fmt: skip
    d = compare(a, b)
    assert set(d) == {"without_minus_without", "without_minus_with", "with_minus_without", "with_minus_with"}
    assert d["with_minus_without"]["accuracy"]["mean"] == [pytest.approx(0.4)]
    assert d["without_minus_with"]["accuracy"]["mean"] == [pytest.approx(0.0, abs=1e-6)]
    assert d["with_minus_with"]["accuracy"]["mean"] == [pytest.approx(0.4)] and d["with_minus_with"]["accuracy"]["ci95"][0] > 0
