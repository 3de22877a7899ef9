"""OML (Javed & White 2019) and MALTML-continual in the functional core.

One continual problem's OML objective: from the parameters theta, learn the problem
online -- one SGD step of the PLN (size ``lr``) per mini-batch of the trajectory, the
RLN fixed -- then take the MSE of the learned network on every trajectory point plus
the problem's random batch (fresh points of all its functions). The outer gradient
goes through all F*S online steps (second order; ``first_order`` detaches each online
gradient). The RLN does not change along the trajectory, so its features are
computed once for all points; the plain-loop reference (`reference.py`) runs the whole
network at every step and the tests check the two agree. The problems of a batch ride
a leading axis through batched matmuls, and OML's outer gradient is plain autograd.

MALTML-continual (Devos & Dandi section 4.2): V_beta on the L problems of a family with
the OML objective as the inner meta-objective (the *sum* of their OML losses, Eq. 2, or
their mean), then the goal problem's OML objective from theta'_j, differentiated through
both. Both classes satisfy the loop's `AlgorithmProtocol`; MALTML-continual's levels are a
`Levels` spec (the online step size serves the task and goal levels, whose step counts
the trajectories fix) and its derivative order maps to first-order flags by `order_flags`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Iterable

import torch
from torch.func import vmap

from fewtask_data import FewtaskError
from trainer.algorithms.base import AlgorithmProtocol, Levels, order_flags
from trainer.core import functional as fn
from trainer.core.step_sizes import check_per_step, check_step_size, level_lrs, step_tags
from trainer.domains.continual import reference
from trainer.domains.continual.net import ContinualNet, Params, mse_grads, online_names, per_tensor, run_layers


def learn_online(params: Params, h: torch.Tensor, traj_y: torch.Tensor, lr: float, split: int, depth: int,
                 first_order: bool) -> Params:  # fmt: skip
    """Each problem's PLN after its online pass: ``h`` [P, steps, b, width] are the RLN
    features of the problems' trajectories, ``traj_y`` [P, steps, b, 1]. Returns only the
    PLN's parameters, one set per problem ([P, ...]). The online gradients are
    `net.mse_grads` (backpropagation written out, checked against torch.func.grad). ``lr``: a
    number, sizes per PLN tensor, or a per-step schedule of them (`net.per_tensor`): the
    trajectory's step s takes entry s, a step past its end the last one (`functional.at_step`)."""
    pln = {k: params[k] for k in online_names(params, split)}
    lrs = per_tensor(lr, pln)

    def step_loss(q: Params, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return mse_grads(q, batch[0], batch[1], split, depth)[0].sum()  # problems are independent: sum

    def step_grads(q: Params, batch: tuple[torch.Tensor, torch.Tensor]) -> Params:
        return mse_grads(q, batch[0], batch[1], split, depth)[1]

    steps_first = (h.transpose(0, 1), traj_y.transpose(0, 1))
    return fn.descend_online(step_loss, pln, lrs, steps_first, None, first_order, grad_fn=step_grads)


def problems_loss(params: Params, tensors, lr: float, split: int, depth: int, first_order: bool = False) -> torch.Tensor:
    """The OML objective (module doc) of each problem along the leading axis of
    ``tensors`` (traj_x, traj_y, rand_x, rand_y): [P]. The problems ride that axis through
    batched matmuls (`net.linear`), which on CPU runs the 400 online steps about twice as
    fast as `torch.func.vmap` over `problem_loss` (scripts/bench_continual.py)."""
    traj_x, traj_y, rand_x, rand_y = tensors
    h = run_layers(params, traj_x, 0, split, depth)
    pln = learn_online(params, h, traj_y, lr, split, depth, first_order)
    count = traj_x.shape[0]
    feats = torch.cat([h.reshape(count, -1, h.shape[-1]), run_layers(params, rand_x, 0, split, depth)], 1)
    targets = torch.cat([traj_y.reshape(count, -1, 1), rand_y], 1)
    return (run_layers(pln, feats, split, depth, depth) - targets).pow(2).mean((-2, -1))


def problem_loss(params: Params, traj_x, traj_y, rand_x, rand_y, lr: float, split: int, depth: int,
                 first_order: bool = False) -> torch.Tensor:  # fmt: skip
    """One problem's OML objective (tensors without the problem axis)."""
    one = tuple(t.unsqueeze(0) for t in (traj_x, traj_y, rand_x, rand_y))
    return problems_loss(params, one, lr, split, depth, first_order)[0]


def problems_loss_vmap(params: Params, tensors, lr: float, split: int, depth: int, first_order: bool = False) -> torch.Tensor:
    """`problems_loss` as `torch.func.vmap` over `problem_loss` (the benchmark's torch.func path)."""
    one = lambda tx, ty, rx, ry: problem_loss(params, tx, ty, rx, ry, lr, split, depth, first_order)  # noqa: E731
    return vmap(one)(*tensors)


def meta_finetune(params: Params, meta_tensors, lr: float, beta: float, meta_steps: int, split: int, depth: int,
                  task_first_order: bool, meta_first_order: bool, reduction: str = "sum") -> Params:  # fmt: skip
    """V_beta: ``meta_steps`` steps of size beta on the L problems' OML losses (summed, Eq. 2)."""
    if meta_tensors[0].shape[0] == 0:
        return params
    betas = per_tensor(beta, params)
    losses = lambda p: problems_loss(p, meta_tensors, lr, split, depth, task_first_order)  # noqa: E731
    return fn.descend_tasks(losses, params, betas, meta_steps, None, meta_first_order, reduction)


@dataclass
class OML(AlgorithmProtocol):
    """OML for the training loop (`trainer.training.loop.train`): ``outer_grads`` of the mean OML
    objective over a batch of problems. ``impl="loop"`` uses the plain-loop reference."""

    model: ContinualNet
    lr: float = 0.003  # the online (inner) step size
    first_order: bool = False
    impl: str = "vmap"
    name: str = "oml"
    # Learn the online step size per PLN tensor (under level alpha, the method's finetuning
    # level), starting at ``lr``; MALTML-continual also beta per tensor and gamma per PLN tensor.
    learn_step_sizes: bool = False
    # MAML++'s per-step sizes: one learned size per (level, step, tensor), the online levels'
    # step s being the s-th mini-batch of the trajectory (``online_steps`` = F * S of them).
    per_step_step_sizes: bool = False
    online_steps: int = 0

    def __post_init__(self) -> None:
        check_step_size("inner step size", self.lr)
        check_per_step(self.learn_step_sizes, self.per_step_step_sizes)
        if self.per_step_step_sizes and self.online_steps < 1:
            raise FewtaskError(f"per-step step sizes need the trajectory's online steps (>= 1), got {self.online_steps}")
        if self.impl not in ("vmap", "loop"):
            raise FewtaskError(f"impl must be vmap or loop, got {self.impl!r}")
        if self.model.split >= self.model.depth:
            raise FewtaskError("the RLN takes every layer; leave at least one layer to learn online")
        self.split, self.depth = self.model.split, self.model.depth

    def init_step_sizes(self, params: Params) -> dict[str, torch.Tensor]:
        """Fixed step sizes: nothing for the loop to learn or checkpoint; learned: their logs."""
        return self.log_sizes(params) if self.learn_step_sizes else {}

    def steps_of(self, level: str) -> int:
        """Sizes per tensor of an online level (alpha, gamma): 1, or per step the trajectory's steps."""
        return self.online_steps if self.per_step_step_sizes else 1

    def log_sizes(self, params: Params) -> dict[str, torch.Tensor]:
        return _logs(params, {"alpha": (self.lr, online_names(params, self.split), self.steps_of("alpha"))})

    def objective(self, params: Params, batch, sizes: dict | None = None) -> torch.Tensor:
        lr = level_lrs(sizes, "alpha") if sizes else self.lr
        return problems_loss(params, batch.tensors(), lr, self.split, self.depth, self.first_order).mean()

    def loop_objective(self, params: Params, batch, sizes: dict | None = None) -> torch.Tensor:
        lr = level_lrs(sizes, "alpha") if sizes else self.lr
        return reference.loop_oml_loss(params, batch.tensors(), lr, self.split, self.depth, self.first_order)

    def outer_grads(self, params: Params, step_sizes, buffers, batch):
        """Gradients w.r.t. the parameters and the log step sizes (none unless learned): one
        plain autograd pass on either path (no torch.func transform to pay for at the outer level)."""
        objective = self.loop_objective if self.impl == "loop" else self.objective
        with torch.enable_grad():
            p = {k: v.detach().requires_grad_() for k, v in params.items()}
            s = {k: v.detach().requires_grad_() for k, v in step_sizes.items()}
            loss = objective(p, batch, s)
            g = torch.autograd.grad(loss, [*p.values(), *s.values()])
        return dict(zip(p, g[: len(p)])), dict(zip(s, g[len(p) :])), {"loss": loss.detach()}


def _logs(params: Params, levels: dict[str, tuple[float, Iterable[str], int]]) -> dict[str, torch.Tensor]:
    """Log step sizes ``"<level>:<tensor>"`` for each level's (value, tensor names, steps);
    with steps > 1 also step s's ``"<level>@<s>:<tensor>"`` (`step_sizes.step_tags`)."""
    return {f"{tag}:{k}": torch.tensor(math.log(value), dtype=params[k].dtype, device=params[k].device)
            for level, (value, names, steps) in levels.items() for tag in step_tags(level, steps)
            for k in sorted(names)}  # fmt: skip


@dataclass
class MALTMLContinual(OML):
    """MALTML with OML as the inner meta-objective: theta -> V_beta on the family's L
    problems -> the goal problems' OML objective. ``order`` 3 is exact, 2 makes the online
    steps inside V_beta first order, 1 is fully first order."""

    trains_meta_step: ClassVar[bool] = True

    beta: float = 0.003
    meta_steps: int = 1
    order: int = 3
    name: str = "maltml-continual"
    meta_reduction: str = "sum"  # Eq. 2 over the L problems' OML losses: "sum" (the paper) or "mean"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.levels  # noqa: B018 -- validates beta, meta_steps, the order and the reduction

    @property
    def levels(self) -> Levels:
        return Levels(self.lr, self.beta, self.lr, None, self.meta_steps, None, self.order, self.meta_reduction)

    def steps_of(self, level: str) -> int:
        """Per step, beta's schedule has one size per meta step (the online levels: `OML.steps_of`)."""
        return self.meta_steps if level == "beta" and self.per_step_step_sizes else super().steps_of(level)

    def log_sizes(self, params: Params) -> dict[str, torch.Tensor]:
        online = online_names(params, self.split)
        levels = {"alpha": (self.lr, online), "beta": (self.beta, params), "gamma": (self.lr, online)}
        return _logs(params, {lv: (*v, self.steps_of(lv)) for lv, v in levels.items()})

    def sizes(self, sizes: dict | None) -> tuple:
        """(alpha, beta, gamma): the learned per-tensor sizes, or the fixed numbers."""
        if not sizes:
            return self.lr, self.beta, self.lr
        return tuple(level_lrs(sizes, lv) for lv in ("alpha", "beta", "gamma"))

    def adapted(self, params: Params, meta_tensors, outer: bool = True, sizes: dict | None = None) -> Params:
        """theta'_j for one family (``outer=False``: the meta step carries no outer derivative)."""
        flags = order_flags(self.order)
        alpha, beta, _ = self.sizes(sizes)
        return meta_finetune(params, meta_tensors, alpha, beta, self.meta_steps, self.split, self.depth,
                             flags.task, flags.meta or not outer, self.meta_reduction)  # fmt: skip

    def family_loss(self, params: Params, meta_tensors, goal_tensors, sizes: dict | None = None) -> torch.Tensor:
        theta = self.adapted(params, meta_tensors, sizes=sizes)
        goal_fo = order_flags(self.order).goal
        return problems_loss(theta, goal_tensors, self.sizes(sizes)[2], self.split, self.depth, goal_fo).mean()

    def objective(self, params: Params, batch, sizes: dict | None = None) -> torch.Tensor:
        # A Python loop over the B families, differentiated by plain autograd: per outer step
        # 1.4x (1 family) and 3.0x (2 families) faster than torch.func.vmap over them at the
        # paper's size (scripts/bench_continual.py --maltml-families 1,2); each family's L
        # problems stay batched.
        meta, goal = batch.meta.tensors(), batch.goal.tensors()
        losses = [self.family_loss(params, tuple(t[j] for t in meta), tuple(t[j] for t in goal), sizes)
                  for j in range(meta[0].shape[0])]  # fmt: skip
        return torch.stack(losses).mean()

    def loop_objective(self, params: Params, batch, sizes: dict | None = None) -> torch.Tensor:
        alpha, beta, gamma = self.sizes(sizes)
        return reference.loop_maltml_loss(params, batch, alpha, beta, self.meta_steps, self.split, self.depth,
                                          order_flags(self.order), self.meta_reduction, gamma)  # fmt: skip
