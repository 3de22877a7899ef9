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
from trainer.evaluation.protocol import episode_curves, evaluate, family_curves
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


def test_per_family_step_sizes_give_each_family_its_own_sizes():
    """With a family axis on the log step sizes too (maml-oracle with learned sizes), family f
    is meta-updated and finetuned with its own sizes, on vmap and the plain loop alike."""
    torch.manual_seed(4)
    model = MLP(1, (8,), 1)
    algo = make_algorithm("maml", model, alpha=0.01, gamma=0.01, learn_step_sizes=True)
    params = {k: v.detach() for k, v in model.named_parameters()}
    stacked = {k: torch.stack([v, v]) for k, v in params.items()}
    base = algo.init_step_sizes(params)
    each = [{k: v + math.log(scale) for k, v in base.items()} for scale in (1.0, 30.0)]
    sizes = {k: torch.stack([e[k] for e in each]) for k in base}
    batch = sinusoid.sample_batch(torch.Generator().manual_seed(5), 2, SHAPE)
    for impl in ("vmap", "loop"):
        loss, _ = family_curves(algo, stacked, sizes, {}, batch, 2, True, impl=impl, per_family_params=True)
        for f in range(2):
            alone, _ = family_curves(algo, params, each[f], {}, batch, 2, True, impl=impl)
            torch.testing.assert_close(loss[f], alone[f])
    assert not torch.allclose(family_curves(algo, params, each[0], {}, batch, 2, True)[0][1],
                              family_curves(algo, params, each[1], {}, batch, 2, True)[0][1])  # fmt: skip


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
    assert curves["without_meta_update"]["loss"].shape == (10, 4)
    x, y = batches[0].goal_val()
    direct = torch.stack([fn.loss_on(algo.forward, params, {}, x[0, c], y[0, c]) for c in range(2)]).mean()
    assert float(curves["without_meta_update"]["loss"][0, 0]) == pytest.approx(float(direct), rel=1e-5)
    w = res["with_meta_update"]["loss"]
    assert len(w["mean"]) == 4 and all(c > 0 for c in w["ci95"]) and w["diverged"] == [0, 0, 0, 0]
    gain = res["meta_update_gain"]["loss"]["mean"]
    assert gain[2] == pytest.approx(w["mean"][2] - res["without_meta_update"]["loss"]["mean"][2], abs=1e-9)


@pytest.mark.parametrize("name, level", [("maml", "alpha"), ("maltml", "gamma")])
def test_each_method_finetunes_with_its_own_learned_step_sizes(name, level):
    """Issue 24: a MAML trained with learned step sizes is scored with its learned alpha
    (the level it finetunes with), not with an untrained gamma; MALTML with its gamma."""
    torch.manual_seed(2)
    model = MLP(1, (8,), 1)
    algo = make_algorithm(name, model, alpha=0.001, gamma=0.001, learn_step_sizes=True)
    params = {k: v.detach() for k, v in model.named_parameters()}
    sizes = algo.init_step_sizes(params)
    learned = {k: (torch.tensor(math.log(0.3)) if k.startswith(level + ":") else v) for k, v in sizes.items()}
    batch = sinusoid.sample_batch(torch.Generator().manual_seed(3), 4, SHAPE)
    curves = episode_curves(algo, params, learned, {}, [batch], steps=1, protocols=("without_meta_update",))
    sx, sy = batch.goal_support()
    vx, vy = batch.goal_val()
    lrs = level_lrs(learned, level)
    want = torch.stack([torch.stack([fn.loss_on(algo.forward, fn.adapt(algo.forward, params, {}, sx[f, c], sy[f, c], lrs, 1),
                                                {}, vx[f, c], vy[f, c]) for c in range(SHAPE.goal_tasks)]).mean()
                        for f in range(4)])  # fmt: skip
    torch.testing.assert_close(curves["without_meta_update"]["loss"][:, 1], want)
    untrained = episode_curves(algo, params, sizes, {}, [batch], steps=1, protocols=("without_meta_update",))
    assert not torch.allclose(untrained["without_meta_update"]["loss"][:, 1], want)  # the learned step matters


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


def test_per_step_step_sizes_are_used_step_by_step_and_the_last_one_after_them():
    torch.manual_seed(4)
    model = MLP(1, (8,), 1)
    algo = make_algorithm("maml", model, alpha=0.01, task_steps=2, per_step_step_sizes=True)
    params = {k: v.detach() for k, v in model.named_parameters()}
    sizes = algo.init_step_sizes(params)
    sizes = {k: torch.tensor(math.log(0.2 if "@1" in k else 0.05)) for k in sizes}  # step 0: 0.05, step 1 on: 0.2
    batch = sinusoid.sample_batch(torch.Generator().manual_seed(5), 3, SHAPE)
    curves = episode_curves(algo, params, sizes, {}, [batch], steps=3, protocols=("without_meta_update",))
    sx, sy = batch.goal_support()
    vx, vy = batch.goal_val()
    for steps in (1, 2, 3):
        want = []
        for f in range(3):
            losses = []
            for c in range(SHAPE.goal_tasks):
                p = params
                for s in range(steps):
                    lr = 0.05 if s == 0 else 0.2
                    p = fn.adapt(algo.forward, p, {}, sx[f, c], sy[f, c], {k: torch.tensor(lr) for k in p}, 1)
                losses.append(fn.loss_on(algo.forward, p, {}, vx[f, c], vy[f, c]))
            want.append(torch.stack(losses).mean())
        torch.testing.assert_close(curves["without_meta_update"]["loss"][:, steps], torch.stack(want), rtol=1e-5, atol=1e-6)
