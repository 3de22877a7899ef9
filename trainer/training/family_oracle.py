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


def stack(values: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """Each tensor repeated along a new leading family axis of size ``n``."""
    return {k: v.detach().expand(n, *v.shape).clone() for k, v in values.items()}


def summed_loss(algo: MAML, shots: int):
    """``loss(stacked, stacked_sizes, meta_x, meta_y, goal_x, goal_y)``: the sum over families
    of each family's MAML loss with its own slice of ``stacked`` and of the log step sizes
    ``stacked_sizes`` (every tensor has a leading family axis)."""

    def family_loss(params, sizes, meta_x, meta_y, goal_x, goal_y):
        parts = split_parts((meta_x[None], meta_y[None], goal_x[None], goal_y[None]), shots)
        return algo.objective(params, sizes, {}, parts)[0]

    def loss(stacked, stacked_sizes, *tensors):
        return vmap(family_loss)(stacked, stacked_sizes, *tensors).sum()

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
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], float]:
    """MAML from ``init`` on each family of ``phases`` ([F]); returns (params with a leading
    family axis [F, ...], log step sizes, seconds). With ``algo.learn_step_sizes`` each
    family's MAML learns its own sizes (Adam on them too, as the training loop does), returned
    with the family axis [F]; fixed sizes are returned once, shared."""
    if steps < 0 or tasks_per_step < 1:
        raise FewtaskError(f"maml-oracle needs steps >= 0 and tasks per step >= 1, got {steps} and {tasks_per_step}")
    n = len(phases)
    shape = EpisodeShape(ways=1, shots=shots, queries=queries, val=queries, meta_tasks=0, goal_tasks=tasks_per_step)
    learn = algo.learn_step_sizes
    step_grads = grad(summed_loss(algo, shots), argnums=(0, 1) if learn else 0)
    if compile:
        step_grads = compiled_or_eager(step_grads, "maml-oracle")
    stacked = {k: v.requires_grad_() for k, v in stack(init, n).items()}
    sizes = {k: v.requires_grad_(learn) for k, v in stack(algo.init_step_sizes(init), n).items()}
    opt = torch.optim.Adam([*stacked.values(), *(sizes.values() if learn else ())], lr=lr)
    gen = torch.Generator().manual_seed(seed + SEED_OFFSET)
    start = time.perf_counter()
    for _ in tqdm(range(steps), desc="maml-oracle", disable=not progress, mininterval=1.0):
        batch = sinusoid.sample_batch(gen, n, shape, phases=phases)
        grads = step_grads({k: v.detach() for k, v in stacked.items()}, {k: v.detach() for k, v in sizes.items()},
                           batch.meta_x, batch.meta_y, batch.goal_x, batch.goal_y)  # fmt: skip
        param_grads, size_grads = grads if learn else (grads, {})
        for k, p in stacked.items():
            p.grad = param_grads[k]
        for k, g in size_grads.items():
            sizes[k].grad = g
        opt.step()
    seconds = time.perf_counter() - start
    # Fixed sizes are shared by every family: returned without the family axis.
    sizes = {k: v.detach() for k, v in sizes.items()} if learn else algo.init_step_sizes(init)
    return {k: v.detach() for k, v in stacked.items()}, sizes, seconds


def save(folder: Path, params: dict[str, torch.Tensor], step_sizes: dict[str, torch.Tensor], phases: torch.Tensor,
         steps: int, seconds: float, meta_reduction: str) -> None:  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"model": params, "step_sizes": step_sizes, "phases": phases, "step": steps, "seconds": seconds,
               "signature": stacked_signature(params), "meta_reduction": meta_reduction}  # fmt: skip
    ckpt.save(folder / ckpt.CHECKPOINT_NAME, payload)


def load(folder: Path, init: dict[str, torch.Tensor], phases: torch.Tensor) -> dict:
    """A finished oracle run for exactly these families (else a clear error). Runs saved
    before learned step sizes hold none: ``step_sizes`` is then None (they were fixed)."""
    want = {k: [len(phases), *v.shape] for k, v in init.items()}
    payload = ckpt.load(folder / ckpt.CHECKPOINT_NAME, want)
    if not torch.equal(payload["phases"], phases):
        raise FewtaskError(f"{folder} holds maml-oracle models for other held-out families; use the same --seed or a fresh --out")
    payload.setdefault("step_sizes", None)
    return payload
