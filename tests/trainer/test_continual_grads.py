"""OML and MALTML-continual meta-gradients: the fast path (cached RLN features, written-out
online gradients, problems on a batch axis) against the plain-loop reference and float64 finite
differences on short trajectories with tiny widths."""

from __future__ import annotations

import pytest
import torch
from torch.func import grad

from fewtask_data import FewtaskError
from fewtask_data.sources.continual_sines import ContinualBatch, ContinualSpec, function_pool, sample_families, sample_problems
from trainer.core import functional as fn
from trainer.domains.continual.net import ContinualNet, mse_grads, online_names, run_layers
from trainer.domains.continual.oml import OML, MALTMLContinual

SPEC = ContinualSpec(functions=3, steps_per_function=2, batch=4, rand_points=3)


def setup(seed: int = 0):
    torch.manual_seed(seed)
    net = ContinualNet(SPEC.in_features, rln=2, pln=2, width=5).double()
    params = {k: v.detach() for k, v in net.named_parameters()}
    pool = function_pool(0, "train", SPEC)
    return net, params, pool


def max_diff(a, b):
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def assert_loop_matches(algo, params, batch):
    """The fast path's loss and meta-gradient equal the plain-loop reference's."""
    fast, _, m1 = algo.outer_grads(params, {}, {}, batch)
    algo.impl = "loop"
    slow, _, m2 = algo.outer_grads(params, {}, {}, batch)
    assert float(m1["loss"]) == pytest.approx(float(m2["loss"]), rel=1e-12)
    assert max_diff(fast, slow) < 1e-10


def finite_difference(objective, params, name, index, eps=1e-6):
    plus = {k: v.clone() for k, v in params.items()}
    minus = {k: v.clone() for k, v in params.items()}
    plus[name][index] += eps
    minus[name][index] -= eps
    return float((objective(plus) - objective(minus)) / (2 * eps))


@pytest.mark.parametrize("per_problem", [False, True])
def test_written_out_mse_gradient_is_torch_func_grad_per_problem(per_problem):
    net, params, _ = setup()
    y = torch.randn(3, 6, 1, dtype=torch.float64)
    for start in (0, 2, 3):
        sub = {k: params[k] for k in online_names(params, start)}
        if per_problem:  # each problem its own weights, as after the first online step
            sub = {k: v + 0.1 * torch.randn(3, *v.shape, dtype=v.dtype) for k, v in sub.items()}
        h = torch.randn(3, 6, SPEC.in_features if start == 0 else 5, dtype=torch.float64)
        loss, mine = mse_grads(sub, h, y, start, net.depth)
        for i in range(3):
            own = {k: v[i] for k, v in sub.items()} if per_problem else sub
            theirs = grad(lambda p: torch.nn.functional.mse_loss(run_layers(p, h[i], start, net.depth, net.depth), y[i]))(own)
            assert set(mine) == set(theirs) and max_diff({k: v[i] for k, v in mine.items()}, theirs) < 1e-12
            assert float(loss[i]) == pytest.approx(float(torch.nn.functional.mse_loss(run_layers(own, h[i], start, net.depth, net.depth), y[i])))


def test_batched_problems_equal_torch_func_vmap_over_single_problems():
    from trainer.domains.continual.oml import problems_loss, problems_loss_vmap

    net, params, pool = setup()
    batch = sample_problems(torch.Generator().manual_seed(1), pool, 3, SPEC, dtype=torch.float64)
    a = problems_loss(params, batch.tensors(), 0.1, net.split, net.depth)
    b = problems_loss_vmap(params, batch.tensors(), 0.1, net.split, net.depth)
    assert a.shape == (3,) and torch.allclose(a, b, rtol=1e-12, atol=0)


@pytest.mark.parametrize("first_order", [False, True])
def test_oml_gradient_matches_the_plain_loop(first_order):
    net, params, pool = setup()
    batch = sample_problems(torch.Generator().manual_seed(1), pool, 2, SPEC, dtype=torch.float64)
    assert_loop_matches(OML(net, lr=0.1, first_order=first_order), params, batch)


def test_oml_second_order_gradient_matches_finite_differences_and_first_order_differs():
    net, params, pool = setup()
    batch = sample_problems(torch.Generator().manual_seed(1), pool, 2, SPEC, dtype=torch.float64)
    algo = OML(net, lr=0.1)
    g, _, _ = algo.outer_grads(params, {}, {}, batch)
    objective = lambda p: algo.objective(p, batch)  # noqa: E731
    for name, index in [("layers.0.weight", (0, 0)), ("layers.1.bias", (2,)), ("layers.2.weight", (1, 3)), ("layers.3.bias", (0,))]:
        assert g[name][index].item() == pytest.approx(finite_difference(objective, params, name, index), rel=1e-5, abs=1e-8)
    first, _, _ = OML(net, lr=0.1, first_order=True).outer_grads(params, {}, {}, batch)
    assert max_diff(first, g) > 1e-4  # the derivative through the online steps matters


@pytest.mark.parametrize("order", [3, 2, 1])
def test_maltml_continual_gradient_matches_the_plain_loop(order):
    net, params, pool = setup()
    fams = sample_families(torch.Generator().manual_seed(2), pool, torch.tensor([0.5, 2.0]), 2, 1, SPEC, torch.float64)
    assert_loop_matches(MALTMLContinual(net, lr=0.1, beta=0.05, order=order), params, fams)


def test_maltml_continual_third_order_gradient_matches_finite_differences():
    net, params, pool = setup()
    fams = sample_families(torch.Generator().manual_seed(2), pool, torch.tensor([0.5, 2.0]), 2, 1, SPEC, torch.float64)
    algo = MALTMLContinual(net, lr=0.1, beta=0.05, order=3)
    g, _, _ = algo.outer_grads(params, {}, {}, fams)
    objective = lambda p: algo.objective(p, fams)  # noqa: E731
    for name, index in [("layers.0.weight", (1, 0)), ("layers.3.bias", (0,))]:
        assert g[name][index].item() == pytest.approx(finite_difference(objective, params, name, index), rel=1e-5, abs=1e-8)
    lower = MALTMLContinual(net, lr=0.1, beta=0.05, order=2).outer_grads(params, {}, {}, fams)[0]
    assert max_diff(lower, g) > 1e-6


@pytest.mark.parametrize("order", [3, 1])
def test_maltml_continual_mean_is_the_sum_with_beta_over_L(order):
    # L = 2: halving is exact in floating point, so the two meta-gradients agree bitwise.
    net, params, pool = setup()
    fams = sample_families(torch.Generator().manual_seed(4), pool, torch.tensor([0.5, 2.0]), 2, 1, SPEC, torch.float64)
    mean = MALTMLContinual(net, lr=0.1, beta=0.1, order=order, meta_reduction="mean")
    assert (mean.levels.reduction, mean.levels.order) == ("mean", order)
    got = mean.outer_grads(params, {}, {}, fams)[0]
    summed = MALTMLContinual(net, lr=0.1, beta=0.05, order=order).outer_grads(params, {}, {}, fams)[0]
    assert all(torch.equal(got[k], summed[k]) for k in got)
    assert max_diff(got, MALTMLContinual(net, lr=0.1, beta=0.1, order=order).outer_grads(params, {}, {}, fams)[0]) > 1e-6


def test_no_meta_problems_reduces_maltml_continual_to_oml():
    net, params, pool = setup()
    fams = sample_families(torch.Generator().manual_seed(3), pool, torch.tensor([1.0]), 0, 2, SPEC, torch.float64)
    maltml = MALTMLContinual(net, lr=0.1, beta=0.05).outer_grads(params, {}, {}, fams)[0]
    goal = ContinualBatch(*(t[0] for t in (*fams.goal.tensors(), fams.goal.functions)))  # the family's 2 goal problems
    oml = OML(net, lr=0.1).outer_grads(params, {}, {}, goal)[0]
    assert max_diff(maltml, oml) < 1e-12


def test_descend_online_steps_through_the_trajectory_in_order():
    # Two steps on different batches equal two explicit SGD steps, in that order.
    p = {"w": torch.tensor([1.0], dtype=torch.float64)}
    xs = torch.tensor([[2.0], [3.0]], dtype=torch.float64)
    out = fn.descend_online(lambda q, x: (q["w"] * x).pow(2).sum(), p, {"w": 0.1}, xs)
    w = 1.0
    for x in (2.0, 3.0):
        w -= 0.1 * 2 * w * x * x
    assert float(out["w"]) == pytest.approx(w)


def test_bad_step_sizes_and_orders_are_one_line_errors():
    net, _, _ = setup()
    for bad in (0.0, -0.1):
        with pytest.raises(FewtaskError, match="inner step size must be > 0"):
            OML(net, lr=bad)
    with pytest.raises(FewtaskError, match="beta must be > 0"):
        MALTMLContinual(net, beta=0.0)
    with pytest.raises(FewtaskError, match="order must be 1, 2 or 3"):
        MALTMLContinual(net, order=4)
    with pytest.raises(FewtaskError, match="meta-reduction must be sum or mean"):
        MALTMLContinual(net, meta_reduction="median")


def _problems(pool, seed=5):
    return sample_problems(torch.Generator().manual_seed(seed), pool, 3, SPEC, dtype=torch.float64)


def _learning(kind: str, net, pool, per_step: bool = False, meta_steps: int = 1):
    """(batch, algorithm) learning its step sizes; per step: one per (level, step, tensor)."""
    learned = {"learn_step_sizes": True, "per_step_step_sizes": per_step, "online_steps": SPEC.steps}
    if kind == "oml":
        return _problems(pool), OML(net, lr=0.1, **learned)
    batch = sample_families(torch.Generator().manual_seed(2), pool, torch.tensor([0.5, 2.0]), 2, 1, SPEC, torch.float64)
    return batch, MALTMLContinual(net, lr=0.1, beta=0.05, meta_steps=meta_steps, **learned)


def _level_and_tensor(key: str) -> tuple[str, str]:
    """``"alpha@3:layers.2.bias"`` -> ("alpha", "layers.2.bias")."""
    tag, _, name = key.partition(":")
    return tag.partition("@")[0], name


@pytest.mark.parametrize("per_step", [False, True], ids=["per-tensor", "per-step"])
@pytest.mark.parametrize("kind", ["oml", "maltml"])
def test_learned_step_sizes_gradients_match_the_loop_and_finite_differences(kind, per_step):
    """Issue 24: the online step (alpha) per PLN tensor, and for MALTML-continual beta per
    tensor and the goal's online step (gamma) per PLN tensor, learned like the parameters;
    per step (MAML++), one per (level, step, tensor): each online step of the trajectory its
    own alpha (and gamma), each meta step its own beta. Per step, every size is checked."""
    net, params, pool = setup()
    batch, algo = _learning(kind, net, pool, per_step, meta_steps=2 if per_step else 1)  # per step: beta's schedule too
    steps = {"alpha": SPEC.steps, "beta": 2, "gamma": SPEC.steps} if per_step else {"alpha": 1, "beta": 1, "gamma": 1}
    tensors = {"alpha": 4, "beta": 8, "gamma": 4}  # the PLN's 2 layers, every layer
    levels = ("alpha",) if kind == "oml" else ("alpha", "beta", "gamma")
    init = algo.init_step_sizes(params)
    assert {_level_and_tensor(k)[0] for k in init} == set(levels)
    assert len(init) == sum(steps[lv] * tensors[lv] for lv in levels)
    gen = torch.Generator().manual_seed(6)
    sizes = {k: v + 0.2 * torch.randn((), generator=gen, dtype=v.dtype) for k, v in init.items()}
    g, s, m = algo.outer_grads(params, sizes, {}, batch)
    algo.impl = "loop"
    g2, s2, m2 = algo.outer_grads(params, sizes, {}, batch)
    assert float(m["loss"]) == pytest.approx(float(m2["loss"]), rel=1e-12)
    assert max_diff(g, g2) < 1e-10 and max_diff(s, s2) < 1e-10
    algo.impl = "vmap"
    for key in list(sizes) if per_step else list(sizes)[:2] + list(sizes)[-1:]:
        fd = finite_difference(lambda z: algo.objective(params, batch, z), sizes, key, ())
        assert s[key].item() == pytest.approx(fd, rel=1e-5, abs=1e-9), key


@pytest.mark.parametrize("kind", ["oml", "maltml"])
def test_equal_per_step_sizes_are_exactly_the_per_tensor_objective(kind):
    """Per-step sizes that start equal (as they do) give the per-tensor objective bitwise, and
    each per-tensor size's gradient is the sum of its steps' (the chain rule)."""
    net, params, pool = setup()
    batch, per_tensor = _learning(kind, net, pool, meta_steps=2)
    per_step = _learning(kind, net, pool, per_step=True, meta_steps=2)[1]
    a, b = per_tensor.init_step_sizes(params), per_step.init_step_sizes(params)
    assert torch.equal(per_tensor.objective(params, batch, a), per_step.objective(params, batch, b))
    sa, sb = per_tensor.outer_grads(params, a, {}, batch)[1], per_step.outer_grads(params, b, {}, batch)[1]
    for key, v in sa.items():
        summed = sum(g for k, g in sb.items() if _level_and_tensor(k) == _level_and_tensor(key))
        assert float(v) == pytest.approx(float(summed), rel=1e-10, abs=1e-14), key


def test_per_step_sizes_need_learned_sizes_and_the_trajectory_length():
    net, _, _ = setup()
    with pytest.raises(FewtaskError, match="^--per-step-step-sizes needs --learn-step-sizes") as err:
        OML(net, per_step_step_sizes=True, online_steps=6)
    assert "\n" not in str(err.value)
    with pytest.raises(FewtaskError, match="need the trajectory's online steps"):
        MALTMLContinual(net, learn_step_sizes=True, per_step_step_sizes=True)


def test_fixed_step_sizes_keep_the_learned_objective_at_its_start():
    net, params, pool = setup()
    batch = _problems(pool)
    fixed, learned = OML(net, lr=0.1), OML(net, lr=0.1, learn_step_sizes=True)
    assert fixed.init_step_sizes(params) == {}
    a = fixed.objective(params, batch)
    b = learned.objective(params, batch, learned.init_step_sizes(params))
    assert float(a) == pytest.approx(float(b), rel=1e-12)  # the same objective, the step as a tensor
