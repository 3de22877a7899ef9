"""The MAML family: MAML, FOMAML, ANIL (adapt the head only), BOIL (adapt the body only).
Family structure is ignored: every meta and goal task is a plain task (support -> query)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from trainer.algorithms.base import Algorithm, stabilizer_settings, flat_tasks
from trainer.core import functional as fn
from trainer.core import reference as ref
from trainer.core.step_sizes import level_lrs


class MAML(Algorithm):
    """Every meta task (support -> query) and goal task (support -> validation) as a plain
    task, ``task_steps`` alpha steps; ``order`` 1 = first order (FOMAML)."""

    learns_step_sizes: ClassVar[bool] = True
    takes_multi_step_loss: ClassVar[bool] = True

    @classmethod
    def sinusoid_hparams(cls, s) -> dict:
        """`sinusoid` gives the MAML family its own inner step size (--maml-alpha)."""
        hp = {**super().sinusoid_hparams(s), "alpha": s.maml_alpha, "learn_step_sizes": s.learn_step_sizes,
              "per_step_step_sizes": s.per_step_step_sizes, **stabilizer_settings(s, "multi_step_loss")}
        return hp

    def _task_groups(self, parts):
        """(support, target) of the meta tasks, then of the goal tasks."""
        msx, msy, mqx, mqy, gsx, gsy, gvx, gvy = parts
        return [((msx, msy), (mqx, mqy)), ((gsx, gsy), (gvx, gvy))]

    def objective(self, params, step_sizes, buffers, parts):
        a = level_lrs(step_sizes, "alpha")
        task_fo = self.flags.goal  # a MAML task is scored after its steps, like a goal task
        weights = self.step_weights(self.task_steps, self.multi_step_loss)
        params = self.start_params(params)
        total, acc_total, count = 0.0, 0.0, 0
        for support, target in self._task_groups(parts):
            n = support[0].shape[0] * support[0].shape[1]
            if n == 0:
                continue
            s = (flat_tasks(support[0]), flat_tasks(support[1]))
            t = (flat_tasks(target[0]), flat_tasks(target[1]))
            loss, acc = fn.tasks_adapted_metrics(self.forward, params, buffers, s, t, a, self.task_steps, self.names,
                                                 task_fo, weights)  # fmt: skip
            total, acc_total, count = total + n * loss.mean(), acc_total + n * acc.mean(), count + n
        loss = total / count
        return loss, {"loss": loss.detach(), "acc": (acc_total / count).detach()}

    def loop_objective(self, params, lrs, buffers, parts):
        weights = self.step_weights(self.task_steps, self.multi_step_loss)
        params = self.start_params(params, autograd=True)
        losses, accs = [], []
        for (sx, sy), (tx, ty) in self._task_groups(parts):
            for f in range(sx.shape[0]):
                for t in range(sx.shape[1]):
                    loss, acc = ref.loop_adapted_metrics(
                        self.forward, params, buffers, (sx[f, t], sy[f, t]), (tx[f, t], ty[f, t]), lrs["alpha"],
                        self.task_steps, self.names, self.flags.goal, weights,
                    )  # fmt: skip
                    losses.append(loss)
                    accs.append(acc)
        return torch.stack(losses).mean(), torch.stack(accs).mean()


@dataclass
class FOMAML(MAML):
    """First-order MAML: MAML with order 1, whatever --order says."""

    fixed_order: ClassVar[int | None] = 1
    order: int = 1


@dataclass
class ANIL(MAML):
    """MAML adapting only the head (parameters named ``head.*``)."""

    adapt: str = "head"


@dataclass
class BOIL(MAML):
    """MAML adapting everything but the head."""

    adapt: str = "body"
