"""Plain-loop reference primitives (``impl="loop"``): the functional core's two levels
written with Python loops and `torch.autograd.grad`, no torch.func. Slow and obvious,
they are what the fast path is tested against and the baseline of the benchmark; each
algorithm states its own loop objective with them (``Algorithm.loop_objective``).

A first-order step computes its gradient with ``create_graph=False``, so it is a
constant for every outer derivative: the same semantics as the fast path's detach.
"""

from __future__ import annotations

import torch

from trainer.core import functional as fn
from trainer.core.stabilizers import at_inner_step
from trainer.core.step_sizes import LEVELS, level_lrs


def loop_descend_path(loss_fn, params, lrs, steps, names=None, first_order=False):
    """`functional.descend_path` with torch.autograd: the parameters after each SGD step."""
    keys = fn.adapting(params, names)
    path = []
    for s in range(steps):
        with at_inner_step(s):
            loss = loss_fn(params)
        # retain_graph: the graph below `params` is shared with the outer loss.
        gs = torch.autograd.grad(loss, [params[k] for k in keys], create_graph=not first_order, retain_graph=True)
        params = fn.sgd_step(params, dict(zip(keys, gs)), fn.at_step(lrs, s))
        path.append(params)
    return path


def loop_descend(loss_fn, params, lrs, steps, names=None, first_order=False):
    """`functional.descend` with torch.autograd: ``steps`` SGD steps on ``loss_fn(params)``."""
    return loop_descend_path(loss_fn, params, lrs, steps, names, first_order)[-1] if steps else params


def loop_adapted_metrics(forward, params, buffers, support, target, lrs, steps, names=None, first_order=False,
                         weights=None):  # fmt: skip
    """(loss, accuracy) on ``target`` after ``steps`` SGD steps on ``support``: one task;
    with ``weights`` the multi-step loss, written out step by step."""
    path = loop_descend_path(lambda p: fn.loss_on(forward, p, buffers, *support), params, lrs, steps, names, first_order)
    if weights is None or steps == 0:
        with at_inner_step(steps):
            pred = forward(path[-1] if path else params, buffers, target[0])
        loss = fn.task_loss(pred, target[1])
    else:
        loss = 0.0
        for s, p in enumerate(path):
            with at_inner_step(s + 1):
                pred = forward(p, buffers, target[0])
            loss = loss + float(weights[s]) * fn.task_loss(pred, target[1])
    acc = fn.accuracy(pred, target[1]) if target[1].dtype == torch.int64 else pred.new_zeros(())
    return loss, acc


def loop_meta_adapt(forward, params, buffers, support, query, alpha, beta, task_steps, meta_steps, names=None,
                    task_first_order=False, meta_first_order=False, reduction="sum", path=False):  # fmt: skip
    """`functional.meta_adapt` (Eq. 2) with a loop over the family's L tasks: the meta step
    descends the sum of their query losses (``reduction="mean"``: the mean); ``path``: the
    parameters after each meta step."""
    if support[0].shape[0] == 0:
        return [params] * meta_steps if path else params

    def meta_loss(p):
        losses = [
            loop_adapted_metrics(forward, p, buffers, (support[0][i], support[1][i]), (query[0][i], query[1][i]),
                                 alpha, task_steps, names, task_first_order)[0]
            for i in range(support[0].shape[0])
        ]  # fmt: skip
        return torch.stack(losses).sum() if reduction == "sum" else torch.stack(losses).mean()

    if path:
        return loop_descend_path(meta_loss, params, beta, meta_steps, names, meta_first_order)
    return loop_descend(meta_loss, params, beta, meta_steps, names, meta_first_order)


def reference_grads(algo, params, step_sizes, buffers, parts):
    """Same contract as `Algorithm.outer_grads`, from the algorithm's ``loop_objective``."""
    with torch.enable_grad():
        p = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        s = {k: v.detach().requires_grad_(algo.learn_step_sizes) for k, v in step_sizes.items()}
        lrs = {lv: level_lrs(s, lv) for lv in LEVELS}
        loss, acc = algo.loop_objective(p, lrs, buffers, parts)
        wrt = list(p.values()) + (list(s.values()) if algo.learn_step_sizes else [])
        gs = torch.autograd.grad(loss, wrt, allow_unused=True)
        gs = [torch.zeros_like(w) if g is None else g for g, w in zip(gs, wrt)]
    grads = dict(zip(p, gs[: len(p)]))
    sgrads = dict(zip(s, gs[len(p):])) if algo.learn_step_sizes else {}
    return grads, sgrads, {"loss": loss.detach(), "acc": acc.detach()}
