"""Shared tiny problems for the stabilizer tests: a float64 MLP on sinusoid families, a
float64 conv4 on random 3-way images, digests of gradients and checks against central
differences and the plain-loop reference."""

from __future__ import annotations

import dataclasses
import hashlib

import torch

from fewtask_data import EpisodeShape, FamilyBatch
from fewtask_data.sources.sinusoid import sample_batch, step_generator
from trainer.algorithms import batch_parts, make_algorithm
from trainer.models import MLP, build_model

SHAPE = EpisodeShape(ways=1, shots=3, queries=3, val=4, meta_tasks=2, goal_tasks=2)
HP = dict(alpha=0.03, beta=0.1, gamma=0.05, task_steps=2, meta_steps=2, goal_steps=2)


def mlp_case(seed: int = 0):
    torch.manual_seed(seed)
    model = MLP(1, (8, 8), 1).double()
    batch = sample_batch(step_generator(seed, 0), 2, SHAPE, dtype=torch.float64)
    return model, batch, {k: v.detach() for k, v in model.named_parameters()}


def image_batch(seed: int, ways: int = 3) -> FamilyBatch:
    """2 families of random 16x16 images, 3-way: L = 2 meta tasks, 1 goal task, K = Q = V = 2."""
    g = torch.Generator().manual_seed(seed)
    n = 4
    mx = torch.rand(2, 2, ways * n, 1, 16, 16, generator=g, dtype=torch.float64)
    gx = torch.rand(2, 1, ways * n, 1, 16, 16, generator=g, dtype=torch.float64)
    y = torch.arange(ways).repeat(n)
    shape = EpisodeShape(ways=ways, shots=2, queries=2, val=2, meta_tasks=2, goal_tasks=1)
    return FamilyBatch(meta_x=mx, meta_y=y.expand(2, 2, -1).clone(), goal_x=gx, goal_y=y.expand(2, 1, -1).clone(),
                       shape=shape, families=["a", "b"])  # fmt: skip


def conv_case(seed: int = 0, **model_kw):
    torch.manual_seed(seed)
    model = build_model("conv4", ways=3, in_channels=1, image_size=16, hidden=2, **model_kw).double()
    return model, image_batch(seed + 1), {k: v.detach() for k, v in model.named_parameters()}


def digest(tensors: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(tensors[k].detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def rel_err(a: dict, b: dict) -> float:
    num = sum(((a[k] - b[k]) ** 2).sum() for k in a) ** 0.5
    den = sum((b[k] ** 2).sum() for k in b) ** 0.5
    return float(num / max(den, 1e-300))


def check_gradients(algo, params, sizes, batch, directions: int = 2, seed: int = 0, eps_list=(1e-6,)) -> dict:
    """The algorithm's outer gradients equal its plain-loop reference and central differences
    along random directions (of the parameters, and of the step sizes when learned). ReLU and
    max-pool make a conv net's objective piecewise smooth: with several ``eps_list`` values
    one whose interval holds no kink must agree."""
    ref = dataclasses.replace(algo, impl="loop")
    ref.set_outer_step(algo._outer_step)
    g1, s1, m1 = algo.outer_grads(params, sizes, {}, batch)
    g2, s2, m2 = ref.outer_grads(params, sizes, {}, batch)
    assert rel_err(g1, g2) < 1e-6 and (not s1 or rel_err(s1, s2) < 1e-6)
    assert abs(float(m1["loss"]) - float(m2["loss"])) <= 1e-10 * abs(float(m2["loss"]))
    parts = batch_parts(batch)
    gen = torch.Generator().manual_seed(seed)

    def f(p, s):
        return float(algo.objective(p, s, {}, parts)[0])

    for _ in range(directions):
        vp = {k: torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in params.items()}
        vs = {k: torch.randn(v.shape, generator=gen, dtype=v.dtype) if s1 else torch.zeros_like(v) for k, v in sizes.items()}
        analytic = sum(float((g1[k] * vp[k]).sum()) for k in params) + sum(float((s1[k] * vs[k]).sum()) for k in s1)
        fds = []
        for eps in eps_list:
            plus = f({k: params[k] + eps * vp[k] for k in params}, {k: sizes[k] + eps * vs[k] for k in sizes})
            minus = f({k: params[k] - eps * vp[k] for k in params}, {k: sizes[k] - eps * vs[k] for k in sizes})
            fds.append((plus - minus) / (2 * eps))
        tol = 1e-6 if len(eps_list) == 1 else 1e-5  # tiny eps: more rounding error
        assert any(abs(fd - analytic) <= tol * max(abs(fd), 1e-3) for fd in fds), (fds, analytic)
    return g1


def build(name: str, model, **kw):
    return make_algorithm(name, model, **{**HP, **kw})
