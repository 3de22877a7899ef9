"""Gradient correctness of MALTML (orders 1-3) and MAML: finite differences, the
plain-loop reference, and explicitly detached versions. Tiny MLP, float64."""

from __future__ import annotations

import warnings

import pytest
import torch

from fewtask_data import EpisodeShape
from fewtask_data.sources.sinusoid import sample_batch, step_generator
from trainer.algorithms import batch_parts, make_algorithm
from trainer.core import functional as fn
from trainer.core.step_sizes import level_lrs
from trainer.models import MLP

torch.set_num_threads(1)

SHAPE = EpisodeShape(ways=1, shots=3, queries=3, val=4, meta_tasks=2, goal_tasks=2)
HP = dict(alpha=0.03, beta=0.1, gamma=0.05, task_steps=2, meta_steps=2, goal_steps=1)


def setup(seed: int = 0):
    torch.manual_seed(seed)
    model = MLP(1, (8, 8), 1).double()
    batch = sample_batch(step_generator(seed, 0), 2, SHAPE, dtype=torch.float64)
    params = {k: v.detach() for k, v in model.named_parameters()}
    return model, batch, params


def rel_err(a: dict, b: dict) -> float:
    num = sum(((a[k] - b[k]) ** 2).sum() for k in a) ** 0.5
    den = sum((b[k] ** 2).sum() for k in b) ** 0.5
    return float(num / den)


@pytest.mark.parametrize("name", ["maltml", "maml"])
@pytest.mark.parametrize("learn", [False, True])
def test_exact_gradient_matches_central_differences(name, learn):
    model, batch, params = setup()
    algo = make_algorithm(name, model, order=3, learn_step_sizes=learn, **HP)
    sizes = algo.init_step_sizes(params)
    parts = batch_parts(batch)
    grads, sgrads, _ = algo.outer_grads(params, sizes, {}, batch)

    def f(p, s):
        return float(algo.objective(p, s, {}, parts)[0])

    gen = torch.Generator().manual_seed(1)
    eps = 1e-6
    for _ in range(3):  # directional derivatives along random directions
        vp = {k: torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in params.items()}
        vs = {k: torch.randn(v.shape, generator=gen, dtype=v.dtype) if learn else torch.zeros_like(v) for k, v in sizes.items()}
        plus = f({k: params[k] + eps * vp[k] for k in params}, {k: sizes[k] + eps * vs[k] for k in sizes})
        minus = f({k: params[k] - eps * vp[k] for k in params}, {k: sizes[k] - eps * vs[k] for k in sizes})
        fd = (plus - minus) / (2 * eps)
        analytic = sum(float((grads[k] * vp[k]).sum()) for k in params)
        analytic += sum(float((sgrads[k] * vs[k]).sum()) for k in sgrads)
        assert abs(fd - analytic) <= 1e-6 * max(abs(fd), 1e-3), (fd, analytic)


@pytest.mark.parametrize("name", ["maltml", "maml"])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_vmap_matches_plain_loop_reference(name, order):
    model, batch, params = setup(1)
    fast = make_algorithm(name, model, order=order, learn_step_sizes=True, **HP)
    ref = make_algorithm(name, model, order=order, learn_step_sizes=True, impl="loop", **HP)
    sizes = fast.init_step_sizes(params)
    g1, s1, m1 = fast.outer_grads(params, sizes, {}, batch)
    g2, s2, m2 = ref.outer_grads(params, sizes, {}, batch)
    assert rel_err(g1, g2) < 1e-6
    assert rel_err(s1, s2) < 1e-6
    assert float(m1["loss"]) == pytest.approx(float(m2["loss"]), rel=1e-10)


def test_orders_differ():
    """The settings must matter: orders 1, 2, 3 give different gradients here."""
    model, batch, params = setup(2)
    grads = []
    for order in (1, 2, 3):
        algo = make_algorithm("maltml", model, order=order, **HP)
        grads.append(algo.outer_grads(params, algo.init_step_sizes(params), {}, batch)[0])
    assert rel_err(grads[0], grads[1]) > 1e-3 and rel_err(grads[1], grads[2]) > 1e-3


def _sgd(p, g, lr):
    return {k: p[k] - lr * g[k] for k in p}


def _explicit_maltml(model, params, parts, order):
    """MALTML written out by hand, with explicit .detach() where the order says."""
    forward = fn.make_forward(model)
    msx, msy, mqx, mqy, gsx, gsy, gvx, gvy = parts
    a, b, g = HP["alpha"], HP["beta"], HP["gamma"]

    def loss(p, x, y):
        return ((forward(p, {}, x) - y) ** 2).mean()

    def grad_of(value, p, keep_graph):
        gs = torch.autograd.grad(value, list(p.values()), create_graph=keep_graph, retain_graph=True)
        return {k: (v if keep_graph else v.detach()) for k, v in zip(p, gs)}

    theta = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    total = []
    for f in range(msx.shape[0]):
        phi = theta
        for _ in range(HP["meta_steps"]):
            qs = []
            for t in range(msx.shape[1]):
                fast = phi
                for _ in range(HP["task_steps"]):
                    fast = _sgd(fast, grad_of(loss(fast, msx[f, t], msy[f, t]), fast, order == 3), a)
                qs.append(loss(fast, mqx[f, t], mqy[f, t]))
            phi = _sgd(phi, grad_of(torch.stack(qs).sum(), phi, order >= 2), b)  # Eq. 2 sums the L task losses
        for c in range(gsx.shape[1]):
            fast = phi
            for _ in range(HP["goal_steps"]):
                fast = _sgd(fast, grad_of(loss(fast, gsx[f, c], gsy[f, c]), fast, order >= 2), g)
            total.append(loss(fast, gvx[f, c], gvy[f, c]))
    out = torch.autograd.grad(torch.stack(total).mean(), list(theta.values()))
    return dict(zip(theta, out))


@pytest.mark.parametrize("order", [1, 2, 3])
def test_maltml_orders_equal_explicitly_detached_versions(order):
    model, batch, params = setup(3)
    algo = make_algorithm("maltml", model, order=order, **HP)
    grads = algo.outer_grads(params, algo.init_step_sizes(params), {}, batch)[0]
    assert rel_err(grads, _explicit_maltml(model, params, batch_parts(batch), order)) < 1e-9


def test_order_one_is_the_gradient_at_the_adapted_parameters():
    """Fully first order: the outer gradient is the validation gradient at the end point."""
    model, batch, params = setup(4)
    algo = make_algorithm("maltml", model, order=1, **HP)
    grads = algo.outer_grads(params, algo.init_step_sizes(params), {}, batch)[0]
    forward = fn.make_forward(model)
    lrs = {lv: level_lrs(algo.init_step_sizes(params), lv) for lv in ("alpha", "beta", "gamma")}
    msx, msy, mqx, mqy, gsx, gsy, gvx, gvy = batch_parts(batch)
    expected = {k: torch.zeros_like(v) for k, v in params.items()}
    n = msx.shape[0] * gsx.shape[1]
    for f in range(msx.shape[0]):
        theta = fn.meta_adapt(forward, params, {}, (msx[f], msy[f]), (mqx[f], mqy[f]), lrs["alpha"], lrs["beta"],
                              HP["task_steps"], HP["meta_steps"], None, True, True)  # fmt: skip
        for c in range(gsx.shape[1]):
            end = {k: v.detach() for k, v in fn.adapt(forward, theta, {}, gsx[f, c], gsy[f, c], lrs["gamma"], 1).items()}
            g = torch.func.grad(lambda p: fn.loss_on(forward, p, {}, gvx[f, c], gvy[f, c]))(end)
            expected = {k: expected[k] + g[k] / n for k in expected}
    assert rel_err(grads, expected) < 1e-9


@pytest.mark.parametrize("order", [1, 3])
def test_maml_orders_equal_explicitly_detached_versions(order):
    model, batch, params = setup(5)
    algo = make_algorithm("maml", model, order=order, alpha=HP["alpha"], task_steps=2)
    grads = algo.outer_grads(params, algo.init_step_sizes(params), {}, batch)[0]
    forward = fn.make_forward(model)
    theta = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    losses = []
    for sx, sy, tx, ty in (batch_parts(batch)[0:4], batch_parts(batch)[4:8]):
        for f in range(sx.shape[0]):
            for t in range(sx.shape[1]):
                fast = theta
                for _ in range(2):
                    l = ((forward(fast, {}, sx[f, t]) - sy[f, t]) ** 2).mean()
                    gs = torch.autograd.grad(l, list(fast.values()), create_graph=order > 1, retain_graph=True)
                    fast = _sgd(fast, {k: (v if order > 1 else v.detach()) for k, v in zip(fast, gs)}, HP["alpha"])
                losses.append(((forward(fast, {}, tx[f, t]) - ty[f, t]) ** 2).mean())
    expected = dict(zip(theta, torch.autograd.grad(torch.stack(losses).mean(), list(theta.values()))))
    assert rel_err(grads, expected) < 1e-9


def test_anil_adapts_only_the_head_and_boil_only_the_body():
    model, batch, params = setup(6)
    forward = fn.make_forward(model)
    x, y = batch.goal_support()
    lrs = {k: torch.tensor(0.1, dtype=torch.float64) for k in params}
    for name, moved in (("anil", {"head.weight", "head.bias"}), ("boil", set(params) - {"head.weight", "head.bias"})):
        algo = make_algorithm(name, model)
        fast = fn.adapt(forward, params, {}, x[0, 0], y[0, 0], lrs, 1, algo.names)
        assert {k for k in params if not torch.equal(fast[k], params[k])} == moved


@pytest.mark.slow
@pytest.mark.parametrize("name", ["maltml", "reptile"])
def test_traced_step_matches_eager(name):
    """Dynamo captures the nested torch.func transforms as one graph with the eager
    gradients. The aot_eager backend checks the capture in seconds; inductor's code
    generation (the default `compile=True`) is exercised by scripts/bench_trainer.py."""
    model, batch, params = setup(7)
    learn = name != "reptile"
    eager = make_algorithm(name, model, learn_step_sizes=learn, **HP)
    traced = make_algorithm(name, model, learn_step_sizes=learn, compile="aot_eager", **HP)
    sizes = eager.init_step_sizes(params)
    g1, s1, m1 = eager.outer_grads(params, sizes, {}, batch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a failed compile (eager fallback) would warn
        for _ in range(2):  # the second call runs the cached graph
            g2, s2, m2 = traced.outer_grads(params, sizes, {}, batch)
    assert rel_err(g2, g1) < 1e-9 and (not learn or rel_err(s2, s1) < 1e-9)
    assert float(m2["loss"]) == pytest.approx(float(m1["loss"]), rel=1e-9)


@pytest.mark.parametrize("name", ["maltml", "maml"])
def test_per_step_step_sizes_gradients_match_differences_and_the_plain_loop(name):
    """MAML++'s per-layer per-step step sizes: every (level, step, tensor) its own learned
    size; third-order gradients equal central differences and the plain-loop reference."""
    model, batch, params = setup(3)
    hp = dict(HP, goal_steps=2)
    fast = make_algorithm(name, model, order=3, learn_step_sizes=True, per_step_step_sizes=True, **hp)
    ref = make_algorithm(name, model, order=3, learn_step_sizes=True, per_step_step_sizes=True, impl="loop", **hp)
    sizes = fast.init_step_sizes(params)
    assert {k.partition(":")[0] for k in sizes} == {"alpha", "alpha@1", "beta", "beta@1", "gamma", "gamma@1"}
    gen = torch.Generator().manual_seed(5)
    sizes = {k: v + 0.3 * torch.randn((), generator=gen, dtype=v.dtype) for k, v in sizes.items()}  # steps differ
    g1, s1, _ = fast.outer_grads(params, sizes, {}, batch)
    g2, s2, _ = ref.outer_grads(params, sizes, {}, batch)
    assert rel_err(g1, g2) < 1e-6 and rel_err(s1, s2) < 1e-6
    parts, eps = batch_parts(batch), 1e-6
    for _ in range(2):
        vs = {k: torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in sizes.items()}
        plus = float(fast.objective(params, {k: sizes[k] + eps * vs[k] for k in sizes}, {}, parts)[0])
        minus = float(fast.objective(params, {k: sizes[k] - eps * vs[k] for k in sizes}, {}, parts)[0])
        analytic = sum(float((s1[k] * vs[k]).sum()) for k in s1)
        assert abs((plus - minus) / (2 * eps) - analytic) <= 1e-6 * max(abs(analytic), 1e-3)
    assert any(float(s1[k].abs()) > 0 for k in s1 if "@1:" in k)  # the later steps' sizes get gradients


def test_equal_per_step_sizes_give_the_per_layer_objective_exactly():
    model, batch, params = setup(4)
    one = make_algorithm("maltml", model, **HP)
    each = make_algorithm("maltml", model, per_step_step_sizes=True, **HP)
    parts = batch_parts(batch)
    a = one.objective(params, one.init_step_sizes(params), {}, parts)[0]
    b = each.objective(params, each.init_step_sizes(params), {}, parts)[0]
    assert torch.equal(a, b)


@pytest.mark.parametrize("per_step", [False, True])
def test_fo_maltml_learns_step_sizes_by_the_first_order_hypergradient(per_step):
    """FO-MALTML's step-size gradients equal fully first-order MALTML's (order 1), on the
    torch.func path and the plain loop; its parameters still take the Reptile pseudo-gradient;
    alpha acts only inside the held-constant meta gradient, so its gradient is zero."""
    model, batch, params = setup(6)
    hp = dict(HP, goal_steps=2, per_step_step_sizes=per_step)
    fo = make_algorithm("fo-maltml", model, learn_step_sizes=True, **hp)
    exact = make_algorithm("maltml", model, order=1, learn_step_sizes=True, **hp)
    loop = make_algorithm("maltml", model, order=1, learn_step_sizes=True, impl="loop", **hp)
    gen = torch.Generator().manual_seed(2)
    sizes = {k: v + 0.3 * torch.randn((), generator=gen, dtype=v.dtype) for k, v in fo.init_step_sizes(params).items()}
    pseudo, s_fo, _ = fo.outer_grads(params, sizes, {}, batch)
    _, s_exact, _ = exact.outer_grads(params, sizes, {}, batch)
    _, s_loop, _ = loop.outer_grads(params, sizes, {}, batch)
    assert s_fo.keys() == sizes.keys()
    assert rel_err(s_fo, s_exact) < 1e-9 and rel_err(s_fo, s_loop) < 1e-9
    assert all(float(v.abs()) == 0 for k, v in s_fo.items() if k.startswith("alpha"))
    assert all(float(v.abs()) > 0 for k, v in s_fo.items() if k.startswith(("beta", "gamma")))
    fixed = make_algorithm("fo-maltml", model, **hp)
    pseudo_fixed, none, _ = fixed.outer_grads(params, sizes, {}, batch)
    assert none == {} and all(torch.equal(pseudo[k], pseudo_fixed[k]) for k in params)


def test_fo_maltml_gamma_hypergradient_is_exact_for_one_goal_step():
    """With one goal step the goal gradient does not depend on gamma, so the first-order
    hypergradient w.r.t. gamma is the exact derivative: central differences agree."""
    model, batch, params = setup(7)
    fo = make_algorithm("fo-maltml", model, learn_step_sizes=True, **HP)
    sizes = fo.init_step_sizes(params)
    _, s_fo, _ = fo.outer_grads(params, sizes, {}, batch)
    parts, eps = batch_parts(batch), 1e-6

    def loss(s):
        return float(fo.target_params(params, s, {}, parts)[1])

    for key in (k for k in sizes if k.startswith("gamma")):
        plus, minus = ({**sizes, key: sizes[key] + d} for d in (eps, -eps))
        fd = (loss(plus) - loss(minus)) / (2 * eps)
        assert abs(fd - float(s_fo[key])) <= 1e-6 * max(abs(fd), 1e-3), (key, fd, float(s_fo[key]))
