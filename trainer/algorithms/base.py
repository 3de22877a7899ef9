"""What every algorithm shares: settings, traits, the outer-gradient step, batch views.

Every algorithm exposes one method the training loop calls::

    grads, step_size_grads, metrics = algo.outer_grads(params, step_sizes, buffers, batch)

``grads`` has one entry per model parameter: a true gradient, or for Reptile and
FO-MALTML the pseudo-gradient theta - theta', so one Adam loop drives them all.
``step_sizes`` holds log step sizes (see `trainer.core.step_sizes`). When step sizes are
learned their gradients come back in ``step_size_grads``; otherwise that dict is empty.

`AlgorithmProtocol` writes down all the loop relies on; the supervised `Algorithm` below,
continual's `OML`, `MALTMLContinual` and `IIDRegression` satisfy it. `Levels` is the one
spec of MALTML's three levels (step sizes, step counts, derivative order, Eq. 2's
reduction) and `order_flags` the one mapping of an order to first-order flags, which the
supervised algorithms, the RL methods (`RLSettings`) and the continual ones share.

A subclass defines ``objective`` (the fast torch.func path) and, when it has a
plain-loop reference, ``loop_objective`` (the same objective with Python loops and
torch.autograd, built from `trainer.core.reference`). Its class attributes are the facts
the commands need about it (the traits below), so adding an algorithm touches its
own module and one registration line in `trainer/algorithms/__init__.py`.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, NamedTuple, Protocol, runtime_checkable

import torch
from torch import nn
from torch.func import grad

from fewtask_data import FamilyBatch, FewtaskError
from trainer.core import functional as fn
from trainer.core import reference
from trainer.core.stabilizers import multi_step_weights, zero_head
from trainer.core.step_sizes import LEVELS, check_step_size, init_step_sizes
from trainer.models import head_names

ADAPT_CHOICES = ("all", "head", "body")


@runtime_checkable
class AlgorithmProtocol(Protocol):
    """What the training loop (`trainer.training.loop.train`) relies on. An algorithm with
    no meta step or learned step sizes may subclass it to inherit the defaults below."""

    name: str  # recorded in checkpoints; resuming a run of another name is refused
    learn_step_sizes: bool = False  # whether outer_grads returns step-size gradients (Adam then trains them)
    trains_meta_step: bool = False  # whether training takes Eq. 2's step (then a resume must keep meta_reduction)
    meta_reduction: str = "sum"  # Eq. 2's reduction of the L task losses; recorded in every checkpoint

    def init_step_sizes(self, params: fn.Params) -> fn.Params:
        """The (log) step sizes the loop keeps beside the parameters; {} when there are none."""
        ...

    def outer_grads(self, params: fn.Params, step_sizes: fn.Params, buffers: fn.Params,
                    batch) -> tuple[fn.Params, fn.Params, dict]:  # fmt: skip
        """(a gradient or pseudo-gradient per parameter, step-size gradients or {}, metrics
        with at least "loss") for one batch."""
        ...


class OrderFlags(NamedTuple):
    """First-order flags per level; a first-order step treats its update direction as a
    constant (`trainer.core.functional`)."""

    task: bool  # the task steps (alpha) inside the meta-update
    meta: bool  # the meta-update's own steps (beta, Eq. 2)
    goal: bool  # the goal steps (gamma; MAML's only level)


ORDER_FLAGS = {3: OrderFlags(False, False, False), 2: OrderFlags(True, False, False), 1: OrderFlags(True, True, True)}


def order_flags(order: int) -> OrderFlags:
    """Derivative order -> first-order flags: 3 exact, 2 first-order task steps inside the
    meta-update, 1 fully first order."""
    if order not in ORDER_FLAGS:
        raise FewtaskError(f"derivative order must be 1, 2 or 3, got {order!r}")
    return ORDER_FLAGS[order]


@dataclass(frozen=True)
class Levels:
    """MALTML's levels, configured the same way in every domain: ``task_steps`` steps of size
    alpha on each of the L tasks inside the meta-update, ``meta_steps`` steps of size beta
    on their query losses (Eq. 2: their sum, or with ``reduction="mean"`` their mean), then
    ``goal_steps`` steps of size gamma on a goal task; ``order`` says which levels are
    differentiated through (`order_flags`). A step count of None: the domain's data fixes it
    (OML takes one online step per trajectory batch)."""

    alpha: float
    beta: float
    gamma: float
    task_steps: int | None = 1
    meta_steps: int | None = 1
    goal_steps: int | None = 1
    order: int = 3
    reduction: str = "sum"

    def __post_init__(self) -> None:
        for level in LEVELS:
            check_step_size(f"step size {level}", getattr(self, level))
        for key in ("task_steps", "meta_steps", "goal_steps"):
            count = getattr(self, key)
            if count is not None and not (isinstance(count, int) and count >= 0):
                raise FewtaskError(f"{key.replace('_', '-')} must be >= 0, got {count!r}")
        order_flags(self.order)
        if self.reduction not in fn.REDUCTIONS:
            raise FewtaskError(f"--meta-reduction must be sum or mean, got {self.reduction!r}")

    @property
    def flags(self) -> OrderFlags:
        return order_flags(self.order)


def stabilizer_settings(s: Any, *names: str) -> dict:
    """The named stabilizer fields of a command's settings ``s`` that it has (settings from
    before the stabilizers have none: the algorithm's defaults, off, apply)."""
    return {k: getattr(s, k) for k in names if hasattr(s, k)}


def batch_parts(batch: FamilyBatch) -> tuple[torch.Tensor, ...]:
    """(meta support x, y, meta query x, y, goal support x, y, goal validation x, y)."""
    return split_parts(batch_tensors(batch), batch.shape.support_size)


def batch_tensors(batch: FamilyBatch) -> tuple[torch.Tensor, ...]:
    return batch.meta_x, batch.meta_y, batch.goal_x, batch.goal_y


def split_parts(tensors: tuple[torch.Tensor, ...], k: int) -> tuple[torch.Tensor, ...]:
    """`batch_parts` from (meta_x, meta_y, goal_x, goal_y) and the support size k. Compiled
    steps take the four whole tensors: fewer inputs, cheaper guards."""
    mx, my, gx, gy = tensors
    return mx[:, :, :k], my[:, :, :k], mx[:, :, k:], my[:, :, k:], gx[:, :, :k], gy[:, :, :k], gx[:, :, k:], gy[:, :, k:]


def flat_tasks(t: torch.Tensor) -> torch.Tensor:
    """[B, T, n, ...] -> [B*T, n, ...]: families ignored, tasks as plain tasks."""
    return t.reshape(-1, *t.shape[2:])


@dataclass
class Algorithm:
    """Shared settings; subclasses define `objective` (or override `outer_grads`)."""

    # -- traits: facts about the method, read by the commands ---------------
    finetune_level: ClassVar[str] = "alpha"  # step size that finetunes goal tasks at evaluation (`eval`)
    fixed_order: ClassVar[int | None] = None  # a preset derivative order that --order does not change
    learns_step_sizes: ClassVar[bool] = False  # whether --learn-step-sizes applies
    flat_training: ClassVar[bool] = False  # `fit` trains it on flat labelled batches; `eval` gives it a fresh head
    trains_meta_step: ClassVar[bool] = False  # its training takes Eq. 2's step (so --meta-reduction changes it)

    model: nn.Module
    alpha: float = 0.001
    beta: float = 0.01
    gamma: float = 0.001
    task_steps: int = 1  # r: task steps of size alpha
    meta_steps: int = 1  # m: meta steps of size beta
    goal_steps: int = 1  # finetuning steps of size gamma on a goal task (training)
    order: int = 3
    # Eq. 2's meta-finetuning step over the L task losses: "sum" (the paper) or "mean" (this
    # project before the option; checkpoints without the field were trained with it).
    meta_reduction: str = "sum"
    learn_step_sizes: bool = False
    # MAML++'s per-layer *per-step* step sizes (Antoniou et al. 2019): one per (level, step,
    # parameter tensor) instead of one per (level, parameter tensor); off by default.
    per_step_step_sizes: bool = False
    # MAML++'s multi-step loss (off by default): the target loss after every step of the level the
    # outer loss adapts with (MALTML: its goal steps; the MAML family: its task steps), weighted
    # (`stabilizers.multi_step_weights`) and annealed toward the last step over msl_anneal_steps
    # outer steps, after which only the last step's loss counts.
    multi_step_loss: bool = False
    # MALTML's meta level: the outer loss after every meta step (finetuning from each), weighted alike.
    meta_multi_step_loss: bool = False
    msl_anneal_steps: int = 1000
    # The zeroing trick (Ye & Chao 2022): the head starts every task and episode at zero.
    zero_head: bool = False
    adapt: str = "all"  # which parameters the inner loops adapt: all, head (ANIL), body (BOIL)
    impl: str = "vmap"  # vmap | loop (plain-loop reference)
    compile: bool | str = False  # True = inductor; or a torch.compile backend name (e.g. "aot_eager")
    name: str = "algorithm"  # what checkpoints record (the registered name, or a run's label)
    _compiled: Callable | None = field(default=None, init=False, repr=False)
    _outer_step: int = field(default=0, init=False, repr=False)  # 0-based; the loop sets it (`set_outer_step`)
    _first_order: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.levels  # noqa: B018 -- validates the step sizes, step counts, order and reduction
        if self.adapt not in ADAPT_CHOICES:
            raise FewtaskError(f"adapt must be one of {', '.join(ADAPT_CHOICES)}, got {self.adapt!r}")
        if self.impl not in ("vmap", "loop"):
            raise FewtaskError(f"impl must be vmap or loop, got {self.impl!r}")
        if self.fixed_order is not None and self.order != self.fixed_order:
            raise FewtaskError(f"{self.name} has derivative order {self.fixed_order}; --order does not apply to it")
        if self.learn_step_sizes and not self.learns_step_sizes:
            raise FewtaskError(f"{self.name} cannot learn step sizes; drop --learn-step-sizes")
        self._check_stabilizers()
        self.forward = fn.make_forward(self.model)
        heads = head_names(self.model)
        names = [n for n, _ in self.model.named_parameters()]
        if (self.adapt != "all" or self.zero_head) and not heads:
            what = "--zero-head" if self.zero_head else f"adapt={self.adapt}"
            raise FewtaskError(f"{what} needs a model whose last layer is called 'head'")
        self.heads = heads
        self.names: frozenset[str] | None = {
            "all": None,
            "head": heads,
            "body": frozenset(n for n in names if n not in heads),
        }[self.adapt]

    # -- stabilizers ----------------------------------------------------------
    takes_multi_step_loss: ClassVar[bool] = False  # a true outer gradient through its inner steps
    takes_meta_multi_step_loss: ClassVar[bool] = False  # MALTML: a meta level inside the outer loss

    def _check_stabilizers(self) -> None:
        if self.multi_step_loss and not self.takes_multi_step_loss:
            raise FewtaskError(f"{self.name} has no inner steps under its outer gradient; drop --multi-step-loss")
        if self.meta_multi_step_loss and not self.takes_meta_multi_step_loss:
            raise FewtaskError(f"{self.name} has no meta level under its outer gradient; drop --meta-multi-step-loss")
        if not (isinstance(self.msl_anneal_steps, int) and self.msl_anneal_steps >= 1):
            raise FewtaskError(f"msl-anneal-steps must be >= 1, got {self.msl_anneal_steps!r}")

    def set_outer_step(self, step: int) -> None:
        """The 0-based outer step the next `outer_grads` belongs to (anneals the multi-step loss)."""
        self._outer_step = step

    def step_weights(self, steps: int, on: bool) -> torch.Tensor | None:
        """The multi-step loss's weights over ``steps`` inner steps now, or None (plain loss)."""
        weights = multi_step_weights(steps, self._outer_step, self.msl_anneal_steps) if on else None
        return None if weights is None else torch.tensor(weights, dtype=torch.float64)

    def start_params(self, params: fn.Params, autograd: bool = False) -> fn.Params:
        """The parameters an episode's adaptation starts from: with the zeroing trick, a zero head
        (``autograd``: for the plain-loop reference)."""
        return zero_head(params, self.heads, autograd) if self.zero_head else params

    def first_order_version(self) -> Algorithm:
        """The same method at derivative order 1 (derivative-order annealing's early phase)."""
        if self.fixed_order is not None or self.order == 1:
            return self
        if self._first_order is None:
            self._first_order = dataclasses.replace(self, order=1)
        return self._first_order

    @property
    def levels(self) -> Levels:
        """Its fields as the shared spec (built on each call: the fields stay the settings)."""
        return Levels(self.alpha, self.beta, self.gamma, self.task_steps, self.meta_steps, self.goal_steps, self.order,
                      self.meta_reduction)  # fmt: skip

    @property
    def flags(self) -> OrderFlags:
        """(task, meta, goal) first-order flags of its order."""
        return order_flags(self.order)

    @classmethod
    def has_loop_reference(cls) -> bool:
        """Whether ``impl="loop"`` can train it (it states a `loop_objective`)."""
        return cls.loop_objective is not Algorithm.loop_objective

    @classmethod
    def sinusoid_hparams(cls, s: Any) -> dict:
        """Its hyperparameters in `fewtask-train sinusoid`, from the command's settings ``s``:
        every method gets the shared step sizes and step counts; the derivative order and
        learned step sizes only where a subclass takes them (MALTML, the MAML family)."""
        return dict(alpha=s.alpha, beta=s.beta, gamma=s.gamma, task_steps=s.task_steps, meta_steps=s.meta_steps,
                    goal_steps=s.goal_steps, meta_reduction=s.meta_reduction, impl=s.impl, compile=s.compile,
                    **stabilizer_settings(s, "msl_anneal_steps", "zero_head"))  # fmt: skip

    # -- state the loop keeps -------------------------------------------------
    def init_step_sizes(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        per_step = {"alpha": self.task_steps, "beta": self.meta_steps, "gamma": self.goal_steps}
        return init_step_sizes(params, self.alpha, self.beta, self.gamma, per_step if self.per_step_step_sizes else None)

    # -- the one method the loop calls ---------------------------------------
    def outer_grads(self, params, step_sizes, buffers, batch: FamilyBatch):
        if self.impl == "loop":
            if not self.has_loop_reference():
                raise FewtaskError(f"{self.name} has no plain-loop reference; use --impl vmap")
            return reference.reference_grads(self, params, step_sizes, buffers, batch_parts(batch))
        step = self._grad_step()
        return step(params, step_sizes, buffers, batch_tensors(batch), batch.shape.support_size)

    def objective(self, params, step_sizes, buffers, parts) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def loop_objective(self, params, lrs, buffers, parts) -> tuple[torch.Tensor, torch.Tensor]:
        """(outer loss, accuracy) with plain loops; ``lrs``: {level: {param: step size}}."""
        raise NotImplementedError

    def _grads(self, params, step_sizes, buffers, tensors, k):
        """True gradients of `objective`; w.r.t. step sizes only when they are learned."""
        parts = split_parts(tensors, k)
        if self.learn_step_sizes:
            g = grad(self.objective, argnums=(0, 1), has_aux=True)
            (gp, gs), metrics = g(params, step_sizes, buffers, parts)
        else:
            gp, metrics = grad(self.objective, has_aux=True)(params, step_sizes, buffers, parts)
            gs = {}
        return gp, gs, metrics

    def _grad_step(self) -> Callable:
        if not self.compile:
            return self._grads
        if self._compiled is None:
            self._compiled = compiled_or_eager(self._grads, self.name, self.compile)
        return self._compiled

    def meta_update_first_order(self) -> bool:
        """Whether the meta-update (as this method trains with it) uses first-order task
        steps; that changes the meta-gradient's value, so evaluation must match it."""
        return self.flags.task


def compiled_or_eager(f: Callable, label: str, backend: bool | str = True) -> Callable:
    """``torch.compile(f)``, falling back to eager ``f`` (with a warning) if compiling fails.

    Compile the function that calls torch.func.grad: dynamo traces the transforms
    into one forward graph (aot_autograd itself has no double backward). The C++
    wrapper removes per-kernel Python overhead, which dominates for small models;
    inductor's on-disk cache makes later runs start faster.
    """
    state = {"fn": None}

    def call(*args):
        if state["fn"] is not None:
            return state["fn"](*args)
        on_cpu = next(iter(args[0].values())).device.type == "cpu"
        if backend is True or backend == "inductor":
            compiled = torch.compile(f, dynamic=False, options={"cpp_wrapper": on_cpu})
        else:
            compiled = torch.compile(f, dynamic=False, backend=backend)
        try:
            out = compiled(*args)
            state["fn"] = compiled
        except Exception as err:  # no C++ compiler, unsupported op, ...: stay correct, just slower
            warnings.warn(f"torch.compile failed for {label} ({type(err).__name__}: {err}); running eagerly")
            state["fn"] = f
            out = f(*args)
        return out

    return call


class PseudoGradient(Algorithm):
    """Reptile-style: grads are theta - theta' (averaged), fed to the same Adam loop.
    First order by construction, no plain-loop reference. A subclass whose ``target_params``
    loss is the adapted validation loss may learn its step sizes (``learns_step_sizes``):
    their gradient is that loss's first-order hypergradient (every inner gradient held
    constant, only the step sizes scaling them differentiated)."""

    def target_params(self, params, step_sizes, buffers, parts) -> tuple[dict, torch.Tensor, torch.Tensor]:
        """(theta', the loss it logs, its accuracy: 0 for regression)."""
        raise NotImplementedError

    def _target_from_tensors(self, params, step_sizes, buffers, tensors, k):
        """(theta', loss, accuracy, step-size gradients or {})."""
        parts = split_parts(tensors, k)
        if not self.learn_step_sizes:
            return (*self.target_params(self.start_params(params), step_sizes, buffers, parts), {})

        def loss_of(sizes):
            target, loss, acc = self.target_params(self.start_params(params), sizes, buffers, parts)
            return loss, (target, loss, acc)

        size_grads, (target, loss, acc) = grad(loss_of, has_aux=True)(step_sizes)
        return target, loss, acc, size_grads

    def first_order_version(self) -> Algorithm:
        return self  # first order by construction

    def outer_grads(self, params, step_sizes, buffers, batch: FamilyBatch):
        if self.impl == "loop":
            raise FewtaskError(f"{self.name} has no plain-loop reference; use --impl vmap")
        if self.compile and self._compiled is None:
            self._compiled = compiled_or_eager(self._target_from_tensors, self.name, self.compile)
        step = self._compiled if self.compile else self._target_from_tensors
        target, loss, acc, size_grads = step(params, step_sizes, buffers, batch_tensors(batch), batch.shape.support_size)
        # With the zeroing trick the head's initialization is never used: nothing moves it.
        grads = {k: torch.zeros_like(p) if self.zero_head and k in self.heads else (p - target[k]).detach()
                 for k, p in params.items()}  # fmt: skip
        return grads, size_grads, {"loss": loss.detach(), "acc": acc.detach()}
