"""CKA, SVCCA and PWCCA (trainer/evaluation/similarity.py) against their defining
properties and against slow, obviously correct references written from the papers'
formulas with n x n Gram matrices and covariance eigenproblems, in float64."""

import pytest
import torch

from fewtask_data import FewtaskError
from trainer.evaluation import similarity as sim

torch.set_num_threads(1)


def rand(n, p, seed):
    return torch.randn(n, p, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def orthogonal(p, seed):
    q, _ = torch.linalg.qr(rand(p, p, seed))
    return q


# -- references ---------------------------------------------------------------
def ref_cka(x, y):
    """Kornblith et al. eq. (1)-(3): HSIC = tr(K H L H) / (n-1)^2 with Gram matrices."""
    n = x.shape[0]
    h = torch.eye(n, dtype=torch.float64) - torch.ones(n, n, dtype=torch.float64) / n

    def hsic(k, l):
        return torch.trace(k @ h @ l @ h) / (n - 1) ** 2

    k, l = x @ x.T, y @ y.T
    return float(hsic(k, l) / torch.sqrt(hsic(k, k) * hsic(l, l)))


def u_centered(k):
    """Szekely & Rizzo's U-centering of a Gram matrix (diagonal zeroed first, and after)."""
    n = k.shape[0]
    k = k.clone()
    k.fill_diagonal_(0)
    rows, total = k.sum(1), k.sum()
    out = k - rows[:, None] / (n - 2) - rows[None, :] / (n - 2) + total / ((n - 1) * (n - 2))
    out.fill_diagonal_(0)
    return out


def ref_cka_debiased(x, y):
    """Debiased CKA through U-centered Gram matrices (Kornblith et al.'s appendix)."""
    kx, ky = u_centered(x @ x.T), u_centered(y @ y.T)
    return float((kx * ky).sum() / torch.sqrt((kx * kx).sum() * (ky * ky).sum()))


def ref_cca(x, y):
    """Textbook CCA: rho^2 are the eigenvalues of Sxx^-1 Sxy Syy^-1 Syx; x's canonical
    weight vectors are its eigenvectors. Returns (rho descending, unit-norm variates X a_i)."""
    x, y = x - x.mean(0), y - y.mean(0)
    sxx, syy, sxy = x.T @ x, y.T @ y, x.T @ y
    m = torch.linalg.solve(sxx, sxy) @ torch.linalg.solve(syy, sxy.T)
    vals, vecs = torch.linalg.eig(m)
    order = torch.argsort(vals.real, descending=True)[: min(x.shape[1], y.shape[1])]
    rho = vals.real[order].clamp(min=0).sqrt()
    h = x @ vecs.real[:, order]
    return rho, h / h.norm(dim=0)


def ref_svcca(x, y, variance=0.99):
    def top(z):
        z = z - z.mean(0)
        vals, vecs = torch.linalg.eigh(z.T @ z)
        vals, vecs = vals.flip(0), vecs.flip(1)
        k = int((torch.cumsum(vals, 0) / vals.sum() < variance).sum()) + 1
        return z @ vecs[:, :k]

    return float(ref_cca(top(x), top(y))[0].mean())


def ref_pwcca(x, y):
    rho, h = ref_cca(x, y)
    xc = x - x.mean(0)
    alpha = torch.tensor([sum(abs(float(h[:, i] @ xc[:, j])) for j in range(x.shape[1])) for i in range(h.shape[1])],
                         dtype=torch.float64)  # fmt: skip
    return float((alpha * rho).sum() / alpha.sum())


def correlated(n=60, p=12, q=9, seed=0):
    """Two representations sharing a few latent directions plus noise."""
    z = rand(n, 4, seed)
    return z @ rand(4, p, seed + 1) + 0.5 * rand(n, p, seed + 2), z @ rand(4, q, seed + 3) + 0.5 * rand(n, q, seed + 4)


# -- properties ----------------------------------------------------------------
@pytest.mark.parametrize("measure", sim.MEASURES)
def test_a_representation_is_identical_to_itself(measure):
    x = rand(80, 10, 1)
    assert sim.similarity(x, x, measure) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("measure", ("cka", "cka_debiased", "svcca"))
def test_invariant_to_orthogonal_maps_and_isotropic_scaling(measure):
    x, y = correlated()
    base = sim.similarity(x, y, measure)
    moved = sim.similarity(2.5 * x @ orthogonal(x.shape[1], 7), 0.3 * y @ orthogonal(y.shape[1], 8), measure)
    assert base < 0.99 and moved == pytest.approx(base, abs=1e-9)


def test_pwcca_is_invariant_in_its_compared_side():
    """PWCCA weights the reference side's neurons, so only the other side may rotate."""
    x, y = correlated()
    assert sim.pwcca(x, 4.0 * y @ orthogonal(y.shape[1], 9)) == pytest.approx(sim.pwcca(x, y), abs=1e-9)


def test_cka_is_not_invariant_to_invertible_linear_maps_but_cca_is():
    x, y = correlated()
    stretch = torch.diag(torch.logspace(-2, 2, y.shape[1], dtype=torch.float64)) @ orthogonal(y.shape[1], 3)
    assert abs(sim.cka(x, y @ stretch) - sim.cka(x, y)) > 0.05
    xc, yc = x - x.mean(0), y - y.mean(0)
    plain = sim.canonical(xc, yc)[0]
    assert torch.allclose(sim.canonical(xc, yc @ stretch)[0], plain, atol=1e-9)


def test_the_debiased_cka_removes_the_bias_of_wide_independent_features():
    x, y = rand(40, 400, 11), rand(40, 400, 12)
    assert sim.cka(x, y) > 0.5  # biased: many features over few examples look alike
    assert abs(sim.cka(x, y, debiased=True)) < 0.1


# -- against the references ------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cka_matches_the_gram_matrix_reference(seed):
    x, y = correlated(seed=10 * seed)
    x = x + 3.0  # uncentered inputs: the centering is part of what is checked
    assert sim.cka(x, y) == pytest.approx(ref_cka(x, y), abs=1e-10)
    assert sim.cka(x, y, debiased=True) == pytest.approx(ref_cka_debiased(x, y), abs=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cca_matches_the_covariance_eigenproblem_reference(seed):
    x, y = correlated(seed=10 * seed)
    x = x + 1.0
    xc, yc = x - x.mean(0), y - y.mean(0)
    rho, _ = sim.canonical(xc, yc)
    assert torch.allclose(rho, ref_cca(x, y)[0], atol=1e-8)
    assert sim.svcca(x, y) == pytest.approx(ref_svcca(x, y), abs=1e-8)
    assert sim.pwcca(x, y) == pytest.approx(ref_pwcca(x, y), abs=1e-8)


def test_unrelated_representations_score_low_and_related_ones_high():
    x, y = correlated(n=400)
    noise = rand(400, 9, 99)
    for measure in sim.MEASURES:
        assert sim.similarity(x, y, measure) > sim.similarity(x, noise, measure) + 0.2, measure


def test_bad_input_is_a_one_line_error():
    with pytest.raises(FewtaskError, match="same examples"):
        sim.cka(rand(10, 3, 0), rand(11, 3, 0))
    with pytest.raises(FewtaskError, match="at least 4 examples"):
        sim.cka(rand(3, 3, 0), rand(3, 3, 0), debiased=True)
    with pytest.raises(FewtaskError, match="choose from"):
        sim.similarity(rand(10, 3, 0), rand(10, 3, 0), "rsa")
