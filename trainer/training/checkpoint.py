"""Atomic training checkpoints and the RNG state that makes resuming exact.

A checkpoint holds the model, the (log) step sizes, the optimizer, the Python,
NumPy and torch RNG states, the step, the run config and the model's signature
(parameter names and shapes), so loading one into a different model is a clear
error instead of a deep traceback.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fewtask_data import FewtaskError

CHECKPOINT_NAME = "checkpoint.pt"


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def save(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (temp file + rename)."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)


def load(path: Path, expected_signature: dict[str, list[int]] | None = None) -> dict[str, Any]:
    """Read a checkpoint; with ``expected_signature`` check it fits the model."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise FewtaskError(f"no checkpoint at {path}; train first or point to the right folder") from None
    except Exception as err:  # a truncated or foreign file
        raise FewtaskError(f"cannot read checkpoint {path} ({type(err).__name__}); is it a fewtask checkpoint?") from None
    if not isinstance(payload, dict) or "signature" not in payload:
        raise FewtaskError(f"{path} is not a fewtask checkpoint")
    if expected_signature is not None and payload["signature"] != expected_signature:
        theirs, ours = payload["signature"], expected_signature
        diff = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        raise FewtaskError(
            f"checkpoint {path} was made for a different model (differs in {', '.join(diff[:3])}"
            f"{' ...' if len(diff) > 3 else ''}); use the same model settings or a fresh output folder"
        )
    return payload
