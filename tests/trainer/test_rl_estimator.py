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

(With a learned log std the sampled updates put polynomials of the noise into an
exponent, and the score-function estimates of these objectives have infinite variance.)
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

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


def pg_step(mu, a, g, lr):
    """mu + lr r(a) d/dmu log pi_mu(a): one sample's vanilla policy-gradient step."""
    return mu + lr * reward(a, g) * (a - mu) * PRECISION


def nodes(n):
    x, w = np.polynomial.hermite.hermgauss(n)
    return torch.tensor(x * math.sqrt(2)), torch.tensor(w / math.sqrt(math.pi))


def maml_objective(mu, n=20):
    x, w = nodes(n)
    a = mu + SIGMA * x
    return (w * expected_return(pg_step(mu, a, G_MAML, ALPHA), G_MAML)).sum()


def maltml_objective(mu, n=26):
    x, w = nodes(n)
    x1, x2, x3 = torch.meshgrid(x, x, x, indexing="ij")
    weight = w[:, None, None] * w[None, :, None] * w[None, None, :]
    a1 = mu + SIGMA * x1  # support sample of the meta task, from theta
    t1 = pg_step(mu, a1, G_META, ALPHA)
    a2 = t1 + SIGMA * x2  # query sample, from the adapted policy
    # meta step: mu + beta r(a2) d/dmu log pi_{t1(mu)}(a2), the samples held fixed
    dt1 = 1 - ALPHA * reward(a1, G_META) * PRECISION
    tm = mu + BETA * reward(a2, G_META) * dt1 * (a2 - t1) * PRECISION
    a3 = tm + SIGMA * x3  # goal-task support sample, from the meta-finetuned policy
    return (weight * expected_return(pg_step(tm, a3, G_GOAL, GAMMA), G_GOAL)).sum()


def analytic_derivatives(objective):
    mu = torch.tensor(MU, dtype=torch.float64, requires_grad=True)
    g1 = torch.autograd.grad(objective(mu), mu, create_graph=True)[0]
    g2 = torch.autograd.grad(g1, mu, create_graph=True)[0]
    g3 = torch.autograd.grad(g2, mu)[0]
    return [g.detach() for g in (g1, g2, g3)]


def estimated_derivatives(run, estimator, seed=0):
    """Per group, the estimator's 1st/2nd/3rd derivatives of its objective, [GROUPS] each.
    Every group has its own parameter copy, so one backward pass gives all groups."""
    torch.manual_seed(seed)
    mu = torch.full((GROUPS, 1), MU, dtype=torch.float64, requires_grad=True)
    params = {"mean": mu, "log_std": torch.full((GROUPS, 1), LOG_STD, dtype=torch.float64)}
    settings = RLSettings(trajectories=1, alpha=ALPHA, beta=BETA, gamma=GAMMA, baseline="none", center=False,
                          estimator=estimator, discount=1.0)  # fmt: skip
    sampler = Sampler(lambda goals, n: QuadraticBandit(goals, n, OFFSET), ConstantGaussian(1), settings)
    objective = run(sampler, params).mean(-1).sum()
    g1 = torch.autograd.grad(objective, mu, create_graph=True)[0]
    g2 = torch.autograd.grad(g1.sum(), mu, create_graph=True)[0]
    g3 = torch.autograd.grad(g2.sum(), mu)[0]
    return [g.detach()[:, 0] for g in (g1, g2, g3)]


def run_maml(sampler, params):
    goals = torch.full((GROUPS, PER_GROUP, 1), G_MAML, dtype=torch.float64)
    return methods.maml(sampler, params, goals).objective


def run_maltml(sampler, params):
    # families are the (group, replicate) pairs: one meta task and one goal task each
    meta = torch.full((GROUPS, PER_GROUP, 1, 1), G_META, dtype=torch.float64)
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


if __name__ == "__main__":  # the z-scores and values quoted in docs/navigation.md
    for name, run, objective in CASES:
        target = analytic_derivatives(objective)
        print(f"{name}: analytic d1..d3 {[round(float(t), 4) for t in target]}")
        for estimator in ("exact", "dice", "fixed"):
            est = estimated_derivatives(run, estimator)
            means = [f"{float(e.mean()):.4f} ± {float(e.std() / math.sqrt(e.numel())):.4f}" for e in est]
            print(f"  {estimator:>5}: {means}  z {[round(z, 1) for z in z_scores(est, target)]}")
