"""Rapid learning or feature reuse, at both of MALTML's levels (issue 23).

For each held-out family and goal task, three parameter points of a method:

- theta: its learned initialisation (per family for maml-oracle),
- theta': after its meta-update on the family's L tasks (`protocol.meta_updated`, the
  evaluation's own V_beta),
- phi: after ``steps`` goal steps from theta' on the goal task's support, with the
  method's own finetuning step sizes (`protocol.own_step_sizes`), as the protocol takes them.

`similarities` compares each layer's activations on the goal task's validation inputs
(held out from every adaptation) between the points; `ablation_grid` scores the method
with the meta-update and the goal steps each adapting all layers, only the head or only
the body (the protocol's `family_curves` with other parameter subsets). Both return
tensors over families (goal tasks averaged), which `stats.summarize` turns into intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from fewtask_data import FamilyBatch
from trainer.algorithms import Algorithm, batch_parts
from trainer.core import functional as fn
from trainer.core.step_sizes import LEVELS, level_lrs
from trainer.evaluation.activations import as_rows, record, row_subset
from trainer.evaluation.protocol import families_sizes, family_curves, meta_updated, own_step_sizes
from trainer.evaluation.similarity import similarity
from trainer.models import head_names

PAIRS = {
    "theta_to_theta_prime": ("theta", "theta_prime"),  # what the family's meta-update changes
    "theta_prime_to_phi": ("theta_prime", "phi"),  # what the goal steps change
    "theta_to_phi": ("theta", "phi"),  # both together
}
ADAPT = ("all", "head", "body")
META_ROWS = ("none",) + ADAPT  # "none": no meta-update, the goal steps from theta
SUBSAMPLING = (
    "Activations are taken on each goal task's validation inputs. A conv map [n, C, H, W] gives one row per input and "
    "spatial position with C neurons (Raghu et al.'s convention); other layers one row per input. A layer with more "
    "than max_rows rows keeps a uniform draw of max_rows of them without replacement, drawn once per (family, goal "
    "task, layer) from torch.Generator seeded with seed + 1000 * family index + goal index, and the same rows at all "
    "three points."
)


@dataclass
class Analyzed:
    """A trained method as the analysis sees it: its algorithm (forward, names, levels),
    parameters (a leading family axis when ``per_family``), log step sizes, buffers."""

    name: str
    algo: Algorithm
    params: dict
    step_sizes: dict
    buffers: dict
    per_family: bool = False

    def theta(self, family: int) -> dict:
        return {k: v[family] for k, v in self.params.items()} if self.per_family else self.params

    def sizes(self, family: int) -> dict:
        """The log step sizes family ``family`` is adapted with, as the protocol takes them."""
        own = own_step_sizes(self.algo, self.step_sizes)
        return {k: v.squeeze(0) for k, v in families_sizes(own, family, family + 1).items()} if self.per_family else own


def subset(algo: Algorithm, which: str) -> frozenset[str] | None:
    """The parameter names that adapt: all (None), the head's or the body's."""
    if which == "all":
        return None
    heads = head_names(algo.model)
    return heads if which == "head" else frozenset(n for n, _ in algo.model.named_parameters() if n not in heads)


def _points(m: Analyzed, theta: dict, parts: tuple, goal: int, lrs: tuple, steps: int, impl: str, theta_prime=None):
    """theta' (computed once per family, passed back in) and phi for goal task ``goal``."""
    msx, msy, mqx, mqy, gsx, gsy, _, _ = parts
    if theta_prime is None:
        theta_prime = meta_updated(m.algo, theta, m.buffers, msx, msy, mqx, mqy, lrs[0], lrs[1], impl)
    phi = fn.adapt(m.algo.forward, theta_prime, m.buffers, gsx[goal], gsy[goal], lrs[2], steps, m.algo.names,
                   first_order=True)  # fmt: skip
    return theta_prime, phi


def family_similarity(m: Analyzed, family: int, parts: tuple, layers: Sequence[str], measures: Sequence[str],
                      steps: int, impl: str, max_rows: int, seed: int) -> dict:  # fmt: skip
    """{measure: {pair: {layer: float}}} for one family, averaged over its goal tasks."""
    lrs = tuple(level_lrs(m.sizes(family), lv) for lv in LEVELS)
    theta, theta_prime = m.theta(family), None
    goals = parts[6].shape[0]
    sums = {s: {p: dict.fromkeys(layers, 0.0) for p in PAIRS} for s in measures}
    for c in range(goals):
        theta_prime, phi = _points(m, theta, parts, c, lrs, steps, impl, theta_prime)
        probe = parts[6][c]
        acts = {pt: record(m.algo.model, m.algo.forward, p, m.buffers, probe, layers)
                for pt, p in (("theta", theta), ("theta_prime", theta_prime), ("phi", phi))}  # fmt: skip
        for layer in layers:
            rows = {pt: as_rows(a[layer]) for pt, a in acts.items()}
            gen = torch.Generator().manual_seed(seed + 1000 * family + c)
            keep = row_subset(rows["theta"].shape[0], max_rows, gen)
            if keep is not None:
                rows = {pt: r[keep] for pt, r in rows.items()}
            for pair, (a, b) in PAIRS.items():
                for s in measures:
                    sums[s][pair][layer] += similarity(rows[a], rows[b], s) / goals
    return sums


def similarities(m: Analyzed, batches: Sequence[FamilyBatch], layers: Sequence[str], measures: Sequence[str],
                 steps: int, impl: str = "vmap", max_rows: int = 4096, seed: int = 0) -> dict:  # fmt: skip
    """{measure: {pair: {layer: tensor [families]}}} over every family of ``batches`` in order."""
    per_family = []
    index = 0
    with torch.no_grad():  # torch.func.grad still differentiates inside
        for batch in batches:
            parts = batch_parts(batch)
            for f in range(len(batch)):
                one = tuple(t[f] for t in parts)
                per_family.append(family_similarity(m, index, one, layers, measures, steps, impl, max_rows, seed))
                index += 1
    return {s: {p: {layer: torch.tensor([fam[s][p][layer] for fam in per_family], dtype=torch.float64)
                    for layer in layers} for p in PAIRS} for s in measures}  # fmt: skip


def ablation_grid(m: Analyzed, batches: Sequence[FamilyBatch], steps: int, impl: str = "vmap") -> dict:
    """{meta row: {goal column: {metric: tensor [families]}}}: goal validation loss (and
    accuracy for labels) after ``steps`` goal steps, with the meta-update adapting all /
    head / body (or no meta-update) and the goal steps adapting all / head / body."""
    sizes = own_step_sizes(m.algo, m.step_sizes)
    grid: dict = {}
    for row in META_ROWS:
        grid[row] = {}
        for col in ADAPT:
            names = (subset(m.algo, row if row != "none" else "all"), subset(m.algo, col))
            losses, accs, labels, start = [], [], False, 0
            for batch in batches:
                theta, own = m.params, sizes
                if m.per_family:
                    theta = {k: v[start : start + len(batch)] for k, v in m.params.items()}
                    own = families_sizes(sizes, start, start + len(batch))
                start += len(batch)
                loss, acc = family_curves(m.algo, theta, own, m.buffers, batch, steps, row != "none", impl,
                                          m.per_family, names)  # fmt: skip
                losses.append(loss[:, steps].cpu())
                accs.append(acc[:, steps].cpu())
                labels = batch.goal_y.dtype == torch.int64
            grid[row][col] = {"loss": torch.cat(losses).double()}
            if labels:
                grid[row][col]["accuracy"] = torch.cat(accs).double()
    return grid


def pair_similarities(acts: dict, layers: Sequence[str], measures: Sequence[str], max_rows: int,
                      generator_seed: int) -> dict:  # fmt: skip
    """{measure: {pair: {layer: float}}} of activations ``acts[point][layer]`` recorded at
    theta, theta_prime and phi on the same inputs, with the row subsampling of
    `family_similarity` (one draw per layer from ``generator_seed``, the same rows at all
    three points): the RL and continual analyses' version of it."""
    out = {s: {p: {} for p in PAIRS} for s in measures}
    for layer in layers:
        rows = {pt: as_rows(a[layer]) for pt, a in acts.items()}
        keep = row_subset(rows["theta"].shape[0], max_rows, torch.Generator().manual_seed(generator_seed))
        if keep is not None:
            rows = {pt: r[keep] for pt, r in rows.items()}
        for pair, (a, b) in PAIRS.items():
            for s in measures:
                out[s][pair][layer] = similarity(rows[a], rows[b], s)
    return out


def stack_units(per_unit: Sequence[dict], layers: Sequence[str], measures: Sequence[str]) -> dict:
    """A list of `pair_similarities` results (one per unit) as {measure: {pair: {layer: tensor [units]}}}."""
    return {s: {p: {layer: torch.tensor([u[s][p][layer] for u in per_unit], dtype=torch.float64) for layer in layers}
                for p in PAIRS} for s in measures}  # fmt: skip


def mean_units(per_goal: Sequence[dict]) -> dict:
    """The mean of several `pair_similarities` results (a family's goal tasks)."""
    first = per_goal[0]
    return {s: {p: {layer: sum(g[s][p][layer] for g in per_goal) / len(per_goal) for layer in first[s][p]}
                for p in first[s]} for s in first}  # fmt: skip
