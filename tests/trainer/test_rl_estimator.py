"""The meta-gradient estimators against closed forms, on a one-step Gaussian bandit.

Policy N(mu, sigma^2) over one action (sigma fixed), reward c - (a - g)^2, one trajectory
per level, no baseline. The expected return is J(mu) = c - (mu - g)^2 - sigma^2, and the
meta-objectives of the *sampled* updates (MAML: E_a[J(mu')], mu' = mu + alpha r(a)
d/dmu log pi(a); MALTML: the same through a meta step over a meta task and a goal step)
are integrals over the sampled actions whose integrands are polynomials in the Gaussian
noise: Gauss-Hermite quadrature (inner gradients written out by hand, actions
reparameterized) gives them exactly, and autograd their first, second and third
derivatives. The estimator's derivatives, averaged over many independent samples in
groups, must match within Monte Carlo error (z-scores from the spread of the group
means), and the biased estimator (sampling dependence dropped) must not.

Lower derivative orders and Eq. 2's mean follow the same way: a first-order step holds its
direction's parameter at its value (``detach``) while the samples stay functions of mu
(their distribution still depends on it), and the mean divides the meta step by L. On its
own samples the biased estimator is exactly the derivative of that written-out update with
the samples fixed, which gives a deterministic per-sample check of every order.

(With a learned log std the sampled updates put polynomials of the noise into an
exponent, and the score-function estimates of these objectives have infinite variance.)
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from fewtask_data import FewtaskError
from trainer.algorithms.base import order_flags
from trainer.domains.rl import methods
from trainer.domains.rl.env import QuadraticBandit
from trainer.domains.rl.methods import RLSettings, Sampler
from trainer.domains.rl.policy import ConstantGaussian

MU, LOG_STD, OFFSET = 0.9, 0.0, 1.0
ALPHA, BETA, GAMMA = 0.05, 0.05, 0.05
G_MAML, G_META, G_GOAL = 1.1, 1.0, 1.1
GROUPS, PER_GROUP = 40, 2500
Z_MAX = 4.5  # per case, over the three orders
SIGMA = math.exp(LOG_STD)
PRECISION = math.exp(-2 * LOG_STD)


def reward(a, g):
    return OFFSET - (a - g) ** 2


def expected_return(mu, g):
    return OFFSET - (mu - g) ** 2 - SIGMA**2


def pg_step(mu, a, g, lr, first_order=False):
    """mu + lr r(a) d/dmu log pi_mu(a): one sample's vanilla policy-gradient step (first
    order: the direction's mu held at its value)."""
    return mu + lr * reward(a, g) * (a - (mu.detach() if first_order else mu)) * PRECISION


def meta_finetuned(mu, a1, a2, flags, reduction="sum"):
    """V_beta's one meta step over the L meta tasks on the last axis (support samples a1,
    query samples a2, held fixed): beta times the sum (or mean) of their query directions."""
    t1 = pg_step(mu, a1, G_META, ALPHA, flags.task)
    dt1 = 1.0 if flags.task else 1 - ALPHA * reward(a1, G_META) * PRECISION  # d t1 / d mu, samples fixed
    if flags.meta:
        t1 = pg_step(mu.detach(), a1, G_META, ALPHA, True)
    directions = reward(a2, G_META) * dt1 * (a2 - t1) * PRECISION
    return mu + BETA * directions.sum(-1, keepdim=True) / (a1.shape[-1] if reduction == "mean" else 1)


def goal_finetuned(mu, a1, a2, a3, flags, reduction="sum"):
    """The goal step (sample a3) from the meta-finetuned policy."""
    tm = meta_finetuned(mu, a1, a2, flags, reduction)
    base = meta_finetuned(mu.detach(), a1, a2, flags, reduction) if flags.goal else tm
    return tm + GAMMA * reward(a3, G_GOAL) * (a3 - base) * PRECISION


def nodes(n):
    x, w = np.polynomial.hermite.hermgauss(n)
    return torch.tensor(x * math.sqrt(2)), torch.tensor(w / math.sqrt(math.pi))


def maml_objective(mu, n=20):
    x, w = nodes(n)
    a = mu + SIGMA * x
    return (w * expected_return(pg_step(mu, a, G_MAML, ALPHA), G_MAML)).sum()


def maltml_objective(mu, n=26, order=3, tasks=1, reduction="sum", goal_steps=1):
    """E[J] after V_beta on ``tasks`` meta tasks and ``goal_steps`` (0 or 1) goal steps, on a
    grid of n nodes per sampled action (2 per meta task, 1 per goal step)."""
    flags, (x, w) = order_flags(order), nodes(n)
    dims = 2 * tasks + goal_steps
    xs = torch.meshgrid(*[x] * dims, indexing="ij")
    weight = torch.ones((), dtype=w.dtype)
    for _ in range(dims):
        weight = weight[..., None] * w
    a1 = mu + SIGMA * torch.stack(xs[:tasks], -1)  # support samples of the meta tasks, from theta
    a2 = pg_step(mu, a1, G_META, ALPHA, flags.task) + SIGMA * torch.stack(xs[tasks : 2 * tasks], -1)  # query samples
    final = meta_finetuned(mu, a1, a2, flags, reduction)
    if goal_steps:
        a3 = final + SIGMA * xs[-1][..., None]  # goal-task support sample, from the meta-finetuned policy
        final = goal_finetuned(mu, a1, a2, a3, flags, reduction)
    return (weight * expected_return(final[..., 0], G_GOAL)).sum()


def derivatives(value, mu):
    """The 1st/2nd/3rd derivatives of ``value`` in ``mu``, elementwise where ``mu`` holds
    independent copies (groups, families) whose values are summed."""
    out = []
    for k in range(3):
        value = torch.autograd.grad(value.sum(), mu, create_graph=k < 2)[0]
        out.append(value.detach())
    return out


def analytic_derivatives(objective):
    mu = torch.tensor(MU, dtype=torch.float64, requires_grad=True)
    return derivatives(objective(mu), mu)


def bandit_sampler(estimator, **levels):
    settings = RLSettings(trajectories=1, alpha=ALPHA, beta=BETA, gamma=GAMMA, baseline="none", center=False,
                          estimator=estimator, discount=1.0, **levels)  # fmt: skip
    return Sampler(lambda goals, n: QuadraticBandit(goals, n, OFFSET), ConstantGaussian(1), settings)


def bandit_params(copies):
    mu = torch.full((copies, 1), MU, dtype=torch.float64, requires_grad=True)
    return mu, {"mean": mu, "log_std": torch.full((copies, 1), LOG_STD, dtype=torch.float64)}


def estimated_derivatives(run, estimator, seed=0, **levels):
    """Per group, the estimator's 1st/2nd/3rd derivatives of its objective, [GROUPS] each.
    Every group has its own parameter copy, so one backward pass gives all groups.
    ``levels``: RLSettings' order, meta_reduction, goal_steps."""
    torch.manual_seed(seed)
    mu, params = bandit_params(GROUPS)
    objective = run(bandit_sampler(estimator, **levels), params).mean(-1)
    return [g[:, 0] for g in derivatives(objective, mu)]


def run_maml(sampler, params):
    goals = torch.full((GROUPS, PER_GROUP, 1), G_MAML, dtype=torch.float64)
    return methods.maml(sampler, params, goals).objective


def run_maltml(sampler, params, tasks=1):
    # families are the (group, replicate) pairs: ``tasks`` meta tasks and one goal task each
    meta = torch.full((GROUPS, PER_GROUP, tasks, 1), G_META, dtype=torch.float64)
    goal = torch.full((GROUPS, PER_GROUP, 1, 1), G_GOAL, dtype=torch.float64)
    return methods.maltml(sampler, params, meta, goal).objective.squeeze(-1)


def z_scores(estimates, targets):
    return [((e.mean() - t).abs() / (e.std() / math.sqrt(e.numel()))).item() for e, t in zip(estimates, targets)]


def test_quadrature_is_exact():
    mu = torch.tensor(MU, dtype=torch.float64)
    assert maml_objective(mu, 20).item() == pytest.approx(maml_objective(mu, 40).item(), abs=1e-12)
    assert maltml_objective(mu, 26).item() == pytest.approx(maltml_objective(mu, 32).item(), abs=1e-10)


CASES = [("maml", run_maml, maml_objective), ("maltml", run_maltml, maltml_objective)]


@pytest.mark.parametrize("name,run,objective", CASES)
def test_exact_estimator_matches_analytic_derivatives(name, run, objective):
    z = z_scores(estimated_derivatives(run, "exact"), analytic_derivatives(objective))
    assert max(z) < Z_MAX, f"{name}: z-scores of orders 1-3 {z}"


@pytest.mark.parametrize("name,run,objective", CASES)
def test_biased_estimator_fails(name, run, objective):
    z = z_scores(estimated_derivatives(run, "fixed"), analytic_derivatives(objective))
    assert max(z[:2]) > 2 * Z_MAX, f"{name}: the biased estimator should miss, z-scores {z}"


# (RLSettings keywords, meta tasks L, goal steps, quadrature nodes): first-order task steps inside
# V_beta (order 2), every level first order (order 1), and Eq. 2's mean over L = 2 tasks (no
# goal step: 4 sampled actions, whose lower-degree integrand 12 nodes integrate exactly).
LEVEL_CASES = [({"order": 2}, 1, 1, 26), ({"order": 1}, 1, 1, 26), ({"meta_reduction": "mean"}, 2, 0, 12)]


def level_objective(levels, tasks, goal_steps, n):
    order, reduction = levels.get("order", 3), levels.get("meta_reduction", "sum")
    return lambda mu, n=n: maltml_objective(mu, n, order, tasks, reduction, goal_steps)


@pytest.mark.parametrize("levels,tasks,goal_steps,n", LEVEL_CASES)
def test_level_quadratures_are_exact(levels, tasks, goal_steps, n):
    objective = level_objective(levels, tasks, goal_steps, n)
    more = analytic_derivatives(lambda mu: objective(mu, n + 6))
    for got, want in zip(analytic_derivatives(objective), more):
        assert got.item() == pytest.approx(want.item(), abs=1e-10)


@pytest.mark.parametrize("levels,tasks,goal_steps,n", LEVEL_CASES)
def test_exact_estimator_matches_the_closed_form_of_each_order_and_reduction(levels, tasks, goal_steps, n):
    run = lambda sampler, params: run_maltml(sampler, params, tasks)  # noqa: E731
    z = z_scores(estimated_derivatives(run, "exact", goal_steps=goal_steps, **levels),
                 analytic_derivatives(level_objective(levels, tasks, goal_steps, n)))  # fmt: skip
    assert max(z) < Z_MAX, f"{levels}: z-scores of orders 1-3 {z}"


@pytest.mark.parametrize("kind,order,reduction", [
    ("maltml", 3, "sum"), ("maltml", 2, "sum"), ("maltml", 1, "sum"), ("maltml", 3, "mean"), ("maltml", 1, "mean"),
    ("maml", 3, "sum"), ("maml", 1, "sum"),
])  # fmt: skip
def test_on_its_own_samples_the_fixed_estimator_differentiates_the_written_out_update(kind, order, reduction):
    """Per sample, to rounding: the biased estimator's derivatives are those of
    box(log pi_final(a_outer)) r(a_outer), with the final policy written out (`pg_step`,
    `goal_finetuned`) with this order's detaches and the samples the sampler drew held fixed."""
    families, tasks = 50, 3
    torch.manual_seed(1)
    mu, params = bandit_params(families)
    sampler = bandit_sampler("fixed", order=order, meta_reduction=reduction)
    if kind == "maml":
        goals = torch.full((families, 1), G_MAML, dtype=torch.float64)
        got = derivatives(methods.maml(sampler, params, goals).objective, mu)
    else:
        meta = torch.full((families, tasks, 1), G_META, dtype=torch.float64)
        goal = torch.full((families, 1, 1), G_GOAL, dtype=torch.float64)
        got = derivatives(methods.maltml(sampler, params, meta, goal).objective, mu)
    actions = [d.traj.actions[..., 0, 0, 0] for d in sampler.draws]  # [families, tasks] or [families, 1] each
    flags, ref_mu = order_flags(order), torch.full((families, 1), MU, dtype=torch.float64, requires_grad=True)
    if kind == "maml":
        final, g = pg_step(ref_mu, actions[0][:, None], G_MAML, ALPHA, flags.goal), G_MAML
    else:
        final, g = goal_finetuned(ref_mu, *actions[:3], flags, reduction), G_GOAL
    outer = actions[-1].reshape(families, 1)
    logp = -0.5 * (outer - final) ** 2 * PRECISION
    want = derivatives(torch.exp(logp - logp.detach()) * reward(outer, g), ref_mu)
    for k, (a, b) in enumerate(zip(got, want)):
        torch.testing.assert_close(a.reshape(b.shape), b, rtol=1e-9, atol=1e-12, msg=f"derivative {k + 1}")


def test_first_order_means_order_1_and_settings_check_their_levels():
    assert RLSettings(first_order=True).order == 1 and RLSettings().levels.flags == order_flags(3)
    assert replace(RLSettings(first_order=True), trajectories=3).order == 1  # as `navigation` copies them
    assert RLSettings(order=2).levels.flags == (True, False, False)
    for bad, message in [({"order": 4}, "order must be 1, 2 or 3"), ({"meta_reduction": "median"}, "sum or mean"),
                         ({"beta": 0.0}, "beta must be > 0"), ({"goal_steps": -1}, "goal-steps must be >= 0"),
                         ({"first_order": True, "order": 2}, "means order 1")]:  # fmt: skip
        with pytest.raises(FewtaskError, match=message):
            RLSettings(**bad)


if __name__ == "__main__":  # the z-scores and values quoted in docs/navigation.md
    for name, run, objective in CASES:
        target = analytic_derivatives(objective)
        print(f"{name}: analytic d1..d3 {[round(float(t), 4) for t in target]}")
        for estimator in ("exact", "dice", "fixed"):
            est = estimated_derivatives(run, estimator)
            means = [f"{float(e.mean()):.4f} ± {float(e.std() / math.sqrt(e.numel())):.4f}" for e in est]
            print(f"  {estimator:>5}: {means}  z {[round(z, 1) for z in z_scores(est, target)]}")
