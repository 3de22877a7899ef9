"""The OML paper's baselines besides OML itself.

- scratch: a freshly initialized network learns every layer online (split 0).
- pretraining: the network is trained by plain regression on the meta-training
  functions, then evaluated with its first ``split`` layers frozen, the split (and the
  inner step) chosen on validation problems ("best split"). Two recipes (`RECIPES`):
  ``ours`` (fresh points of the functions of random problems, one output, Adam 1e-3) and
  ``published`` (the OML repository's ``toy_baseline.py``: the pool in fixed groups of F
  functions, one group per step, one output head per group, Adam 1e-4 decayed x0.2 at
  steps 5,000 and 8,000).
- SR-NN: pretraining plus Liu et al.'s Set-KL sparsity regularizer on the representation
  (`set_kl`), evaluated like pretraining.
- oracle: OML meta-trained on the evaluation pool itself (same command, other pool).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch.func import grad

from fewtask_data import FewtaskError
from fewtask_data.sources.continual_sines import ContinualSpec, function_points, problem_batches
from fewtask_data.sources.sinusoid import step_generator
from trainer.algorithms.base import AlgorithmProtocol
from trainer.domains.continual.net import ContinualNet, Params, run_layers


@dataclass(frozen=True)
class PretrainRecipe:
    lr: float  # Adam's rate
    milestones: tuple[int, ...] = ()  # steps after which the rate is multiplied by gamma
    gamma: float = 1.0
    grouped: bool = False  # fixed groups of F pool functions, one output head per group


RECIPES = {
    "ours": PretrainRecipe(1e-3),
    "published": PretrainRecipe(1e-4, (5000, 8000), 0.2, grouped=True),
}


def recipe(name: str) -> PretrainRecipe:
    if name not in RECIPES:
        raise FewtaskError(f"unknown --pretrain-recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


@dataclass
class PointBatch:
    """Regression points: ``x`` [n, 1+F], ``y`` [n, 1]; ``head`` [n, 1] (int64): the output
    that predicts each point (None: the one output)."""

    x: torch.Tensor
    y: torch.Tensor
    head: torch.Tensor | None = None

    def __len__(self) -> int:
        return 1

    def to(self, device) -> "PointBatch":
        return PointBatch(self.x.to(device), self.y.to(device), None if self.head is None else self.head.to(device))


def iid_batches(seed: int, pool: torch.Tensor, problems: int, spec: ContinualSpec, start: int) -> Iterator[PointBatch]:
    """Our recipe: every function of ``problems`` random problems, ``spec.rand_points``
    fresh points each. The one-hot input is a function's position in its problem, which
    says nothing about which function it is: the regression target is ambiguous."""
    for b in problem_batches(seed, pool, problems, spec, start):
        yield PointBatch(b.rand_x.reshape(-1, b.rand_x.shape[-1]), b.rand_y.reshape(-1, 1))


def groups(pool: torch.Tensor, spec: ContinualSpec) -> int:
    """Heads of the published recipe: the pool's whole groups of F functions."""
    return pool.shape[0] // spec.functions


def grouped_batches(seed: int, pool: torch.Tensor, spec: ContinualSpec, points: int, start: int) -> Iterator[PointBatch]:
    """The published recipe: step n takes group g = n mod G (functions gF .. gF+F-1 of the
    pool, in turn as the repository's ``for heads in range(30)``), ``points`` fresh points
    of each; the one-hot says the function's position in its group and head g predicts
    it, so (position, head) names one function and every target is a function of the input.
    Step n's points depend only on (seed, n)."""
    f, count = spec.functions, groups(pool, spec)
    step = start
    while True:
        g = step % count
        functions = torch.cat([pool[g * f:(g + 1) * f], torch.ones(f, 1, dtype=pool.dtype)], dim=-1)[None]
        x, y = function_points(step_generator(seed, step), functions, points, spec)
        yield PointBatch(x.reshape(-1, x.shape[-1]), y.reshape(-1, 1), torch.full((f * points, 1), g, dtype=torch.long))
        step += 1


def set_kl(h: torch.Tensor, target: float, eps: float = 1e-4) -> torch.Tensor:
    """Liu, Kumaraswamy, Le & White's Set-KL sparsity penalty as the OML repository writes it
    (``srnn_omniglot.py``): per unit j its mean activation b_j over the batch rows of ``h``
    [n, units] (ReLU outputs); the KL between exponentials of means ``target`` and b_j + eps,
    t/b - log(t/b) - 1, counted only where b_j > target (only too-dense units are pushed
    down); the mean over units."""
    b = h.mean(0)
    r = target / (b + eps)
    return ((r - torch.log(r) - 1) * (b > target).to(h.dtype)).mean()


def head(params: Params, depth: int, index: int = 0) -> Params:
    """The one-output network of head ``index`` of a multi-head one: the online learner
    predicts with head 0, as the repository's evaluation (``evaluate_regression.py``)."""
    w, b = f"layers.{depth - 1}.weight", f"layers.{depth - 1}.bias"
    return {**params, w: params[w][index:index + 1], b: params[b][index:index + 1]}


@dataclass
class IIDRegression(AlgorithmProtocol):
    """Pretraining (and SR-NN) for the training loop: the MSE of the whole network on a
    `PointBatch` (of its head, when it has one), plus ``sparsity_weight`` x `set_kl` of the
    representation (the RLN's output) for SR-NN; one Adam step per batch."""

    model: ContinualNet
    name: str = "pretrain"
    sparsity_weight: float = 0.0
    sparsity_target: float = 0.1

    def init_step_sizes(self, params: Params) -> dict[str, torch.Tensor]:
        return {}

    def losses(self, params: Params, batch: PointBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(the MSE, the sparsity penalty, 0 without one)."""
        split, depth = self.model.split, self.model.depth
        h = run_layers(params, batch.x, 0, split, depth)
        out = run_layers(params, h, split, depth, depth)
        if batch.head is not None:
            out = out.gather(-1, batch.head)
        mse = F.mse_loss(out, batch.y)
        return mse, set_kl(h, self.sparsity_target) if self.sparsity_weight else mse.new_zeros(())

    def objective(self, params: Params, batch: PointBatch) -> torch.Tensor:
        mse, sparse = self.losses(params, batch)
        return mse + self.sparsity_weight * sparse

    def outer_grads(self, params: Params, step_sizes, buffers, batch):
        def loss(p):
            mse, sparse = self.losses(p, batch)
            return mse + self.sparsity_weight * sparse, (mse, sparse)

        grads, (mse, sparse) = grad(loss, has_aux=True)(params)
        metrics = {"loss": mse.detach()}
        if self.sparsity_weight:
            metrics["set_kl"] = sparse.detach()
        return grads, {}, metrics
