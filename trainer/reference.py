"""Plain-loop reference (``impl="loop"``): the same objectives with Python loops over
families and tasks and `torch.autograd.grad`, no torch.func. Slow and obvious, it
is what the fast path is tested against and the baseline of the benchmark.

A first-order step computes its gradient with ``create_graph=False``, so it is a
constant for every outer derivative: the same semantics as the fast path's detach.
"""

from __future__ import annotations

import torch

from fewtask_data import FewtaskError
from trainer import functional as fn


def _adapt(algo, params, buffers, x, y, lrs, steps, first_order):
    keys = fn.adapting(params, algo.names)
    for _ in range(steps):
        loss = fn.loss_on(algo.forward, params, buffers, x, y)
        # retain_graph: the graph below `params` is shared with the outer loss.
        gs = torch.autograd.grad(loss, [params[k] for k in keys], create_graph=not first_order, retain_graph=True)
        params = fn.sgd_step(params, dict(zip(keys, gs)), lrs)
    return params


def _adapted_metrics(algo, params, buffers, sx, sy, tx, ty, lrs, steps, first_order):
    fast = _adapt(algo, params, buffers, sx, sy, lrs, steps, first_order)
    pred = algo.forward(fast, buffers, tx)
    acc = fn.accuracy(pred, ty) if ty.dtype == torch.int64 else pred.new_zeros(())
    return fn.task_loss(pred, ty), acc


def meta_adapt(algo, params, buffers, msx, msy, mqx, mqy, alpha, beta, task_fo, meta_fo):
    if msx.shape[0] == 0:
        return params
    keys = fn.adapting(params, algo.names)
    for _ in range(algo.meta_steps):
        losses = [
            _adapted_metrics(algo, params, buffers, msx[i], msy[i], mqx[i], mqy[i], alpha, algo.task_steps, task_fo)[0]
            for i in range(msx.shape[0])
        ]
        meta_loss = torch.stack(losses).mean()
        gs = torch.autograd.grad(meta_loss, [params[k] for k in keys], create_graph=not meta_fo, retain_graph=True)
        params = fn.sgd_step(params, dict(zip(keys, gs)), beta)
    return params


def _maltml_loss(algo, params, buffers, lrs, parts):
    from trainer.algorithms import LEVELS

    a, b, g = (lrs[lv] for lv in LEVELS)
    task_fo, meta_fo, goal_fo = algo.order_flags()
    msx, msy, mqx, mqy, gsx, gsy, gvx, gvy = parts
    losses, accs = [], []
    for f in range(msx.shape[0]):
        theta = meta_adapt(algo, params, buffers, msx[f], msy[f], mqx[f], mqy[f], a, b, task_fo, meta_fo)
        for c in range(gsx.shape[1]):
            loss, acc = _adapted_metrics(
                algo, theta, buffers, gsx[f, c], gsy[f, c], gvx[f, c], gvy[f, c], g, algo.goal_steps, goal_fo
            )
            losses.append(loss)
            accs.append(acc)
    # Mean over goal tasks within a family, then over families == overall mean (equal C).
    return torch.stack(losses).mean(), torch.stack(accs).mean()


def _maml_loss(algo, params, buffers, lrs, parts):
    msx, msy, mqx, mqy, gsx, gsy, gvx, gvy = parts
    losses, accs = [], []
    for sx, sy, tx, ty in ((msx, msy, mqx, mqy), (gsx, gsy, gvx, gvy)):
        for f in range(sx.shape[0]):
            for t in range(sx.shape[1]):
                loss, acc = _adapted_metrics(
                    algo, params, buffers, sx[f, t], sy[f, t], tx[f, t], ty[f, t], lrs["alpha"], algo.task_steps, algo.order == 1
                )
                losses.append(loss)
                accs.append(acc)
    return torch.stack(losses).mean(), torch.stack(accs).mean()


def reference_grads(algo, params, step_sizes, buffers, parts):
    """Same contract as `Algorithm.outer_grads`, computed with plain loops."""
    from trainer.algorithms import LEVELS, MALTML, MAML, Pretrain, level_lrs

    with torch.enable_grad():
        p = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        s = {k: v.detach().requires_grad_(algo.learn_step_sizes) for k, v in step_sizes.items()}
        lrs = {lv: level_lrs(s, lv) for lv in LEVELS}
        if isinstance(algo, MALTML):
            loss, acc = _maltml_loss(algo, p, buffers, lrs, parts)
        elif isinstance(algo, MAML):
            loss, acc = _maml_loss(algo, p, buffers, lrs, parts)
        elif isinstance(algo, Pretrain):
            loss, _ = algo.objective(p, s, buffers, parts)
            acc = loss.new_zeros(())
        else:
            raise FewtaskError(f"{algo.name} has no plain-loop reference; use --impl vmap")
        wrt = list(p.values()) + (list(s.values()) if algo.learn_step_sizes else [])
        gs = torch.autograd.grad(loss, wrt, allow_unused=True)
        gs = [torch.zeros_like(w) if g is None else g for g, w in zip(gs, wrt)]
    grads = dict(zip(p, gs[: len(p)]))
    sgrads = dict(zip(s, gs[len(p):])) if algo.learn_step_sizes else {}
    return grads, sgrads, {"loss": loss.detach(), "acc": acc.detach()}
