"""Representation similarity between two activations of the same inputs: linear CKA
(Kornblith et al. 2019; optionally the debiased estimator), SVCCA (Raghu et al. 2017)
and PWCCA (Morcos et al. 2018).

Every function takes ``x`` [n, p] and ``y`` [n, q]: row i of both is the same input (or
the same input position), columns are neurons. Computation is in float64 and in feature
space (p x q products, never an n x n Gram matrix), so 10,000 x 512 takes about a second
(scripts/bench_similarity.py). A measure of an all-constant representation is 0 / 0 and
comes back as NaN on purpose (the caller's summary counts it).
"""

from __future__ import annotations

import torch

from fewtask_data import FewtaskError

MEASURES = ("cka", "cka_debiased", "svcca", "pwcca")
SVCCA_VARIANCE = 0.99  # Raghu et al.: keep the top singular directions explaining 99% of the variance
RANK_TOL = 1e-10  # singular values below this fraction of the largest are numerical zeros (dead units)


def _pair(x: torch.Tensor, y: torch.Tensor, least: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Both as centered float64 [n, features]; a one-line error when they do not pair up."""
    if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
        raise FewtaskError(f"similarity needs two [examples, features] matrices over the same examples, got "
                           f"{tuple(x.shape)} and {tuple(y.shape)}")  # fmt: skip
    if x.shape[0] < least:
        raise FewtaskError(f"similarity needs at least {least} examples, got {x.shape[0]}; use more held-out inputs")
    x, y = x.double(), y.double()
    return x - x.mean(0), y - y.mean(0)


def _hsic_terms(x: torch.Tensor, y: torch.Tensor, debiased: bool) -> torch.Tensor:
    """HSIC of the linear kernels K = x x^T, L = y y^T of centered features, up to a factor
    that cancels in CKA. Biased: tr(K L) = ||y^T x||_F^2. Debiased: Song et al. (2012)'s
    unbiased estimator, the Gram matrices' sums written through the features."""
    cross = (y.T @ x).square().sum()
    if not debiased:
        return cross
    n = x.shape[0]
    dx, dy = x.square().sum(1), y.square().sum(1)  # diag(K), diag(L)
    k1, l1 = x @ x.sum(0) - dx, y @ y.sum(0) - dy  # K~ 1, L~ 1 (diagonals zeroed)
    trace = cross - dx @ dy  # tr(K~ L~)
    return (trace + k1.sum() * l1.sum() / ((n - 1) * (n - 2)) - 2 * (k1 @ l1) / (n - 2)) / (n * (n - 3))


def cka(x: torch.Tensor, y: torch.Tensor, debiased: bool = False) -> float:
    """Linear CKA: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)); with ``debiased`` the unbiased
    HSIC estimator (needs 4 examples; small samples can make it NaN)."""
    x, y = _pair(x, y, 4 if debiased else 2)
    xy, xx, yy = _hsic_terms(x, y, debiased), _hsic_terms(x, x, debiased), _hsic_terms(y, y, debiased)
    return float(xy / torch.sqrt(xx * yy))


def _basis(x: torch.Tensor, variance: float | None) -> torch.Tensor:
    """An orthonormal basis [n, k] of the span of centered ``x``'s columns; with ``variance``
    only the top singular directions explaining that fraction of it (the 'SV' of SVCCA)."""
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    if s.numel() == 0 or s[0] <= 0:
        return u[:, :0]
    keep = int((s > RANK_TOL * s[0]).sum())
    if variance is not None:
        energy = torch.cumsum(s.square(), 0) / s.square().sum()
        keep = min(keep, int((energy < variance).sum()) + 1)
    return u[:, :keep]


def canonical(x: torch.Tensor, y: torch.Tensor, variance: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(canonical correlations, largest first [m], x's canonical variates [n, m] with unit
    norm) of centered ``x`` and ``y``, after keeping ``variance`` of each (None: all)."""
    qx, qy = _basis(x, variance), _basis(y, variance)
    u, rho, _ = torch.linalg.svd(qx.T @ qy, full_matrices=False)
    return rho.clamp(0.0, 1.0), qx @ u[:, : rho.numel()]


def svcca(x: torch.Tensor, y: torch.Tensor, variance: float = SVCCA_VARIANCE) -> float:
    """SVCCA: the mean canonical correlation after keeping ``variance`` of each side."""
    x, y = _pair(x, y)
    rho, _ = canonical(x, y, variance)
    return float(rho.mean()) if rho.numel() else float("nan")


def pwcca(x: torch.Tensor, y: torch.Tensor) -> float:
    """PWCCA: canonical correlations weighted by how much of ``x`` each accounts for,
    alpha_i = sum_j |<h_i, x_j>| over x's neurons x_j (Morcos et al. 2018). Not symmetric:
    ``x`` is the reference representation."""
    x, y = _pair(x, y)
    rho, h = canonical(x, y)
    if not rho.numel():
        return float("nan")
    weights = (h.T @ x).abs().sum(1)
    return float((weights * rho).sum() / weights.sum())


def similarity(x: torch.Tensor, y: torch.Tensor, measure: str) -> float:
    """One of `MEASURES` by name."""
    if measure == "cka":
        return cka(x, y)
    if measure == "cka_debiased":
        return cka(x, y, debiased=True)
    if measure == "svcca":
        return svcca(x, y)
    if measure == "pwcca":
        return pwcca(x, y)
    raise FewtaskError(f"unknown similarity measure {measure!r}; choose from {', '.join(MEASURES)}")
