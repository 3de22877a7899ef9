"""MALTML (Devos & Dandi, Algorithm 1): meta-finetune on the family's L tasks, finetune on
each goal task, and differentiate the goal validation loss through both levels."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch.func import vmap

from trainer.algorithms.base import Algorithm, stabilizer_settings
from trainer.core import functional as fn
from trainer.core import reference as ref
from trainer.core.step_sizes import LEVELS, level_lrs


class MALTML(Algorithm):
    """theta -> V_beta on the L meta tasks -> U_gamma on each goal task -> validation loss.
    ``order`` 3 is exact (third order), 2 makes the task steps inside meta-finetuning first
    order, 1 is fully first order."""

    finetune_level: ClassVar[str] = "gamma"
    trains_meta_step: ClassVar[bool] = True
    learns_step_sizes: ClassVar[bool] = True

    takes_multi_step_loss: ClassVar[bool] = True
    takes_meta_multi_step_loss: ClassVar[bool] = True

    @classmethod
    def sinusoid_hparams(cls, s) -> dict:
        return {**super().sinusoid_hparams(s), "order": s.order, "learn_step_sizes": s.learn_step_sizes,
                "per_step_step_sizes": s.per_step_step_sizes,
                **stabilizer_settings(s, "multi_step_loss", "meta_multi_step_loss")}  # fmt: skip

    def family_metrics(self, params, step_sizes, buffers, msx, msy, mqx, mqy, gsx, gsy, gvx, gvy):
        task_fo, meta_fo, goal_fo = self.flags
        a, b, g = (level_lrs(step_sizes, lv) for lv in LEVELS)
        goal_w = self.step_weights(self.goal_steps, self.multi_step_loss)
        meta_w = self.step_weights(self.meta_steps, self.meta_multi_step_loss)
        thetas = fn.meta_adapt(
            self.forward, self.start_params(params), buffers, (msx, msy), (mqx, mqy), a, b,
            self.task_steps, self.meta_steps, self.names, task_fo, meta_fo, self.meta_reduction, meta_w is not None,
        )  # fmt: skip

        def goal_metrics(theta):
            loss, acc = fn.tasks_adapted_metrics(
                self.forward, theta, buffers, (gsx, gsy), (gvx, gvy), g, self.goal_steps, self.names, goal_fo, goal_w
            )
            return loss.mean(), acc.mean()

        if meta_w is None:
            return goal_metrics(thetas)
        # The meta level's multi-step loss: the goal objective from every meta step's parameters.
        metrics = [goal_metrics(theta) for theta in thetas]
        loss = (torch.stack([m[0] for m in metrics]) * meta_w.to(metrics[0][0])).sum()
        return loss, metrics[-1][1]

    def objective(self, params, step_sizes, buffers, parts):
        per_family = vmap(self.family_metrics, in_dims=(None, None, None) + (0,) * 8)
        loss, acc = per_family(params, step_sizes, buffers, *parts)
        return loss.mean(), {"loss": loss.mean().detach(), "acc": acc.mean().detach()}

    def loop_objective(self, params, lrs, buffers, parts):
        a, b, g = (lrs[lv] for lv in LEVELS)
        task_fo, meta_fo, goal_fo = self.flags
        goal_w = self.step_weights(self.goal_steps, self.multi_step_loss)
        meta_w = self.step_weights(self.meta_steps, self.meta_multi_step_loss)
        msx, msy, mqx, mqy, gsx, gsy, gvx, gvy = parts
        losses, accs = [], []
        for f in range(msx.shape[0]):
            thetas = ref.loop_meta_adapt(
                self.forward, self.start_params(params, autograd=True), buffers, (msx[f], msy[f]), (mqx[f], mqy[f]), a, b,
                self.task_steps, self.meta_steps, self.names, task_fo, meta_fo, self.meta_reduction, True,
            )  # fmt: skip
            weights = [1.0] if meta_w is None else [float(w) for w in meta_w]
            thetas = thetas[-1:] if meta_w is None else thetas
            if not thetas:  # no meta steps
                thetas = [self.start_params(params, autograd=True)]
            for c in range(gsx.shape[1]):
                support, target = (gsx[f, c], gsy[f, c]), (gvx[f, c], gvy[f, c])
                loss = 0.0
                for w, theta in zip(weights, thetas):
                    value, acc = ref.loop_adapted_metrics(
                        self.forward, theta, buffers, support, target, g, self.goal_steps, self.names, goal_fo, goal_w
                    )
                    loss = loss + w * value
                losses.append(loss)
                accs.append(acc)
        # Mean over goal tasks within a family, then over families == overall mean (equal C).
        return torch.stack(losses).mean(), torch.stack(accs).mean()
