"""The pretraining baseline: plain loss on every example, no adaptation. With inputs that
carry the true task parameters it is the sinusoid oracle; on images `fit` trains it on
flat labelled batches over all the split's classes (`FlatBatch`) and `eval` gives it a
fresh N-way head (trainer/domains/vision/pretrain.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch.func import grad_and_value

from fewtask_data import FewtaskError
from trainer.algorithms.base import Algorithm, flat_tasks
from trainer.core import functional as fn


@dataclass
class FlatBatch:
    """Labelled images [B, C, H, W] with labels [B] over all training classes."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]

    def to(self, device, non_blocking: bool = False) -> "FlatBatch":
        return FlatBatch(self.x.to(device, non_blocking=non_blocking), self.y.to(device, non_blocking=non_blocking))


class Pretrain(Algorithm):
    """Plain regression/classification on every example of every task, no adaptation."""

    flat_training: ClassVar[bool] = True

    def _check_stabilizers(self) -> None:
        super()._check_stabilizers()
        if self.zero_head:
            raise FewtaskError(f"{self.name} trains without tasks: the zeroing trick does not apply; drop --zero-head")

    @classmethod
    def sinusoid_hparams(cls, s) -> dict:
        # A plain regression step gains nothing from compiling; the zeroing trick needs tasks.
        return {**super().sinusoid_hparams(s), "compile": False, "zero_head": False}

    def outer_grads(self, params, step_sizes, buffers, batch):
        if isinstance(batch, FlatBatch):
            return self.flat_grads(params, buffers, batch)
        return super().outer_grads(params, step_sizes, buffers, batch)

    def flat_grads(self, params, buffers, batch: FlatBatch):
        """Cross-entropy on a FlatBatch (the loop's Adam does the rest)."""

        def loss(p):
            pred = self.forward(p, buffers, batch.x)
            return fn.task_loss(pred, batch.y), fn.accuracy(pred, batch.y)

        grads, (value, acc) = grad_and_value(loss, has_aux=True)(params)
        return grads, {}, {"loss": value.detach(), "acc": acc.detach()}

    def objective(self, params, step_sizes, buffers, parts):
        xs = torch.cat([flat_tasks(parts[i]).reshape(-1, *parts[i].shape[3:]) for i in (0, 2, 4, 6)])
        ys = torch.cat([flat_tasks(parts[i]).reshape(-1, *parts[i].shape[3:]) for i in (1, 3, 5, 7)])
        pred = self.forward(params, buffers, xs)
        loss = fn.task_loss(pred, ys)
        acc = fn.accuracy(pred, ys) if ys.dtype == torch.int64 else pred.new_zeros(())
        return loss, {"loss": loss.detach(), "acc": acc.detach()}

    def loop_objective(self, params, lrs, buffers, parts):
        # No inner loop to write out: the objective is already plain autograd-friendly code.
        loss = self.objective(params, {}, buffers, parts)[0]
        return loss, loss.new_zeros(())
