"""The paper's evaluation protocol, with 95% confidence intervals.

For each held-out family: meta-finetune from theta on its L tasks (V_beta, K
support + Q query examples each), then finetune on each goal task's K support
examples with step size gamma, recording the validation loss after 0..S steps.
Done both with and without the meta-update (the arrows at 0 steps of Figure 2c).
Per family the goal tasks are averaged; the interval is over families.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch

from fewtask_data import FamilyBatch
from trainer import functional as fn
from trainer import reference
from trainer.algorithms import LEVELS, Algorithm, batch_parts, level_lrs


def family_curves(algo: Algorithm, params, step_sizes, buffers, batch: FamilyBatch, steps: int, meta_update: bool,
                  impl: str = "vmap", per_family_params: bool = False):
    """Per family: (loss, accuracy) on goal validation after 0..steps finetuning steps, [B, steps+1].

    ``impl``: "vmap" batches families and goal tasks; "loop" runs them one by one
    (same numbers, much faster for conv nets on CPU). ``per_family_params``: every
    parameter has a leading family axis (one model per family, e.g. maml-oracle).
    """
    a, b, g = (level_lrs(step_sizes, lv) for lv in LEVELS)
    forward, names = algo.forward, algo.names
    # The meta-update is the one the method trains with: whether its task steps are
    # first order changes the meta-gradient's *value* (the Hessian term), not just
    # its derivative. The meta step itself needs no outer derivative here.
    task_fo = algo.meta_update_first_order()

    def goal_curve(theta, sx, sy, vx, vy):
        losses, accs = [], []
        for s in range(steps + 1):
            if s:
                theta = fn.adapt(forward, theta, buffers, sx, sy, g, 1, names, first_order=True)
            pred = forward(theta, buffers, vx)
            losses.append(fn.task_loss(pred, vy))
            accs.append(fn.accuracy(pred, vy) if vy.dtype == torch.int64 else pred.new_zeros(()))
        return torch.stack(losses), torch.stack(accs)

    def meta_finetuned(theta, msx, msy, mqx, mqy):
        if not meta_update:
            return theta
        if impl == "vmap":
            return fn.meta_adapt(forward, theta, buffers, (msx, msy), (mqx, mqy), a, b,
                                 algo.task_steps, algo.meta_steps, names, task_fo, True)  # fmt: skip
        with torch.enable_grad():  # the plain-loop reference differentiates with autograd
            p = {k: v.detach().requires_grad_() for k, v in theta.items()}
            tuned = reference.meta_adapt(algo, p, buffers, msx, msy, mqx, mqy, a, b, task_fo, True)
        return {k: v.detach() for k, v in tuned.items()}

    def family(theta, msx, msy, mqx, mqy, gsx, gsy, gvx, gvy):
        theta = meta_finetuned(theta, msx, msy, mqx, mqy)
        loss, acc = fn.map_over(goal_curve, (None, 0, 0, 0, 0), impl)(theta, gsx, gsy, gvx, gvy)
        return loss.mean(0), acc.mean(0)

    with torch.no_grad():  # torch.func.grad still differentiates inside
        dims = (0 if per_family_params else None,) + (0,) * 8
        return fn.map_over(family, dims, impl)(params, *batch_parts(batch))


def summarize(values: torch.Tensor) -> dict[str, list[float]]:
    """Mean and 95% normal-approximation half-width over the leading (family) axis."""
    n = values.shape[0]
    mean = values.double().mean(0)
    half = 1.96 * values.double().std(0, unbiased=True) / math.sqrt(n) if n > 1 else torch.zeros_like(mean)
    return {"mean": mean.tolist(), "ci95": half.tolist()}


def evaluate(algo: Algorithm, params, step_sizes, buffers, batches: Iterable[FamilyBatch], steps: int = 10,
             per_family_params: bool = False) -> dict:
    """Finetuning curves over all families in ``batches``, with and without the meta-update.

    Returns ``{"families": n, "with_meta_update": {"loss": {mean, ci95}, ...},
    "without_meta_update": {...}, "per_family": {...}}`` (per-family losses allow
    paired comparisons between methods evaluated on the same families).
    ``per_family_params``: ``params`` hold one model per family, in batch order.
    """
    per = {True: ([], []), False: ([], [])}
    start = 0
    for batch in batches:
        theta = {k: v[start : start + len(batch)] for k, v in params.items()} if per_family_params else params
        start += len(batch)
        for meta_update in (True, False):
            loss, acc = family_curves(algo, theta, step_sizes, buffers, batch, steps, meta_update,
                                      per_family_params=per_family_params)  # fmt: skip
            per[meta_update][0].append(loss)
            per[meta_update][1].append(acc)
    out: dict = {"families": 0, "per_family": {}}
    for meta_update, key in ((True, "with_meta_update"), (False, "without_meta_update")):
        loss, acc = torch.cat(per[meta_update][0]), torch.cat(per[meta_update][1])
        out["families"] = loss.shape[0]
        out[key] = {"loss": summarize(loss)}
        if acc.abs().sum() > 0:
            out[key]["accuracy"] = summarize(acc)
        out["per_family"][key] = loss.tolist()
    return out


def paired_difference(a: list[list[float]], b: list[list[float]], step: int = 0) -> dict[str, float]:
    """Mean of a - b at one finetuning step over the same families, with its 95% interval."""
    diff = torch.tensor([x[step] for x in a], dtype=torch.float64) - torch.tensor([y[step] for y in b], dtype=torch.float64)
    s = summarize(diff[:, None])
    return {"mean": s["mean"][0], "ci95": s["ci95"][0], "families": len(diff)}


def predictions(algo: Algorithm, params, step_sizes, buffers, batch: FamilyBatch, grid: torch.Tensor, steps: int) -> dict:
    """For the first family and its first goal task: predictions on ``grid`` before the
    meta-update, after it, and after ``steps`` finetuning steps (Figure 2a/b)."""
    a, b, g = (level_lrs(step_sizes, lv) for lv in LEVELS)
    msx, msy, mqx, mqy, gsx, gsy, _, _ = (t[0] for t in batch_parts(batch))
    forward = algo.forward
    with torch.no_grad():
        theta = fn.meta_adapt(forward, params, buffers, (msx, msy), (mqx, mqy), a, b,
                              algo.task_steps, algo.meta_steps, algo.names, algo.meta_update_first_order(), True)  # fmt: skip
        tuned = fn.adapt(forward, theta, buffers, gsx[0], gsy[0], g, steps, algo.names, first_order=True)
        return {
            "before_meta_update": forward(params, buffers, grid).squeeze(-1).tolist(),
            "after_meta_update": forward(theta, buffers, grid).squeeze(-1).tolist(),
            f"after_{steps}_finetune_steps": forward(tuned, buffers, grid).squeeze(-1).tolist(),
        }
