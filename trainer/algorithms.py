"""MALTML and its baselines as short compositions of the functional core.

Every algorithm exposes one method the training loop calls::

    grads, step_size_grads, metrics = algo.outer_grads(params, step_sizes, buffers, batch)

``grads`` has one entry per model parameter: a true gradient, or for Reptile and
FO-MALTML the pseudo-gradient theta - theta', so one Adam loop drives them all.
``step_sizes`` holds log step sizes (positive by parameterization), one per
parameter tensor and level: keys ``"alpha:<param>"``, ``"beta:<param>"``,
``"gamma:<param>"`` (see `init_step_sizes`). When step sizes are learned their
gradients come back in ``step_size_grads``; otherwise that dict is empty.

Names: maltml, fo-maltml, maml, fomaml, reptile, anil, boil, pretrain (the oracle
is pretrain on inputs that carry the true task parameters). Build one with
``make_algorithm(name, model, **hparams)``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.func import grad, vmap

from fewtask_data import FamilyBatch, FewtaskError
from trainer import functional as fn
from trainer.models import head_names

LEVELS = ("alpha", "beta", "gamma")
ORDERS = (1, 2, 3)
ADAPT_CHOICES = ("all", "head", "body")


def init_step_sizes(params: dict[str, torch.Tensor], alpha: float, beta: float, gamma: float) -> dict[str, torch.Tensor]:
    """Log step sizes, one scalar per (level, parameter tensor)."""
    values = {"alpha": alpha, "beta": beta, "gamma": gamma}
    for level, v in values.items():
        if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
            raise FewtaskError(f"step size {level} must be a positive number, got {v!r}")
    return {
        f"{level}:{name}": torch.tensor(math.log(values[level]), dtype=p.dtype, device=p.device)
        for level in LEVELS
        for name, p in params.items()
    }


def level_lrs(step_sizes: dict[str, torch.Tensor], level: str) -> dict[str, torch.Tensor]:
    """{param name: positive step size} for one level."""
    prefix = f"{level}:"
    return {k[len(prefix):]: v.exp() for k, v in step_sizes.items() if k.startswith(prefix)}


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


def _flat_tasks(t: torch.Tensor) -> torch.Tensor:
    """[B, T, n, ...] -> [B*T, n, ...]: families ignored, tasks as plain tasks."""
    return t.reshape(-1, *t.shape[2:])


@dataclass
class Algorithm:
    """Shared settings; subclasses define `objective` (or override `outer_grads`)."""

    model: nn.Module
    alpha: float = 0.001
    beta: float = 0.01
    gamma: float = 0.001
    task_steps: int = 1  # r: task steps of size alpha
    meta_steps: int = 1  # m: meta steps of size beta
    goal_steps: int = 1  # finetuning steps of size gamma on a goal task (training)
    order: int = 3
    learn_step_sizes: bool = False
    adapt: str = "all"  # which parameters the inner loops adapt: all, head (ANIL), body (BOIL)
    impl: str = "vmap"  # vmap | loop (plain-loop reference)
    compile: bool | str = False  # True = inductor; or a torch.compile backend name (e.g. "aot_eager")
    name: str = "algorithm"
    _compiled: Callable | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        for key in ("task_steps", "meta_steps", "goal_steps"):
            if getattr(self, key) < 0:
                raise FewtaskError(f"{key.replace('_', '-')} must be >= 0, got {getattr(self, key)}")
        if self.order not in ORDERS:
            raise FewtaskError(f"derivative order must be 1, 2 or 3, got {self.order}")
        if self.adapt not in ADAPT_CHOICES:
            raise FewtaskError(f"adapt must be one of {', '.join(ADAPT_CHOICES)}, got {self.adapt!r}")
        if self.impl not in ("vmap", "loop"):
            raise FewtaskError(f"impl must be vmap or loop, got {self.impl!r}")
        # Validates alpha/beta/gamma once, with the user-facing message.
        init_step_sizes({}, self.alpha, self.beta, self.gamma)
        self.forward = fn.make_forward(self.model)
        heads = head_names(self.model)
        names = [n for n, _ in self.model.named_parameters()]
        if self.adapt != "all" and not heads:
            raise FewtaskError(f"adapt={self.adapt} needs a model whose last layer is called 'head'")
        self.names: frozenset[str] | None = {
            "all": None,
            "head": heads,
            "body": frozenset(n for n in names if n not in heads),
        }[self.adapt]

    # -- state the loop keeps -------------------------------------------------
    def init_step_sizes(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return init_step_sizes(params, self.alpha, self.beta, self.gamma)

    # -- the one method the loop calls ---------------------------------------
    def outer_grads(self, params, step_sizes, buffers, batch: FamilyBatch):
        if self.impl == "loop":
            from trainer.reference import reference_grads

            return reference_grads(self, params, step_sizes, buffers, batch_parts(batch))
        step = self._grad_step()
        return step(params, step_sizes, buffers, batch_tensors(batch), batch.shape.support_size)

    def objective(self, params, step_sizes, buffers, parts) -> tuple[torch.Tensor, dict]:
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

    def order_flags(self) -> tuple[bool, bool, bool]:
        """(task, meta, goal) first-order flags for the derivative order."""
        return {3: (False, False, False), 2: (True, False, False), 1: (True, True, True)}[self.order]

    def meta_update_first_order(self) -> bool:
        """Whether the meta-update (as this method trains with it) uses first-order task
        steps; that changes the meta-gradient's value, so evaluation must match it."""
        return self.order_flags()[0]


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


class MALTML(Algorithm):
    """theta -> V_beta on the L meta tasks -> U_gamma on each goal task -> validation loss."""

    def family_metrics(self, params, step_sizes, buffers, msx, msy, mqx, mqy, gsx, gsy, gvx, gvy):
        task_fo, meta_fo, goal_fo = self.order_flags()
        a, b, g = (level_lrs(step_sizes, lv) for lv in LEVELS)
        theta = fn.meta_adapt(
            self.forward, params, buffers, (msx, msy), (mqx, mqy), a, b,
            self.task_steps, self.meta_steps, self.names, task_fo, meta_fo,
        )  # fmt: skip
        return fn.tasks_adapted_metrics(
            self.forward, theta, buffers, (gsx, gsy), (gvx, gvy), g, self.goal_steps, self.names, goal_fo
        )

    def objective(self, params, step_sizes, buffers, parts):
        per_family = vmap(self.family_metrics, in_dims=(None, None, None) + (0,) * 8)
        loss, acc = per_family(params, step_sizes, buffers, *parts)
        return loss.mean(), {"loss": loss.mean().detach(), "acc": acc.mean().detach()}


class MAML(Algorithm):
    """Family structure ignored: every meta and goal task is a plain task (support -> query)."""

    def objective(self, params, step_sizes, buffers, parts):
        msx, msy, mqx, mqy, gsx, gsy, gvx, gvy = parts
        a = level_lrs(step_sizes, "alpha")
        task_fo = self.order == 1
        groups = [((msx, msy), (mqx, mqy)), ((gsx, gsy), (gvx, gvy))]
        total, acc_total, count = 0.0, 0.0, 0
        for support, target in groups:
            n = support[0].shape[0] * support[0].shape[1]
            if n == 0:
                continue
            s = (_flat_tasks(support[0]), _flat_tasks(support[1]))
            t = (_flat_tasks(target[0]), _flat_tasks(target[1]))
            loss, acc = fn.tasks_adapted_metrics(self.forward, params, buffers, s, t, a, self.task_steps, self.names, task_fo)
            total, acc_total, count = total + n * loss, acc_total + n * acc, count + n
        loss = total / count
        return loss, {"loss": loss.detach(), "acc": (acc_total / count).detach()}


class Pretrain(Algorithm):
    """Plain regression/classification on every example of every task, no adaptation."""

    def objective(self, params, step_sizes, buffers, parts):
        xs = torch.cat([_flat_tasks(parts[i]).reshape(-1, *parts[i].shape[3:]) for i in (0, 2, 4, 6)])
        ys = torch.cat([_flat_tasks(parts[i]).reshape(-1, *parts[i].shape[3:]) for i in (1, 3, 5, 7)])
        pred = self.forward(params, buffers, xs)
        loss = fn.task_loss(pred, ys)
        acc = fn.accuracy(pred, ys) if ys.dtype == torch.int64 else pred.new_zeros(())
        return loss, {"loss": loss.detach(), "acc": acc.detach()}


class PseudoGradient(Algorithm):
    """Reptile-style: grads are theta - theta' (averaged), fed to the same Adam loop."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.learn_step_sizes:
            raise FewtaskError(f"{self.name} uses first-order pseudo-gradients and cannot learn step sizes")

    def target_params(self, params, step_sizes, buffers, parts) -> tuple[dict, torch.Tensor]:
        raise NotImplementedError

    def _target_from_tensors(self, params, step_sizes, buffers, tensors, k):
        return self.target_params(params, step_sizes, buffers, split_parts(tensors, k))

    def outer_grads(self, params, step_sizes, buffers, batch: FamilyBatch):
        if self.impl == "loop":
            raise FewtaskError(f"{self.name} has no plain-loop reference; use --impl vmap")
        if self.compile and self._compiled is None:
            self._compiled = compiled_or_eager(self._target_from_tensors, self.name, self.compile)
        step = self._compiled if self.compile else self._target_from_tensors
        target, loss = step(params, step_sizes, buffers, batch_tensors(batch), batch.shape.support_size)
        grads = {k: (p - target[k]).detach() for k, p in params.items()}
        return grads, {}, {"loss": loss.detach(), "acc": loss.new_zeros(())}


class Reptile(PseudoGradient):
    """Each task: task_steps SGD steps (alpha) on all its examples; theta' = mean over tasks."""

    def target_params(self, params, step_sizes, buffers, parts):
        a = level_lrs(step_sizes, "alpha")
        finals, losses, counts = [], [], []
        for xi, yi in ((0, 1), (4, 5)):
            x = torch.cat([parts[xi], parts[xi + 2]], dim=2)  # support + query of each task
            y = torch.cat([parts[yi], parts[yi + 2]], dim=2)
            x, y = _flat_tasks(x), _flat_tasks(y)
            if x.shape[0] == 0:
                continue

            def one(tx, ty):
                fast = fn.adapt(self.forward, params, buffers, tx, ty, a, self.task_steps, self.names, True)
                return fast, fn.loss_on(self.forward, params, buffers, tx, ty)

            fast, loss = vmap(one)(x, y)
            finals.append({k: v.sum(0) for k, v in fast.items()})
            losses.append(loss.sum())
            counts.append(x.shape[0])
        n = sum(counts)
        target = {k: sum(f[k] for f in finals) / n for k in params}
        return target, sum(losses) / n


class FOMALTML(PseudoGradient):
    """First-order two-level Reptile: per family, meta_steps first-order meta-finetuning
    steps on the L tasks, then goal_steps first-order finetuning steps (gamma) on each
    goal task's support; theta' = mean over families and goal tasks."""

    def meta_update_first_order(self) -> bool:
        return True

    def target_params(self, params, step_sizes, buffers, parts):
        a, b, g = (level_lrs(step_sizes, lv) for lv in LEVELS)

        def family(msx, msy, mqx, mqy, gsx, gsy, gvx, gvy):
            theta = fn.meta_adapt(
                self.forward, params, buffers, (msx, msy), (mqx, mqy), a, b,
                self.task_steps, self.meta_steps, self.names, True, True,
            )  # fmt: skip

            def goal(sx, sy, vx, vy):
                fast = fn.adapt(self.forward, theta, buffers, sx, sy, g, self.goal_steps, self.names, True)
                return fast, fn.loss_on(self.forward, fast, buffers, vx, vy)

            fast, loss = vmap(goal)(gsx, gsy, gvx, gvy)
            return {k: v.mean(0) for k, v in fast.items()}, loss.mean()

        fast, loss = vmap(family)(*parts)
        return {k: v.mean(0) for k, v in fast.items()}, loss.mean()


ALGORITHMS: dict[str, tuple[type[Algorithm], dict]] = {
    "maltml": (MALTML, {}),
    "fo-maltml": (FOMALTML, {}),
    "maml": (MAML, {}),
    "fomaml": (MAML, {"order": 1}),
    "reptile": (Reptile, {}),
    "anil": (MAML, {"adapt": "head"}),
    "boil": (MAML, {"adapt": "body"}),
    "pretrain": (Pretrain, {}),
}


# Algorithms whose training has a plain-loop path (trainer/reference.py).
LOOP_REFERENCE = frozenset({"maltml", "maml", "fomaml", "anil", "boil"})


def resolve_impl(impl: str, device: torch.device, algorithm: str | None = None) -> str:
    """"auto" -> "loop" on CPU, where vmap over per-task conv weights runs as slow
    grouped convolutions, and "vmap" on accelerators. For training (``algorithm``
    given) "loop" needs a plain-loop path; the others stay on vmap."""
    if impl not in ("auto", "vmap", "loop"):
        raise FewtaskError(f"--impl must be auto, vmap or loop, got {impl!r}")
    if impl != "auto":
        return impl
    loop_ok = algorithm is None or algorithm in LOOP_REFERENCE
    return "loop" if device.type == "cpu" and loop_ok else "vmap"


def make_algorithm(name: str, model: nn.Module, **hparams) -> Algorithm:
    """Build a registered algorithm; ``hparams`` override the Algorithm fields."""
    if name not in ALGORITHMS:
        raise FewtaskError(f"unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}")
    cls, preset = ALGORITHMS[name]
    known = set(Algorithm.__dataclass_fields__) - {"model", "name", "_compiled"}
    unknown = set(hparams) - known
    if unknown:
        raise FewtaskError(f"unknown hyperparameters for {name}: {', '.join(sorted(unknown))}")
    return cls(model=model, name=name, **{**preset, **hparams})
