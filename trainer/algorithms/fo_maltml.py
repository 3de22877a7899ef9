"""FO-MALTML: the first-order two-level Reptile approximation of MALTML for large models."""

from __future__ import annotations

from typing import ClassVar

from torch.func import vmap

from trainer.algorithms.base import PseudoGradient
from trainer.core import functional as fn
from trainer.core.step_sizes import LEVELS, level_lrs


class FOMALTML(PseudoGradient):
    """First-order two-level Reptile: per family, meta_steps first-order meta-finetuning
    steps on the L tasks, then goal_steps first-order finetuning steps (gamma) on each
    goal task's support; theta' = mean over families and goal tasks.

    With learned step sizes, beta and gamma follow the goal validation loss's first-order
    hypergradient (`PseudoGradient`), which equals fully first-order MALTML's (order 1)
    step-size gradient. Alpha acts only inside the meta-update's gradient, which first order
    holds constant, so its gradient is zero: alpha stays at its initial value."""

    finetune_level: ClassVar[str] = "gamma"
    trains_meta_step: ClassVar[bool] = True
    learns_step_sizes: ClassVar[bool] = True

    @classmethod
    def sinusoid_hparams(cls, s) -> dict:
        return {**super().sinusoid_hparams(s), "learn_step_sizes": s.learn_step_sizes,
                "per_step_step_sizes": s.per_step_step_sizes}  # fmt: skip

    def meta_update_first_order(self) -> bool:
        return True

    def target_params(self, params, step_sizes, buffers, parts):
        a, b, g = (level_lrs(step_sizes, lv) for lv in LEVELS)

        def family(msx, msy, mqx, mqy, gsx, gsy, gvx, gvy):
            theta = fn.meta_adapt(
                self.forward, params, buffers, (msx, msy), (mqx, mqy), a, b,
                self.task_steps, self.meta_steps, self.names, True, True, self.meta_reduction,
            )  # fmt: skip

            def goal(sx, sy, vx, vy):
                fast = fn.adapt(self.forward, theta, buffers, sx, sy, g, self.goal_steps, self.names, True)
                return fast, *fn.pred_metrics(self.forward(fast, buffers, vx), vy)

            fast, loss, acc = vmap(goal)(gsx, gsy, gvx, gvy)
            return {k: v.mean(0) for k, v in fast.items()}, loss.mean(), acc.mean()

        fast, loss, acc = vmap(family)(*parts)
        return {k: v.mean(0) for k, v in fast.items()}, loss.mean(), acc.mean()
