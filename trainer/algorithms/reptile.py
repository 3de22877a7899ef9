"""Reptile (Nichol et al.): move theta toward the weights each task's SGD steps reach."""

from __future__ import annotations

import torch
from torch.func import vmap

from trainer.algorithms.base import PseudoGradient, flat_tasks
from trainer.core import functional as fn
from trainer.core.step_sizes import level_lrs


class Reptile(PseudoGradient):
    """Each task: task_steps SGD steps (alpha) on all its examples; theta' = mean over tasks.
    Its logged loss and accuracy are the tasks' before adapting (Reptile has no query set)."""

    def target_params(self, params, step_sizes, buffers, parts):
        a = level_lrs(step_sizes, "alpha")
        finals, losses, accs, counts = [], [], [], []
        for xi, yi in ((0, 1), (4, 5)):
            x = torch.cat([parts[xi], parts[xi + 2]], dim=2)  # support + query of each task
            y = torch.cat([parts[yi], parts[yi + 2]], dim=2)
            x, y = flat_tasks(x), flat_tasks(y)
            if x.shape[0] == 0:
                continue

            def one(tx, ty):
                fast = fn.adapt(self.forward, params, buffers, tx, ty, a, self.task_steps, self.names, True)
                return fast, *fn.pred_metrics(self.forward(params, buffers, tx), ty)

            fast, loss, acc = vmap(one)(x, y)
            finals.append({k: v.sum(0) for k, v in fast.items()})
            losses.append(loss.sum())
            accs.append(acc.sum())
            counts.append(x.shape[0])
        n = sum(counts)
        target = {k: sum(f[k] for f in finals) / n for k in params}
        return target, sum(losses) / n, sum(accs) / n
