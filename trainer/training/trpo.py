"""Trust region policy optimization's step (Schulman et al. 2015, rllab's
ConjugateGradientOptimizer): conjugate gradient on Hessian-vector products of the mean
KL, here differentiated through the adaptation, then a backtracking line search that
accepts the first step which improves the loss and keeps the KL within ``max_kl``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from trainer.core.functional import Params


@dataclass
class TrpoSettings:
    max_kl: float = 0.01
    cg_iters: int = 10
    damping: float = 1e-5  # rllab's reg_coeff
    backtrack_ratio: float = 0.8
    max_backtracks: int = 15


def conjugate_gradient(avp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int = 10,
                       tol: float = 1e-10) -> torch.Tensor:  # fmt: skip
    """Approximately solve A x = b for symmetric positive definite A given x -> A x."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = r @ r
    for _ in range(iters):
        if rr < tol:
            break
        ap = avp(p)
        step = rr / (p @ ap)
        x = x + step * p
        r = r - step * ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _shaped(flat: torch.Tensor, like: Params) -> Params:
    out, i = {}, 0
    for k, v in like.items():
        out[k] = flat[i : i + v.numel()].view_as(v)
        i += v.numel()
    return out


def trpo_step(params: Params, evaluate: Callable[[Params, bool], tuple[torch.Tensor, torch.Tensor]],
              settings: TrpoSettings) -> tuple[Params, dict[str, float]]:  # fmt: skip
    """One TRPO update of ``params`` (leaf tensors); ``evaluate(params, differentiate) ->
    (loss, mean KL)`` recomputes both from the same samples (``differentiate=False``: only
    their values are needed, for the line search). Returns new detached parameters and stats."""
    theta = {k: v.detach().requires_grad_() for k, v in params.items()}
    loss, kl = evaluate(theta, True)
    names = list(theta)
    grads = _flat(torch.autograd.grad(loss, [theta[k] for k in names], retain_graph=True))
    kl_grads = _flat(torch.autograd.grad(kl, [theta[k] for k in names], create_graph=True))

    def hvp(v: torch.Tensor) -> torch.Tensor:
        hv = torch.autograd.grad(kl_grads @ v, [theta[k] for k in names], retain_graph=True)
        return _flat(hv).detach() + settings.damping * v

    direction = conjugate_gradient(hvp, grads.detach(), settings.cg_iters)
    curvature = direction @ hvp(direction)
    step = math.sqrt(2 * settings.max_kl / (float(curvature) + 1e-8)) * direction
    old = _flat([theta[k].detach() for k in names])
    loss_before = float(loss.detach())
    stats = {"loss_before": loss_before, "accepted": 0.0, "kl": 0.0, "loss_after": loss_before}
    for i in range(settings.max_backtracks):
        flat = (old - settings.backtrack_ratio**i * step).detach()
        # requires_grad: the objective's inner steps differentiate the policy
        candidate = {k: v.clone().requires_grad_() for k, v in _shaped(flat, theta).items()}
        new_loss, new_kl = (float(x.detach()) for x in evaluate(candidate, False))
        if new_loss < loss_before and new_kl <= settings.max_kl:
            stats.update(accepted=1.0, kl=new_kl, loss_after=new_loss, backtracks=float(i))
            return {k: v.detach() for k, v in candidate.items()}, stats
    return {k: v.detach() for k, v in theta.items()}, stats
