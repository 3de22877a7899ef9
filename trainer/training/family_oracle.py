"""The `maml-oracle` baseline: one MAML model per held-out family, meta-trained on
many tasks of that family alone (the issue's upper bound for the sinusoid
experiment: MALTML has to infer the family from L tasks, this baseline has seen
unlimited tasks of exactly that family).

All families train at once. The parameters get a leading family axis and the loss
is the sum of the families' MAML losses; family f's loss depends only on slice f,
and Adam is elementwise, so one Adam step on the sum is exactly one step of F
independent MAML runs, batched by vmap.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch.func import grad, vmap
from tqdm import tqdm

from fewtask_data import EpisodeShape, FewtaskError
from fewtask_data.sources import sinusoid
from trainer.algorithms import compiled_or_eager, split_parts
from trainer.algorithms.maml import MAML
from trainer.training import checkpoint as ckpt

SEED_OFFSET = 4_409_000  # the oracle's task stream differs from every training and evaluation stream


def stacked_signature(params: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in params.items()}


def summed_loss(algo: MAML, sizes: dict[str, torch.Tensor], shots: int):
    """``loss(stacked, meta_x, meta_y, goal_x, goal_y)``: the sum over families of each
    family's MAML loss with its own slice of ``stacked`` (tensors have a family axis)."""

    def family_loss(params, meta_x, meta_y, goal_x, goal_y):
        parts = split_parts((meta_x[None], meta_y[None], goal_x[None], goal_y[None]), shots)
        return algo.objective(params, sizes, {}, parts)[0]

    def loss(stacked, *tensors):
        return vmap(family_loss)(stacked, *tensors).sum()

    return loss


def train_family_oracles(
    algo: MAML,
    init: dict[str, torch.Tensor],
    phases: torch.Tensor,
    steps: int,
    tasks_per_step: int,
    shots: int,
    queries: int,
    lr: float,
    seed: int,
    compile: bool = False,
    progress: bool = True,
) -> tuple[dict[str, torch.Tensor], float]:
    """MAML from ``init`` on each family of ``phases`` ([F]); returns (params with a
    leading family axis [F, ...], seconds)."""
    if steps < 0 or tasks_per_step < 1:
        raise FewtaskError(f"maml-oracle needs steps >= 0 and tasks per step >= 1, got {steps} and {tasks_per_step}")
    n = len(phases)
    shape = EpisodeShape(ways=1, shots=shots, queries=queries, val=queries, meta_tasks=0, goal_tasks=tasks_per_step)
    step_grads = grad(summed_loss(algo, algo.init_step_sizes(init), shots))
    if compile:
        step_grads = compiled_or_eager(step_grads, "maml-oracle")
    stacked = {k: v.detach().expand(n, *v.shape).clone().requires_grad_() for k, v in init.items()}
    opt = torch.optim.Adam(stacked.values(), lr=lr)
    gen = torch.Generator().manual_seed(seed + SEED_OFFSET)
    start = time.perf_counter()
    for _ in tqdm(range(steps), desc="maml-oracle", disable=not progress, mininterval=1.0):
        batch = sinusoid.sample_batch(gen, n, shape, phases=phases)
        grads = step_grads({k: v.detach() for k, v in stacked.items()}, batch.meta_x, batch.meta_y, batch.goal_x, batch.goal_y)
        for k, p in stacked.items():
            p.grad = grads[k]
        opt.step()
    return {k: v.detach() for k, v in stacked.items()}, time.perf_counter() - start


def save(folder: Path, params: dict[str, torch.Tensor], phases: torch.Tensor, steps: int, seconds: float,
         meta_reduction: str) -> None:  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"model": params, "phases": phases, "step": steps, "seconds": seconds, "signature": stacked_signature(params),
               "meta_reduction": meta_reduction}  # fmt: skip
    ckpt.save(folder / ckpt.CHECKPOINT_NAME, payload)


def load(folder: Path, init: dict[str, torch.Tensor], phases: torch.Tensor) -> dict:
    """A finished oracle run for exactly these families (else a clear error)."""
    want = {k: [len(phases), *v.shape] for k, v in init.items()}
    payload = ckpt.load(folder / ckpt.CHECKPOINT_NAME, want)
    if not torch.equal(payload["phases"], phases):
        raise FewtaskError(f"{folder} holds maml-oracle models for other held-out families; use the same --seed or a fresh --out")
    return payload
