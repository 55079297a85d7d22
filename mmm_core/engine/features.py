"""Feature extraction over image lists, in order (the pipeline's "extract" work)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from mmm_core.config import ConfigError
from mmm_core.data.cache import ImageCache
from mmm_core.data.datasets import eval_loader
from mmm_core.data.transforms import eval_transform

if TYPE_CHECKING:  # (imported where a network is built: cluster and match build none)
    from mmm_core.models import TwoStreamAGW

__all__ = ["amp_dtype", "bf16_supported", "extract_features", "resolve_device"]

log = logging.getLogger(__name__)


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; other names are passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "train.device", f"{name!r} asks for CUDA, which this machine does not have; use cpu"
        )
    return device


def bf16_supported(device: torch.device) -> bool:
    """Whether `device` runs bfloat16 natively (CUDA: Ampere or newer; CPU: AVX-512 BF16/AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return bool(probe is not None and torch.backends.mkldnn.is_available() and probe())
    return False


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train.amp`` on `device` (None = full precision).

    ``"auto"`` is bf16 where the device runs it natively, else full precision; ``"bf16"``
    runs anywhere (slowly where emulated); ``"fp16"`` needs CUDA (it is trained with a
    gradient scaler).
    """
    if amp == "none":
        return None
    if amp == "auto":
        return torch.bfloat16 if bf16_supported(device) else None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        if device.type != "cuda":
            raise ValueError(f"train.amp=fp16 needs a CUDA device, got {device}; use bf16 or none")
        return torch.float16
    raise ValueError(f"train.amp must be auto, none, bf16 or fp16, got {amp!r}")


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
    autocast: torch.dtype | None = None,
    images: ImageCache | None = None,
) -> np.ndarray:
    """Test-time features of `paths`, one modality: ``(N, D)`` float32, L2-normalised.

    Rows follow `paths` exactly. Eval-mode BN-neck features, averaged with the horizontal
    flip when `flip` (then renormalised). The model's mode is restored afterwards.
    `autocast` runs the network in that dtype (the features are returned as float32);
    `images` serves images decoded earlier in the run (of this input size); without it the
    files are decoded here.
    """
    from mmm_core.models import extract_features as batch_features

    out = np.empty((len(paths), model.feature_dim), dtype=np.float32)
    if len(paths) == 0:
        return out
    if images is None or (images.height, images.width) != (height, width):
        images = ImageCache(height, width, 0)
    loader = eval_loader(paths, eval_transform(), images, batch_size, workers)
    bar = tqdm(loader, desc=desc or f"extract {modality}", disable=not progress, leave=False)
    context = torch.autocast(device.type, dtype=autocast) if autocast else nullcontext()
    for images, index in bar:
        with context:
            features = batch_features(model, images.to(device, non_blocking=True), modality, flip)
        out[index.numpy()] = F.normalize(features.float(), dim=1).cpu().numpy()
    return out
