"""The pure torch.func core of the trainer: losses, `descend` (U) and `descend_tasks` (V),
and their supervised forms `adapt` and `meta_adapt`.

Parameters are plain dicts ``{name: tensor}``; a model enters only through
``forward(params, buffers, x)`` (see `make_forward`). Every function here is pure,
so `torch.func.grad` can differentiate through it to any order and `vmap` can
batch it over tasks and families.

Derivative order is controlled per level with ``first_order`` flags: a
first-order step detaches its gradient, which `torch.func` applies at every
transform level, so an outer `grad` treats that update direction as a constant.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap
from torch.utils._pytree import tree_leaves, tree_map

from trainer.core.stabilizers import at_inner_step

Params = dict[str, torch.Tensor]
Forward = Callable[[Params, Params, torch.Tensor], torch.Tensor]
Pair = tuple[torch.Tensor, torch.Tensor]  # (inputs, targets) of one task, or of L tasks on a leading axis


def make_forward(model: torch.nn.Module) -> Forward:
    """A pure function ``forward(params, buffers, x)`` evaluating ``model``."""

    def forward(params: Params, buffers: Params, x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, (params, buffers), (x,))

    return forward


def map_over(f: Callable, in_dims: tuple[int | None, ...], impl: str = "vmap") -> Callable:
    """``vmap(f, in_dims)``, or (``impl="loop"``) the same map as a Python loop over the
    leading axis with stacked results. Only 0 and None are supported as dims. The loop
    is much faster for conv nets on CPU, where vmap over per-task weights becomes
    grouped convolutions."""
    if impl == "vmap":
        return vmap(f, in_dims=in_dims)

    def looped(*args):
        mapped = [a for a, d in zip(args, in_dims) if d is not None]
        n = tree_leaves(mapped[0])[0].shape[0]
        outs = [f(*(tree_map(lambda t: t[i], a) if d is not None else a for a, d in zip(args, in_dims))) for i in range(n)]
        return tree_map(lambda *xs: torch.stack(xs), outs[0], *outs[1:])

    return looped


def task_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error for float targets, cross-entropy for int64 labels."""
    if y.dtype == torch.int64:
        return F.cross_entropy(pred, y)
    return F.mse_loss(pred, y)


def accuracy(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (pred.argmax(-1) == y).to(pred.dtype).mean()


def loss_on(forward: Forward, params: Params, buffers: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return task_loss(forward(params, buffers, x), y)


def pred_metrics(pred: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, accuracy) of predictions; accuracy is 0 for regression targets."""
    return task_loss(pred, y), accuracy(pred, y) if y.dtype == torch.int64 else pred.new_zeros(())


def adapting(params: Params, names: frozenset[str] | None) -> list[str]:
    """Names of the parameters that adapt in an inner loop (all when ``names`` is None)."""
    return list(params) if names is None else [k for k in params if k in names]


def sgd_step(params: Params, grads: Mapping[str, torch.Tensor], lrs: Mapping[str, torch.Tensor]) -> Params:
    """One gradient step on the parameters named in ``grads``; the rest pass through."""
    return {k: _descend(p, grads[k], lrs[k]) if k in grads else p for k, p in params.items()}


def at_step(lrs, step: int) -> Mapping[str, torch.Tensor]:
    """The step sizes of step ``step``: ``lrs`` itself, or from a per-step schedule (a list,
    `step_sizes.level_lrs`) its entry, the last one for steps past its end."""
    return lrs[min(step, len(lrs) - 1)] if isinstance(lrs, (list, tuple)) else lrs


def _descend(p: torch.Tensor, g: torch.Tensor, lr) -> torch.Tensor:
    # One fused op for a plain-number step size: no lr * g temporary (OML's 400 online steps
    # on 300 x 300 weights are memory-bound); a tensor step size may carry a gradient.
    return torch.add(p, g, alpha=-lr) if isinstance(lr, (int, float)) else p - lr * g


def _grad_of(loss_fn: Callable[[Params], torch.Tensor], params: Params, names: list[str], first_order: bool) -> Params:
    """Gradient of ``loss_fn`` with respect to the named subset of ``params``."""
    sub = {k: params[k] for k in names}
    g = grad(lambda s: loss_fn({**params, **s}))(sub)
    if first_order:
        g = {k: v.detach() for k, v in g.items()}
    return g


def descend(
    loss_fn: Callable[[Params], torch.Tensor], params: Params, lrs: Mapping[str, torch.Tensor], steps: int,
    names: frozenset[str] | None = None, first_order: bool = False, start: int = 0,
) -> Params:  # fmt: skip
    """U: ``steps`` plain gradient steps on ``loss_fn(params) -> scalar``, with per-tensor
    step sizes ``lrs`` (or a per-step schedule of them: `at_step`), moving only the parameters
    in ``names`` (all when None). Any loss works: a task's support loss (Eq. 1), a
    policy-gradient surrogate, an online trajectory. ``start``: the index of the first step
    (for a caller taking the steps one at a time)."""
    return descend_path(loss_fn, params, lrs, steps, names, first_order, start)[-1] if steps else params


def descend_path(
    loss_fn: Callable[[Params], torch.Tensor], params: Params, lrs: Mapping[str, torch.Tensor], steps: int,
    names: frozenset[str] | None = None, first_order: bool = False, start: int = 0,
) -> list[Params]:  # fmt: skip
    """`descend`'s parameters after each of its steps (the multi-step loss scores them all).
    Step s's loss runs at inner step s (`stabilizers.at_inner_step`: per-step batch norm)."""
    keys = adapting(params, names)
    path = []
    for s in range(start, start + steps):
        with at_inner_step(s):
            params = sgd_step(params, _grad_of(loss_fn, params, keys, first_order), at_step(lrs, s))
        path.append(params)
    return path


def descend_online(
    loss_fn: Callable[[Params, object], torch.Tensor], params: Params, lrs: Mapping[str, torch.Tensor], batches,
    names: frozenset[str] | None = None, first_order: bool = False,
    grad_fn: Callable[[Params, object], Params] | None = None,
) -> Params:  # fmt: skip
    """Online SGD along a trajectory (OML's inner loop): one step on ``loss_fn(params, batch)``
    per entry of ``batches`` (a tensor or tuple of tensors with the steps on the leading
    axis), in order, step s of size ``at_step(lrs, s)`` (a per-step schedule: its entry s,
    the last one past its end). ``grad_fn(params, batch)``, when given, computes that gradient
    in closed form instead of `torch.func.grad` (same value; cheaper for hundreds of tiny steps)."""
    keys = adapting(params, names)
    steps = tree_leaves(batches)[0].shape[0]
    for s in range(steps):
        batch = tree_map(lambda t: t[s], batches)
        if grad_fn is None:
            g = _grad_of(lambda p: loss_fn(p, batch), params, keys, first_order)
        else:
            g = {k: (v.detach() if first_order else v) for k, v in grad_fn(params, batch).items() if k in keys}
        params = sgd_step(params, g, at_step(lrs, s))
    return params


REDUCTIONS = ("sum", "mean")


def reduce_tasks(losses: torch.Tensor, reduction: str) -> torch.Tensor:
    """Eq. 2's reduction of task losses on the last axis: their sum (the paper) or, for
    ``"mean"``, their mean (callers check ``reduction`` is one of `REDUCTIONS`)."""
    return losses.sum(-1) if reduction == "sum" else losses.mean(-1)


def descend_tasks(
    task_losses: Callable[[Params], torch.Tensor], params: Params, lrs: Mapping[str, torch.Tensor], steps: int,
    names: frozenset[str] | None = None, first_order: bool = False, reduction: str = "sum",
) -> Params:  # fmt: skip
    """V (Eq. 2): `descend` on the L task losses ``task_losses(params) -> [L]``, each the
    loss of one task after its own adaptation. Eq. 2 and line 10 of Algorithm 1 *sum*
    them; ``reduction="mean"`` averages them instead (a step L times smaller; what this
    project did before the option existed)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return descend(lambda p: reduce_tasks(task_losses(p), reduction), params, lrs, steps, names, first_order)


def weighted_targets(forward: Forward, path: list[Params], buffers: Params, target: Pair, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The multi-step loss: sum over s of weights[s] * the target loss after step s+1 of
    ``path`` (each forward at its inner step), and the accuracy after the last step."""
    losses = []
    for s, p in enumerate(path):
        with at_inner_step(s + 1):
            pred = forward(p, buffers, target[0])
        losses.append(task_loss(pred, target[1]))
    loss = (torch.stack(losses) * weights.to(losses[0])).sum()
    return loss, pred_metrics(pred, target[1])[1]


def adapt(
    forward: Forward, params: Params, buffers: Params, x: torch.Tensor, y: torch.Tensor,
    lrs: Mapping[str, torch.Tensor], steps: int, names: frozenset[str] | None = None, first_order: bool = False,
    start: int = 0,
) -> Params:  # fmt: skip
    """U_lr: ``steps`` plain gradient steps on one task's support set (Eq. 1)."""
    return descend(lambda p: loss_on(forward, p, buffers, x, y), params, lrs, steps, names, first_order, start)



def adapted_metrics(
    forward: Forward, params: Params, buffers: Params, support: Pair, target: Pair,
    lrs: Mapping[str, torch.Tensor], steps: int, names: frozenset[str] | None = None, first_order: bool = False,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(loss, accuracy) on ``target`` after adapting on ``support``: one task's MAML
    objective. Accuracy is 0 for regression targets. ``weights`` [steps]: the multi-step
    loss (`weighted_targets`) instead of the target loss after the last step."""
    if weights is not None and steps > 0:
        path = descend_path(lambda p: loss_on(forward, p, buffers, *support), params, lrs, steps, names, first_order)
        return weighted_targets(forward, path, buffers, target, weights)
    fast = adapt(forward, params, buffers, support[0], support[1], lrs, steps, names, first_order)
    with at_inner_step(steps):
        pred = forward(fast, buffers, target[0])
    return pred_metrics(pred, target[1])


def tasks_adapted_metrics(forward, params, buffers, support, target, lrs, steps, names=None, first_order=False,
                          weights=None):  # fmt: skip
    """`adapted_metrics` (same arguments) of each task along a leading task axis of
    ``support``/``target``, vmapped: (losses [T], accuracies [T])."""

    def one(sx, sy, tx, ty):
        return adapted_metrics(forward, params, buffers, (sx, sy), (tx, ty), lrs, steps, names, first_order, weights)

    return vmap(one)(support[0], support[1], target[0], target[1])


def meta_adapt(
    forward: Forward, params: Params, buffers: Params, support: Pair, query: Pair,
    alpha: Mapping[str, torch.Tensor], beta: Mapping[str, torch.Tensor], task_steps: int, meta_steps: int,
    names: frozenset[str] | None = None, task_first_order: bool = False, meta_first_order: bool = False,
    reduction: str = "sum", path: bool = False,
) -> Params | list[Params]:  # fmt: skip
    """V_beta: ``meta_steps`` MAML steps (size beta) over one family's L tasks (Eq. 2).

    ``support``/``query`` have a leading task axis [L, ...]; each meta step adapts
    every task with ``task_steps`` steps of size alpha and descends the sum (or with
    ``reduction="mean"`` the mean) of the L query losses (`descend_tasks`). With L = 0
    the parameters pass through unchanged. ``path``: the parameters after each meta step
    (MALTML's multi-step loss over its meta level).
    """
    if support[0].shape[0] == 0:
        return [params] * meta_steps if path else params

    def task_losses(p: Params) -> torch.Tensor:
        return tasks_adapted_metrics(forward, p, buffers, support, query, alpha, task_steps, names, task_first_order)[0]

    if path:
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        loss = lambda p: reduce_tasks(task_losses(p), reduction)  # noqa: E731
        return descend_path(loss, params, beta, meta_steps, names, meta_first_order)
    return descend_tasks(task_losses, params, beta, meta_steps, names, meta_first_order, reduction)
