"""The pretraining baseline on image families: the data side of `Pretrain`.

Training: plain classification over every class of the training split, on flat
labelled batches (`FlatStream`) read from the same shards the meta-learners
stream (`fewtask-train fit --algo pretrain`). Evaluation (`fewtask-train eval`):
the trained body gets a fresh N-way head, zero-initialized, which is finetuned
together with the body on each goal task's support set (step size alpha), with
and without first meta-finetuning on the family's L tasks, like every other method.
"""

from __future__ import annotations

from itertools import islice
from typing import Iterator

import torch
from torch.utils.data import DataLoader

from fewtask_data import FlatStream
from trainer.algorithms import FlatBatch


def flat_batch_source(flat: FlatStream, workers: int):
    """``make_batches(start_step)``: the stream's batches from ``start_step`` on (the skipped
    ones are read and dropped, so a resumed run sees what an uninterrupted one would)."""

    def make_batches(start_step: int) -> Iterator[FlatBatch]:
        loader = DataLoader(flat, batch_size=None, num_workers=workers)
        return (FlatBatch(x, y) for x, y in islice(loader, start_step, None))

    return make_batches


def with_fresh_head(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """Load a pretrained body into ``model`` (built with the episodes' N ways); zero its head."""
    body = {k: v for k, v in state.items() if not k.startswith("head.")}
    model.load_state_dict(body, strict=False)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    return model
