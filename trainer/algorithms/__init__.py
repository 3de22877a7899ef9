"""MALTML and its baselines as short compositions of the functional core, one module per
algorithm family, each class carrying its own traits (`trainer.algorithms.base`).

Names: maltml, fo-maltml, maml, fomaml, reptile, anil, boil, pretrain (the oracle
is pretrain on inputs that carry the true task parameters). Build one with
``make_algorithm(name, model, **hparams)``.
"""

from __future__ import annotations

import torch
from torch import nn

from fewtask_data import FewtaskError
from trainer.algorithms.base import Algorithm, batch_parts, batch_tensors, compiled_or_eager, split_parts
from trainer.algorithms.fo_maltml import FOMALTML
from trainer.algorithms.maltml import MALTML
from trainer.algorithms.maml import ANIL, BOIL, FOMAML, MAML
from trainer.algorithms.pretrain import FlatBatch, Pretrain
from trainer.algorithms.reptile import Reptile

# The registry: adding an algorithm = its module + one line here.
ALGORITHMS: dict[str, type[Algorithm]] = {
    "maltml": MALTML,
    "fo-maltml": FOMALTML,
    "maml": MAML,
    "fomaml": FOMAML,
    "reptile": Reptile,
    "anil": ANIL,
    "boil": BOIL,
    "pretrain": Pretrain,
}

__all__ = [
    "ALGORITHMS", "Algorithm", "FlatBatch", "algorithm_class", "batch_parts", "batch_tensors", "compiled_or_eager",
    "make_algorithm", "resolve_impl", "split_parts",
]  # fmt: skip


def algorithm_class(name: str) -> type[Algorithm]:
    """The registered class (its traits), or a one-line error naming the choices."""
    if name not in ALGORITHMS:
        raise FewtaskError(f"unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]


def make_algorithm(name: str, model: nn.Module, label: str | None = None, **hparams) -> Algorithm:
    """Build a registered algorithm; ``hparams`` override the Algorithm fields. ``label`` is
    the name checkpoints record (default ``name``; e.g. the sinusoid oracle is pretrain
    labelled "oracle")."""
    cls = algorithm_class(name)
    known = set(Algorithm.__dataclass_fields__) - {"model", "name", "_compiled"}
    unknown = set(hparams) - known
    if unknown:
        raise FewtaskError(f"unknown hyperparameters for {name}: {', '.join(sorted(unknown))}")
    return cls(model=model, name=label or name, **hparams)


def resolve_impl(impl: str, device: torch.device, algorithm: str | None = None) -> str:
    """"auto" -> "loop" on CPU, where vmap over per-task conv weights runs as slow
    grouped convolutions, and "vmap" on accelerators. For training (``algorithm``
    given) "loop" needs a plain-loop path; the others stay on vmap."""
    if impl not in ("auto", "vmap", "loop"):
        raise FewtaskError(f"--impl must be auto, vmap or loop, got {impl!r}")
    if impl != "auto":
        return impl
    loop_ok = algorithm is None or algorithm_class(algorithm).has_loop_reference()
    return "loop" if device.type == "cpu" and loop_ok else "vmap"
