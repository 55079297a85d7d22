"""Feature extraction over image lists, in order (the pipeline's "extract" work)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from mmm_core.data.datasets import eval_loader
from mmm_core.data.transforms import eval_transform
from mmm_core.models import TwoStreamAGW
from mmm_core.models import extract_features as batch_features

__all__ = ["extract_features", "resolve_device"]

log = logging.getLogger(__name__)


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; other names are passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return device


def extract_features(
    model: TwoStreamAGW,
    paths: Sequence[str],
    modality: str,
    *,
    height: int,
    width: int,
    device: torch.device,
    batch_size: int = 128,
    flip: bool = True,
    workers: int = 0,
    progress: bool = False,
    desc: str | None = None,
) -> np.ndarray:
    """Test-time features of `paths`, one modality: ``(N, D)`` float32, L2-normalised.

    Rows follow `paths` exactly. Eval-mode BN-neck features, averaged with the horizontal
    flip when `flip` (then renormalised). The model's mode is restored afterwards.
    """
    out = np.empty((len(paths), model.feature_dim), dtype=np.float32)
    if len(paths) == 0:
        return out
    loader = eval_loader(paths, eval_transform(height, width), batch_size, workers)
    bar = tqdm(loader, desc=desc or f"extract {modality}", disable=not progress, leave=False)
    for images, index in bar:
        features = batch_features(model, images.to(device, non_blocking=True), modality, flip)
        out[index.numpy()] = features.float().cpu().numpy()
    return out
