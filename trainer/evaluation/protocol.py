"""The paper's evaluation protocol, one for every experiment on parameters and examples
(sinusoid, `eval`, the demo; RL and continual have their domain's version beside it).

For each held-out family episode: meta-update from theta on its L tasks (V_beta, K
support + Q query examples each, the method's own alpha, beta, task/meta steps,
task-step derivative order and Eq. 2 reduction: the sum of the L task losses by
default), then finetune on each goal task's K support examples with the method's OWN
finetuning step sizes (`own_step_sizes`: gamma for MALTML, alpha for the MAML family,
trained or learned as they are in its checkpoint), recording the goal validation loss
(and accuracy for labels) after 0..S steps. Done both with and without the meta-update
(the arrows at 0 steps of Figure 2c). Per episode the goal tasks are averaged.

`episode_curves` returns ``{protocol: {metric: [episodes, S+1]}}`` with the protocols of
`trainer.evaluation.report` (``without_meta_update``, ``with_meta_update``), which turns
them into the one results schema. With ``progress`` a bar on stderr counts the episodes.
"""

from __future__ import annotations

from typing import Iterable

import torch
from tqdm import tqdm

from fewtask_data import FamilyBatch
from trainer.algorithms import Algorithm, batch_parts
from trainer.core import functional as fn
from trainer.core import reference
from trainer.core.stabilizers import at_inner_step
from trainer.core.step_sizes import LEVELS, finetune_sizes, level_lrs, mean_step_sizes
from trainer.evaluation.report import PROTOCOLS, WITH, method_summary


def own_step_sizes(algo: Algorithm, step_sizes: dict, finetune_lr: float | None = None) -> dict:
    """The log step sizes the protocol uses for ``algo``: its gamma level replaced by the level
    it finetunes goal tasks with (``algo.finetune_level``), or by ``finetune_lr`` when given."""
    return finetune_sizes(step_sizes, algo.finetune_level, finetune_lr)


def step_size_record(algo, sizes: dict) -> dict:
    """The step sizes a method ends with: per level the mean and each parameter tensor's
    (per-step sizes: step s >= 1 under "<level>@<s>"; one model per family, as the
    maml-oracle: each size's mean over the families)."""
    return sizes_record(sizes, algo.learn_step_sizes, algo.finetune_level)


def sizes_record(sizes: dict, learned: bool, finetune_level: str) -> dict:
    """`step_size_record` of any method's log step sizes: whether they were learned and the
    level its goal steps take (the RL methods have no `Algorithm`)."""
    levels = {}
    for lv in LEVELS:
        schedule = level_lrs(sizes, lv)
        for s, lrs in enumerate(schedule if isinstance(schedule, list) else [schedule]):
            levels[lv if s == 0 else f"{lv}@{s}"] = {k: float(v.mean()) for k, v in lrs.items()}
    return {"mean": mean_step_sizes(sizes), "per_tensor": levels, "learned": bool(learned), "finetune_level": finetune_level}


def families_sizes(step_sizes: dict, start: int, stop: int) -> dict:
    """Log step sizes for families start..stop-1 of a per-family run: sizes with a family axis
    (learned per family, as the maml-oracle's) cut to them, shared scalar sizes as they are."""
    return {k: v[start:stop] if v.dim() else v for k, v in step_sizes.items()}


def meta_updated(algo: Algorithm, theta, buffers, msx, msy, mqx, mqy, a, b, impl: str = "vmap",
                 names: frozenset[str] | None | str = "as trained"):  # fmt: skip
    """theta' = V_beta(theta) on one family's L tasks, exactly as the method trains with it:
    whether its task steps are first order changes the meta-gradient's *value* (the Hessian
    term), not just its derivative. ``names``: the parameters it moves (the method's own by
    default; None = all). ``impl="loop"``: the plain-loop reference (same numbers)."""
    names = algo.names if names == "as trained" else names
    task_fo = algo.meta_update_first_order()
    if impl == "vmap":
        return fn.meta_adapt(algo.forward, theta, buffers, (msx, msy), (mqx, mqy), a, b,
                             algo.task_steps, algo.meta_steps, names, task_fo, True, algo.meta_reduction)  # fmt: skip
    with torch.enable_grad():  # the plain-loop reference differentiates with autograd
        p = {k: v.detach().requires_grad_() for k, v in theta.items()}
        tuned = reference.loop_meta_adapt(algo.forward, p, buffers, (msx, msy), (mqx, mqy), a, b, algo.task_steps,
                                          algo.meta_steps, names, task_fo, True, algo.meta_reduction)  # fmt: skip
    return {k: v.detach() for k, v in tuned.items()}


def family_curves(algo: Algorithm, params, step_sizes, buffers, batch: FamilyBatch, steps: int, meta_update: bool,
                  impl: str = "vmap", per_family_params: bool = False, names: tuple | None = None):
    """Per family: (loss, accuracy) on goal validation after 0..steps finetuning steps, [B, steps+1].

    ``impl``: "vmap" batches families and goal tasks; "loop" runs them one by one
    (same numbers, much faster for conv nets on CPU). ``per_family_params``: every
    parameter and log step size has a leading family axis (one model per family, with its
    own step sizes, e.g. maml-oracle). ``names``: (meta-update's, goal steps') adapted
    parameter names, None meaning all; default: the method's own at both levels (the
    freezing ablations change them).
    """
    forward = algo.forward
    meta_names, goal_names = (algo.names, algo.names) if names is None else names

    def goal_curve(theta, g, sx, sy, vx, vy):
        losses, accs = [], []
        for s in range(steps + 1):
            if s:
                theta = fn.adapt(forward, theta, buffers, sx, sy, g, 1, goal_names, first_order=True, start=s - 1)
            with at_inner_step(s):
                pred = forward(theta, buffers, vx)
            losses.append(fn.task_loss(pred, vy))
            accs.append(fn.accuracy(pred, vy) if vy.dtype == torch.int64 else pred.new_zeros(()))
        return torch.stack(losses), torch.stack(accs)

    def family(theta, sizes, msx, msy, mqx, mqy, gsx, gsy, gvx, gvy):
        a, b, g = (level_lrs(sizes, lv) for lv in LEVELS)
        theta = algo.start_params(theta)  # zeroing trick: a zero head first
        if meta_update:
            theta = meta_updated(algo, theta, buffers, msx, msy, mqx, mqy, a, b, impl, meta_names)
        loss, acc = fn.map_over(goal_curve, (None, None, 0, 0, 0, 0), impl)(theta, g, gsx, gsy, gvx, gvy)
        return loss.mean(0), acc.mean(0)

    own = 0 if per_family_params else None
    if per_family_params:  # shared sizes serve every family's model
        step_sizes = {k: v if v.dim() else v.expand(len(batch)) for k, v in step_sizes.items()}
    with torch.no_grad():  # torch.func.grad still differentiates inside
        return fn.map_over(family, (own, own) + (0,) * 8, impl)(params, step_sizes, *batch_parts(batch))


def episode_curves(algo: Algorithm, params, step_sizes, buffers, batches: Iterable[FamilyBatch], steps: int,
                   impl: str = "vmap", per_family_params: bool = False, progress: bool = False,
                   total: int | None = None, protocols: tuple[str, ...] = PROTOCOLS,
                   finetune_lr: float | None = None) -> dict[str, dict[str, torch.Tensor]]:  # fmt: skip
    """The protocols' curves (both by default) over every episode of ``batches``:
    ``{protocol: {"loss": [episodes, steps+1], "accuracy": ...}}`` on the CPU ("accuracy"
    for labels only), finetuning with the method's own step sizes (`own_step_sizes`).
    ``per_family_params``: ``params`` hold one model per episode, in order, and
    ``step_sizes`` its log step sizes (or shared ones, without the family axis).
    ``progress``: a bar on stderr over the episodes (``total`` of them, when known)."""
    step_sizes = own_step_sizes(algo, step_sizes, finetune_lr)
    parts: dict[str, dict[str, list[torch.Tensor]]] = {p: {"loss": [], "accuracy": []} for p in protocols}
    start, labels = 0, False
    bar = tqdm(total=total, desc="evaluating", unit="episode", disable=not progress, mininterval=1.0)
    for batch in batches:
        theta, sizes = params, step_sizes
        if per_family_params:
            theta = {k: v[start : start + len(batch)] for k, v in params.items()}
            sizes = families_sizes(step_sizes, start, start + len(batch))
        start += len(batch)
        labels = batch.goal_y.dtype == torch.int64
        for protocol in protocols:
            loss, acc = family_curves(algo, theta, sizes, buffers, batch, steps,
                                      protocol == WITH, impl, per_family_params)  # fmt: skip
            parts[protocol]["loss"].append(loss.cpu())
            parts[protocol]["accuracy"].append(acc.cpu())
        bar.update(len(batch))
    bar.close()
    metrics = ("loss", "accuracy") if labels else ("loss",)
    return {p: {m: torch.cat(parts[p][m]) for m in metrics} for p in protocols}


def evaluate(algo: Algorithm, params, step_sizes, buffers, batches: Iterable[FamilyBatch], steps: int = 10,
             impl: str = "vmap", per_family_params: bool = False, progress: bool = False,
             total: int | None = None, finetune_lr: float | None = None) -> tuple[dict, dict]:
    """(summary, curves): `report.method_summary` of `episode_curves`; keep the curves for
    paired comparisons between methods evaluated on the same episodes."""
    curves = episode_curves(algo, params, step_sizes, buffers, batches, steps, impl, per_family_params, progress, total,
                            finetune_lr=finetune_lr)  # fmt: skip
    return method_summary(curves), curves


def predictions(algo: Algorithm, params, step_sizes, buffers, batch: FamilyBatch, grid: torch.Tensor, steps: int) -> dict:
    """For the first family and its first goal task: predictions on ``grid`` before the
    meta-update, after it, and after ``steps`` finetuning steps (Figure 2a/b)."""
    a, b, g = (level_lrs(own_step_sizes(algo, step_sizes), lv) for lv in LEVELS)
    msx, msy, mqx, mqy, gsx, gsy, _, _ = (t[0] for t in batch_parts(batch))
    forward = algo.forward
    params = algo.start_params(params)
    with torch.no_grad():
        theta = meta_updated(algo, params, buffers, msx, msy, mqx, mqy, a, b)
        tuned = fn.adapt(forward, theta, buffers, gsx[0], gsy[0], g, steps, algo.names, first_order=True)
        return {
            "before_meta_update": forward(params, buffers, grid).squeeze(-1).tolist(),
            "after_meta_update": forward(theta, buffers, grid).squeeze(-1).tolist(),
            f"after_{steps}_finetune_steps": forward(tuned, buffers, grid).squeeze(-1).tolist(),
        }
