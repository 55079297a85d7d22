"""Checkpoints: model, optimiser, scheduler and every random state, so a run resumes exactly."""

from __future__ import annotations

import dataclasses
import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "CheckpointError",
    "TrainingState",
    "capture_rng",
    "load_checkpoint",
    "restore_rng",
    "save_checkpoint",
    "save_weights_only",
]

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read as one (truncated, not a checkpoint, other format)."""


def capture_rng() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's global generators (CUDA too, if used)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class TrainingState:
    """Everything a later round needs: where the run is and the learnt state.

    `next_round` is the index of the round to run next (0-based over both stages);
    `stage` is the stage of the optimiser/scheduler states (1 or 2).
    """

    next_round: int
    stage: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    rng: dict[str, Any] = field(default_factory=capture_rng)
    arch: str = ""
    feature_dim: int = 0
    width: int = 64  # the ResNet's base channel count (model.width)
    input_size: tuple[int, int] | None = None  # (data.height, data.width) it was trained at
    extra: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(path: str | Path, state: TrainingState) -> None:
    """Write atomically (temporary file + rename): a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format_version": FORMAT_VERSION, **state.__dict__}
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(handle)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_weights_only(source: str | Path, out: str | Path) -> TrainingState:
    """Copy the checkpoint `source` to `out` without its optimiser and scheduler states (two
    thirds of a training checkpoint; a registered model needs the weights, and a warm start
    starts both afresh). Returns the state as read from `source`."""
    state = load_checkpoint(source)
    save_checkpoint(out, dataclasses.replace(state, optimizer=None, scheduler=None))
    return state


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> TrainingState:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # torch raises many kinds for a damaged file
        reason = str(err).split(". ")[0].strip()  # torch's first sentence; the rest is advice
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(err).__name__}: {reason}); it may be "
            "truncated by an interrupted copy - restore it, or start the run again"
        ) from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not a checkpoint (holds a {type(payload).__name__})")
    version = payload.pop("format_version", None)
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {version}, expected {FORMAT_VERSION}")
    try:
        return TrainingState(**payload)
    except TypeError as err:
        raise CheckpointError(f"{path}: not a training checkpoint ({err})") from None
