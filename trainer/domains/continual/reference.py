"""Plain-loop references for the continual objectives: Python loops over problems and
online steps, `torch.autograd.grad`, the whole network at every step (no feature
caching, no torch.func). Slow and obvious: what `oml.py` is tested against and the
baseline of scripts/bench_continual.py."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainer.core import functional as fn
from trainer.core import reference
from trainer.domains.continual.net import online_names, per_tensor, run_layers


def loop_problem_loss(params, traj_x, traj_y, rand_x, rand_y, lr, split, depth, first_order=False):
    """`oml.problem_loss` for one problem, step by step."""
    names = sorted(online_names(params, split))
    lrs = per_tensor(lr, names)
    p = dict(params)
    for s in range(traj_x.shape[0]):
        loss = F.mse_loss(run_layers(p, traj_x[s], 0, depth, depth), traj_y[s])
        gs = torch.autograd.grad(loss, [p[k] for k in names], create_graph=not first_order, retain_graph=True)
        p = fn.sgd_step(p, dict(zip(names, gs)), fn.at_step(lrs, s))
    x = torch.cat([traj_x.reshape(-1, traj_x.shape[-1]), rand_x])
    y = torch.cat([traj_y.reshape(-1, 1), rand_y])
    return F.mse_loss(run_layers(p, x, 0, depth, depth), y)


def loop_problems(params, tensors, lr, split, depth, first_order=False) -> list[torch.Tensor]:
    return [loop_problem_loss(params, *(t[i] for t in tensors), lr, split, depth, first_order) for i in range(tensors[0].shape[0])]


def loop_oml_loss(params, tensors, lr, split, depth, first_order=False) -> torch.Tensor:
    """Mean OML objective over the problems of ``tensors`` (a ContinualBatch's)."""
    return torch.stack(loop_problems(params, tensors, lr, split, depth, first_order)).mean()


def loop_maltml_loss(params, batch, lr, beta, meta_steps, split, depth, flags, reduction="sum", goal_lr=None) -> torch.Tensor:
    """`MALTMLContinual.objective` with loops: per family V_beta (`reference.loop_descend`
    on the sum of the L problems' OML losses), then the goal problems' OML losses.
    ``flags``: first-order flags of (online steps in V_beta, V_beta's step, goal's online steps);
    ``goal_lr``: the goal problems' online step (default ``lr``)."""
    task_fo, meta_fo, goal_fo = flags
    meta, goal = batch.meta.tensors(), batch.goal.tensors()
    betas = per_tensor(beta, params)
    goal_lr = lr if goal_lr is None else goal_lr
    losses = []
    for f in range(len(batch)):
        m = tuple(t[f] for t in meta)

        def meta_loss(p, m=m):
            per = torch.stack(loop_problems(p, m, lr, split, depth, task_fo))
            return per.sum() if reduction == "sum" else per.mean()

        theta = params if m[0].shape[0] == 0 else reference.loop_descend(meta_loss, params, betas, meta_steps, None, meta_fo)
        g = tuple(t[f] for t in goal)
        losses.append(torch.stack(loop_problems(theta, g, goal_lr, split, depth, goal_fo)).mean())
    return torch.stack(losses).mean()
