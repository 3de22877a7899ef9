"""Rapid learning or feature reuse for continual learners (issue 23, docs/analysis.md).

The continual version of `trainer.evaluation.analysis`, with the continual evaluation's
own levels (`trainer.evaluation.continual`, `experiments.continual.family_evaluation`):

- theta: the meta-trained network; theta': MALTML-continual's family meta-update V_beta on
  the family's L problems (`MALTMLContinual.adapted`, no outer derivative); OML has no
  family level, so theta' = theta; phi: after the online pass over a held-out evaluation
  problem's trajectory (one SGD step per mini-batch of the layers learned online, the
  step size the run chose on its validation problems).
- Probe inputs: each evaluation problem's test points (fresh points of each of its F
  functions, which no adaptation sees), F x n rows.
- Layers: ``layers.<i>``, each Linear + ReLU output and the last (the prediction); the
  RLN is the first ``split`` layers, the PLN the rest.
- The unit is the held-out evaluation problem (each has its own phi), as in the command's
  report; theta' is shared by the problems of a family.
- Ablations: the online pass moves the PLN only (as trained and evaluated: with the run's
  own step the cell is the command's MSE), every layer, or the RLN only, each column with
  its online step chosen from the run's grid on the validation problems
  (`choose_online_lrs`; learned sizes are used as learned); for MALTML the meta-update moves all /
  PLN / RLN (its step size set to 0 on the rest) or is skipped. Score: each problem's
  MSE on its test points, averaged over its functions (`evaluation.continual.problem_mse`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fewtask_data import FewtaskError
from trainer.algorithms.base import order_flags
from trainer.core import functional as fn
from trainer.domains.continual.net import (
    linear,
    mse_grads,
    online_names,
    per_tensor,
    run_layers,
)
from trainer.domains.continual.oml import MALTMLContinual, learn_online, meta_finetune
from trainer.evaluation.analysis import mean_units, pair_similarities, stack_units
from trainer.evaluation.continual import problem_mse

ONLINE = ("pln", "all", "rln")  # columns: what the online pass moves ("pln": as trained)
META = ("none", "all", "pln", "rln")  # rows: what MALTML's meta-update moves
PROBES = ("Each held-out evaluation problem's test points (the evaluation's fresh points of each of its functions, "
          "seen by no adaptation), the same at theta, theta' and phi.")  # fmt: skip


def layer_names(depth: int) -> list[str]:
    return [f"layers.{i}" for i in range(depth)]


def check_layers(depth: int, layers: Sequence[str]) -> list[str]:
    """``layers`` (default: every one) if each names a layer of the net; else a one-line error."""
    names = layer_names(depth)
    bad = [name for name in layers if name not in names]
    if bad:
        raise FewtaskError(f"no layer {', '.join(bad)} in this network; use --layers with names from: {', '.join(names)}")
    return list(layers) or names


def layer_outputs(params: dict, x: torch.Tensor, depth: int) -> dict[str, torch.Tensor]:
    """{layers.<i>: its output} on ``x`` [n, in] (ReLU after all but the last)."""
    out = {}
    for i in range(depth):
        x = linear(x, params[f"layers.{i}.weight"], params[f"layers.{i}.bias"])
        if i < depth - 1:
            x = torch.relu(x)
        out[f"layers.{i}"] = x
    return out


def names_of(params: dict, which: str, split: int) -> frozenset[str]:
    """The tensors of ``which`` (all / pln / rln) for an RLN of ``split`` layers."""
    pln = online_names(params, split)
    return {"all": frozenset(params), "pln": pln, "rln": frozenset(k for k in params if k not in pln)}[which]


def _filled(lr, names: frozenset[str]):
    """Step sizes for ``names``: a number as it is; learned sizes (per PLN tensor, or a per-step
    schedule) with the tensors they lack given the mean of theirs at that step."""
    if isinstance(lr, list):
        return [_filled(one, names) for one in lr]
    if not isinstance(lr, dict):
        return lr
    mean = torch.stack([v.reshape(()) for v in lr.values()]).mean()
    return {k: lr.get(k, mean) for k in names}


def online(params: dict, traj_x: torch.Tensor, traj_y: torch.Tensor, lr, which: str, split: int, depth: int) -> dict:
    """Each problem's network after its online pass ([P, ...] for the tensors that moved):
    ``which`` = pln is the evaluation's own pass (`learn_online`, RLN features once), all /
    rln the same SGD steps on those tensors (gradients of the whole net, `net.mse_grads`)."""
    with torch.no_grad():
        if which == "pln":
            h = run_layers(params, traj_x, 0, split, depth)
            return {**params, **learn_online(params, h, traj_y, lr, split, depth, first_order=True)}
        names = names_of(params, which, split)
        lrs = per_tensor(_filled(lr, names), names)
        grads = lambda q, batch: mse_grads(q, batch[0], batch[1], 0, depth)[1]
        steps = (traj_x.transpose(0, 1), traj_y.transpose(0, 1))
        return fn.descend_online(lambda q, b: None, params, lrs, steps, names, True, grad_fn=grads)


def problems_mse(tuned: dict, test: tuple[torch.Tensor, torch.Tensor], depth: int) -> torch.Tensor:
    """[P]: each problem's MSE on its test points, mean over its functions (as `evaluation.continual.function_mse`)."""
    test_x, test_y = test
    with torch.no_grad():
        out = (run_layers(tuned, test_x, 0, depth, depth) - test_y).pow(2).mean(dim=(-2, -1))
    return problem_mse(torch.nan_to_num(out, nan=float("inf")))


def meta_updated(algo: MALTMLContinual, params: dict, meta_tensors, which: str, sizes: dict | None = None) -> dict:
    """theta' with the meta-update moving ``which`` (all: `MALTMLContinual.adapted`, the
    evaluation's; pln / rln: beta set to 0 on the other tensors, the same V_beta otherwise)."""
    with torch.no_grad():
        if which == "all":
            return algo.adapted(params, meta_tensors, outer=False, sizes=sizes)
        keep = names_of(params, which, algo.split)
        alpha, beta, _ = algo.sizes(sizes)
        betas = per_tensor(beta, params)
        mask = lambda b: {k: (v if k in keep else v * 0.0) for k, v in per_tensor(b, params).items()}
        betas = [mask(b) for b in betas] if isinstance(betas, list) else mask(betas)
        flags = order_flags(algo.order)
        return meta_finetune(params, meta_tensors, alpha, betas, algo.meta_steps, algo.split, algo.depth, flags.task,
                             True, algo.meta_reduction)  # fmt: skip


def _problem(params: dict, p: int, moved: dict) -> dict:
    """Problem ``p``'s network out of a pass's result (moved tensors carry a problem axis)."""
    return {k: (moved[k][p] if moved[k].dim() > params[k].dim() else moved[k]) for k in params}


def similarities(groups: Sequence[tuple], lr, split: int, depth: int, layers: Sequence[str], measures: Sequence[str],
                 max_rows: int = 4096, row_seed: int = 0) -> dict:  # fmt: skip
    """{measure: {pair: {layer: tensor [problems]}}} over ``groups``: (theta, theta', the
    problems (a ContinualBatch), their test points), one group per held-out family."""
    per_problem, index = [], 0
    for theta, prime, problems, test in groups:
        phi = online(prime, problems.traj_x, problems.traj_y, lr, "pln", split, depth)
        with torch.no_grad():
            for p in range(len(problems)):
                probe = test[0][p].reshape(-1, test[0].shape[-1])
                acts = {"theta": layer_outputs(theta, probe, depth), "theta_prime": layer_outputs(prime, probe, depth),
                        "phi": layer_outputs(_problem(prime, p, phi), probe, depth)}  # fmt: skip
                per_problem.append(mean_units([pair_similarities(acts, layers, measures, max_rows, row_seed + index)]))
                index += 1
    return stack_units(per_problem, layers, measures)


def choose_online_lrs(groups: Sequence[tuple], row: str, candidates: Sequence, split: int, depth: int) -> dict:
    """Per online column, the candidate step with the lowest mean MSE on the families'
    validation problems at theta' (meta-update row ``row``), as the command chooses its step
    for the PLN: a step tuned for the PLN alone can make a pass over every layer diverge.
    ``groups``: (theta, {row: theta'}, problems, test, val problems, val test) per family."""
    chosen = {}
    for col in ONLINE:
        def score(lr, col: str = col) -> float:
            mse = torch.cat([problems_mse(online(g[1][row], g[4].traj_x, g[4].traj_y, lr, col, split, depth), g[5], depth)
                             for g in groups])  # fmt: skip
            return float(mse.mean())

        scores = [score(lr) for lr in candidates]
        chosen[col] = candidates[min(range(len(scores)), key=scores.__getitem__)]
    return chosen


def ablation_grid(groups: Sequence[tuple], lrs: dict, split: int, depth: int, rows: Sequence[str]) -> dict:
    """{meta row: {online column: {"mse": tensor [problems]}}}. ``groups``: (theta, {row:
    theta' with the meta-update moving it}, problems, test points, ...) per family; ``lrs``:
    the online step of each column."""
    grid: dict = {}
    for row in rows:
        grid[row] = {}
        for col in ONLINE:
            mse = [problems_mse(online(g[1][row], g[2].traj_x, g[2].traj_y, lrs[col], col, split, depth), g[3], depth)
                   for g in groups]  # fmt: skip
            grid[row][col] = {"mse": torch.cat(mse)}
    return grid
