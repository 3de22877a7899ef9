"""The paper's evaluation protocol, one for every command (`sinusoid`, `eval`, `demo`).

For each held-out family episode: meta-finetune from theta on its L tasks (V_beta,
K support + Q query examples each, the method's own alpha, beta, task/meta steps,
task-step derivative order and Eq. 2 reduction: the sum of the L task losses by
default), then finetune on each goal task's K support
examples with step size gamma, recording the goal validation loss (and accuracy
for labels) after 0..S steps. Done both with and without the meta-update (the
arrows at 0 steps of Figure 2c). Per episode the goal tasks are averaged.

Results, one schema (`summarize_curves`)::

    {"episodes": n, "steps": [0..S],
     "without_meta_finetuning": {"loss": {"mean": [..], "ci95": [..]}, "accuracy": {...}},
     "with_meta_finetuning":    {...},
     "meta_finetuning_gain":    {...}}     # paired: with - without on the same episodes

"accuracy" appears for classification only; every interval is 1.96 standard errors
over episodes (`summarize`). `paired` compares two methods on the same episodes.
With ``progress`` a bar on stderr counts the episodes (an evaluation can take minutes).
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from tqdm import tqdm

from fewtask_data import FamilyBatch
from trainer.algorithms import Algorithm, batch_parts
from trainer.core import functional as fn
from trainer.core import reference
from trainer.core.step_sizes import LEVELS, level_lrs

PROTOCOLS = ("without_meta_finetuning", "with_meta_finetuning")


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
                                 algo.task_steps, algo.meta_steps, names, task_fo, True, algo.meta_reduction)  # fmt: skip
        with torch.enable_grad():  # the plain-loop reference differentiates with autograd
            p = {k: v.detach().requires_grad_() for k, v in theta.items()}
            tuned = reference.loop_meta_adapt(forward, p, buffers, (msx, msy), (mqx, mqy), a, b, algo.task_steps,
                                              algo.meta_steps, names, task_fo, True, algo.meta_reduction)  # fmt: skip
        return {k: v.detach() for k, v in tuned.items()}

    def family(theta, msx, msy, mqx, mqy, gsx, gsy, gvx, gvy):
        theta = meta_finetuned(theta, msx, msy, mqx, mqy)
        loss, acc = fn.map_over(goal_curve, (None, 0, 0, 0, 0), impl)(theta, gsx, gsy, gvx, gvy)
        return loss.mean(0), acc.mean(0)

    with torch.no_grad():  # torch.func.grad still differentiates inside
        dims = (0 if per_family_params else None,) + (0,) * 8
        return fn.map_over(family, dims, impl)(params, *batch_parts(batch))


def episode_curves(algo: Algorithm, params, step_sizes, buffers, batches: Iterable[FamilyBatch], steps: int,
                   impl: str = "vmap", per_family_params: bool = False, progress: bool = False,
                   total: int | None = None, protocols: tuple[str, ...] = PROTOCOLS) -> dict[str, dict[str, torch.Tensor]]:
    """The protocols' curves (both by default) over every episode of ``batches``:
    ``{protocol: {"loss": [episodes, steps+1], "accuracy": ...}}`` on the CPU ("accuracy"
    for labels only). ``per_family_params``: ``params`` hold one model per episode, in order.
    ``progress``: a bar on stderr over the episodes (``total`` of them, when known)."""
    parts: dict[str, dict[str, list[torch.Tensor]]] = {p: {"loss": [], "accuracy": []} for p in protocols}
    start, labels = 0, False
    bar = tqdm(total=total, desc="evaluating", unit="episode", disable=not progress, mininterval=1.0)
    for batch in batches:
        theta = {k: v[start : start + len(batch)] for k, v in params.items()} if per_family_params else params
        start += len(batch)
        labels = batch.goal_y.dtype == torch.int64
        for protocol in protocols:
            loss, acc = family_curves(algo, theta, step_sizes, buffers, batch, steps,
                                      protocol == "with_meta_finetuning", impl, per_family_params)  # fmt: skip
            parts[protocol]["loss"].append(loss.cpu())
            parts[protocol]["accuracy"].append(acc.cpu())
        bar.update(len(batch))
    bar.close()
    metrics = ("loss", "accuracy") if labels else ("loss",)
    return {p: {m: torch.cat(parts[p][m]) for m in metrics} for p in protocols}


def summarize(values: torch.Tensor) -> dict[str, list[float]]:
    """Mean and 95% normal-approximation half-width over the leading (episode) axis."""
    n = values.shape[0]
    mean = values.double().mean(0)
    half = 1.96 * values.double().std(0, unbiased=True) / math.sqrt(n) if n > 1 else torch.zeros_like(mean)
    return {"mean": mean.tolist(), "ci95": half.tolist()}


def paired(a: torch.Tensor, b: torch.Tensor) -> dict[str, list[float]]:
    """`summarize` of a - b over the same episodes: tighter than comparing two intervals."""
    return summarize(a.double() - b.double())


def compare(a: dict[str, dict[str, torch.Tensor]], b: dict[str, dict[str, torch.Tensor]]) -> dict:
    """Paired differences a - b (two methods' `episode_curves` on the same episodes) for
    each pair of protocols, e.g. ``"with_minus_without"``: a meta-finetunes, b does not."""
    short = {"without_meta_finetuning": "without", "with_meta_finetuning": "with"}
    return {f"{short[pa]}_minus_{short[pb]}": {m: paired(a[pa][m], b[pb][m]) for m in a[pa]}
            for pa in PROTOCOLS for pb in PROTOCOLS}  # fmt: skip


def summarize_curves(curves: dict[str, dict[str, torch.Tensor]]) -> dict:
    """The protocol's result schema (module doc) from `episode_curves`."""
    with_, without = curves["with_meta_finetuning"], curves["without_meta_finetuning"]
    loss = without["loss"]
    out: dict = {"episodes": loss.shape[0], "steps": list(range(loss.shape[1]))}
    for protocol in PROTOCOLS:
        out[protocol] = {m: summarize(v) for m, v in curves[protocol].items()}
    out["meta_finetuning_gain"] = {m: paired(with_[m], without[m]) for m in without}
    return out


def evaluate(algo: Algorithm, params, step_sizes, buffers, batches: Iterable[FamilyBatch], steps: int = 10,
             impl: str = "vmap", per_family_params: bool = False, progress: bool = False,
             total: int | None = None) -> tuple[dict, dict]:
    """(summary, curves): `summarize_curves` of `episode_curves`; keep the curves for
    paired comparisons between methods evaluated on the same episodes."""
    curves = episode_curves(algo, params, step_sizes, buffers, batches, steps, impl, per_family_params, progress, total)
    return summarize_curves(curves), curves


def predictions(algo: Algorithm, params, step_sizes, buffers, batch: FamilyBatch, grid: torch.Tensor, steps: int) -> dict:
    """For the first family and its first goal task: predictions on ``grid`` before the
    meta-update, after it, and after ``steps`` finetuning steps (Figure 2a/b)."""
    a, b, g = (level_lrs(step_sizes, lv) for lv in LEVELS)
    msx, msy, mqx, mqy, gsx, gsy, _, _ = (t[0] for t in batch_parts(batch))
    forward = algo.forward
    with torch.no_grad():
        theta = fn.meta_adapt(forward, params, buffers, (msx, msy), (mqx, mqy), a, b, algo.task_steps, algo.meta_steps,
                              algo.names, algo.meta_update_first_order(), True, algo.meta_reduction)  # fmt: skip
        tuned = fn.adapt(forward, theta, buffers, gsx[0], gsy[0], g, steps, algo.names, first_order=True)
        return {
            "before_meta_update": forward(params, buffers, grid).squeeze(-1).tolist(),
            "after_meta_update": forward(theta, buffers, grid).squeeze(-1).tolist(),
            f"after_{steps}_finetune_steps": forward(tuned, buffers, grid).squeeze(-1).tolist(),
        }
