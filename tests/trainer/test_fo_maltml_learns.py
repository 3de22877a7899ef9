"""FO-MALTML (two-level Reptile with several inner steps per level) learns to learn on a small
image problem: after its meta-update and two goal steps it beats the pretraining baseline
(trained on the same classes, a fresh zero head, as `eval` scores it) and chance by a margin,
each finetuning with its own goal step chosen on validation classes (issue 22, item 3).

The problem: 3-way 1-shot tasks over 8x8 binary-pattern images (each class a random pattern,
each example the pattern with 10% of its pixels flipped plus Gaussian noise, flattened for an
MLP); labels are assigned per task, so a model can only score above chance after adapting.
Train, validation and test classes are disjoint."""

from __future__ import annotations

import torch

from fewtask_data import EpisodeShape, FamilyBatch
from trainer.algorithms import FlatBatch, make_algorithm
from trainer.evaluation.protocol import episode_curves
from trainer.evaluation.report import WITH, WITHOUT
from trainer.models import MLP

torch.set_num_threads(1)

PIXELS, WAYS, SHOTS, QUERIES = 64, 3, 1, 3
SHAPE = EpisodeShape(ways=WAYS, shots=SHOTS, queries=QUERIES, val=QUERIES, meta_tasks=3, goal_tasks=1)
PATTERNS = (torch.rand(100, PIXELS, generator=torch.Generator().manual_seed(1000)) < 0.3).float()
TRAIN, VAL, TEST = torch.arange(40), torch.arange(40, 60), torch.arange(60, 100)
STEPS, GOAL_STEPS = 150, 2


def examples(classes: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """[len(classes), n, PIXELS]: each class's pattern, 10% of pixels flipped, plus noise."""
    flips = (torch.rand(len(classes), n, PIXELS, generator=gen) < 0.1).float()
    return (PATTERNS[classes][:, None] - flips).abs() + 0.5 * torch.randn(len(classes), n, PIXELS, generator=gen)


def task(pool: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One N-way task: K support then Q query examples per class, labels 0..N-1 in a random order."""
    classes = pool[torch.randperm(len(pool), generator=gen)[:WAYS]]
    x = examples(classes, SHOTS + QUERIES, gen)
    labels = torch.arange(WAYS)
    xs = torch.cat([x[:, :SHOTS].reshape(-1, PIXELS), x[:, SHOTS:].reshape(-1, PIXELS)])
    ys = torch.cat([labels.repeat_interleave(SHOTS), labels.repeat_interleave(QUERIES)])
    return xs, ys


def family_batch(pool: torch.Tensor, families: int, gen: torch.Generator) -> FamilyBatch:
    def stacked(count):
        tasks = [[task(pool, gen) for _ in range(count)] for _ in range(families)]
        return (torch.stack([torch.stack([t[i] for t in f]) for f in tasks]) for i in (0, 1))

    (mx, my), (gx, gy) = stacked(SHAPE.meta_tasks), stacked(SHAPE.goal_tasks)
    return FamilyBatch(mx, my, gx, gy, SHAPE, [f"f{i}" for i in range(families)])


def train(name: str, outputs: int, **hp):
    """(algorithm, trained parameters) after STEPS Adam steps (pretraining: flat batches of
    32 labelled examples over the training classes)."""
    torch.manual_seed(0)
    algo = make_algorithm(name, MLP(PIXELS, (32, 32), outputs), **hp)
    params = {k: v.detach().clone().requires_grad_() for k, v in algo.model.named_parameters()}
    sizes = algo.init_step_sizes(params)
    opt, gen = torch.optim.Adam(params.values(), lr=1e-3), torch.Generator().manual_seed(0)
    for _ in range(STEPS):
        if name == "pretrain":
            classes = TRAIN[torch.randint(len(TRAIN), (32,), generator=gen)]
            batch = FlatBatch(examples(classes, 1, gen)[:, 0], classes)
        else:
            batch = family_batch(TRAIN, 4, gen)
        grads, _, _ = algo.outer_grads({k: v.detach() for k, v in params.items()}, sizes, {}, batch)
        for k, p in params.items():
            p.grad = grads[k]
        opt.step()
    return algo, {k: v.detach() for k, v in params.items()}


def accuracy(algo, params, pool: torch.Tensor, seed: int, goal_lr: float, protocol: str) -> float:
    """Mean goal accuracy after GOAL_STEPS goal steps of size ``goal_lr`` on 200 episodes of ``pool``."""
    episodes = [family_batch(pool, 50, torch.Generator().manual_seed(seed + i)) for i in range(4)]
    curves = episode_curves(algo, params, algo.init_step_sizes(params), {}, episodes, GOAL_STEPS,
                            protocols=(protocol,), finetune_lr=goal_lr)  # fmt: skip
    return float(curves[protocol]["accuracy"][:, GOAL_STEPS].mean())


def best_on_validation(algo, params, protocol: str, grid=(0.1, 0.3, 1.0)) -> float:
    return max(grid, key=lambda lr: accuracy(algo, params, VAL, 500, lr, protocol))


def test_fo_maltml_beats_pretraining_and_chance_on_a_small_image_problem():
    fo, fo_params = train("fo-maltml", WAYS, alpha=0.1, beta=0.1, gamma=0.1, task_steps=5, meta_steps=5, goal_steps=5)
    pre, pre_params = train("pretrain", len(TRAIN))
    # pretraining as `eval` scores it: the trained body with a fresh, zero N-way head
    pre = make_algorithm("pretrain", MLP(PIXELS, (32, 32), WAYS))
    pre_params = {**pre_params, "head.weight": torch.zeros(WAYS, 32), "head.bias": torch.zeros(WAYS)}
    fo_acc = accuracy(fo, fo_params, TEST, 900, best_on_validation(fo, fo_params, WITH), WITH)
    pre_acc = accuracy(pre, pre_params, TEST, 900, best_on_validation(pre, pre_params, WITHOUT), WITHOUT)
    chance = 1 / WAYS
    assert fo_acc > chance + 0.2 and fo_acc > pre_acc + 0.05, (fo_acc, pre_acc)
