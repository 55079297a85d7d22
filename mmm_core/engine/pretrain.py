"""``mmm pretrain``: initial weights from a disjoint synthetic identity set (an ImageNet stand-in).

The method starts from ImageNet weights; this machine (and many CI machines) cannot download
them, and a randomly initialised network clusters synthetic people by colour alone: the
cross-modality steps (CMC, matching) then have nothing to work with. This command plays
ImageNet's role for synthetic runs: it trains a plain torchvision ResNet as an identity
classifier on the **visible** images of a synthetic dataset generated with a *different*
world seed (other people, other clothes), and writes its state dict, which
``model.pretrained=<file>`` loads into both stems and the shared layers.

What the weights have and have not seen:

- visible (RGB) images only, never an infrared image and never a visible-infrared pair:
  like ImageNet, they carry no cross-modality correspondence; random grayscale (p 0.3,
  ``--gray-prob``) is the only colour augmentation, as in common ImageNet recipes' colour
  jitter;
- identities of another world seed: none of the target dataset's people;
- the same renderer as the target data: an in-domain source, so they help more than ImageNet
  would help on real data. Results obtained with them say so (README, method section).

Usage::

    mmm pretrain --out runs/pretrain/resnet18-tiny.pt               # generates the data
    mmm train --config configs/synthetic-tiny.yaml \\
        --set model.pretrained=runs/pretrain/resnet18-tiny.pt --out runs/tiny-pre
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torchvision import transforms as T
from tqdm import tqdm

from mmm_core.data.cache import ImageCache
from mmm_core.data.datasets import ImageDataset
from mmm_core.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from mmm_core.models.backbone import random_resnet

__all__ = ["ARCHS", "PretrainResult", "pretrain_classifier"]

log = logging.getLogger(__name__)

ARCHS = ("resnet18", "resnet50")


@dataclass(frozen=True)
class PretrainResult:
    """Provenance of a weights file (written beside it as ``<file>.json``)."""

    arch: str
    images: int
    identities: int
    iterations: int
    batch_size: int
    height: int
    width: int
    seed: int
    final_loss: float
    final_accuracy: float
    seconds: float
    source: str = ""
    model_width: int = 64  # the ResNet's base channel count (model.width)
    gray_prob: float = 0.3


def _train_transform(height: int, width: int, pad: int, gray_prob: float) -> T.Compose:
    """On a decoded ``(3, height, width)`` uint8 image (`mmm_core.data.cache`)."""
    return T.Compose(
        [
            T.Pad(pad),
            T.RandomCrop((height, width)),
            T.RandomHorizontalFlip(),
            T.RandomGrayscale(gray_prob),
            T.ConvertImageDtype(torch.float32),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            T.RandomErasing(p=0.5, value=0),
        ]
    )


def pretrain_classifier(
    paths: list[str],
    labels: np.ndarray,
    *,
    arch: str = "resnet18",
    model_width: int = 64,
    height: int = 64,
    width: int = 32,
    pad: int = 4,
    iterations: int = 600,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
    cache_mb: int = 4096,
    gray_prob: float = 0.3,
) -> tuple[dict[str, torch.Tensor], PretrainResult]:
    """Train a torchvision ResNet as an identity classifier; returns its CPU state dict.

    Args:
        paths: image files (read as RGB).
        labels: ``(N,)`` int identity labels, any values (relabelled to 0..C-1 inside).
        model_width: the ResNet's base channel count (``model.width`` of the configs that load
            the file; 64 = torchvision's network).
        iterations: optimiser steps of `batch_size` images drawn without replacement per epoch
            (reshuffled every epoch from `seed`).
        lr: Adam learning rate, cosine-decayed to 1 % over the iterations.
        cache_mb: RAM for the images decoded once (the rest is decoded at every use).
        gray_prob: probability that a training image is turned to grayscale (its only colour
            augmentation).
    The state dict keeps torchvision's key names (``conv1``, ``bn1``, ``layer1``-``4``,
    ``fc``), the format `mmm_core.models.weights.load_resnet_state_dict` reads.
    """
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    if len(paths) != len(labels) or not paths:
        raise ValueError(f"need matching non-empty paths/labels: {len(paths)}/{len(labels)}")
    if not 0.0 <= gray_prob <= 1.0:
        raise ValueError(f"gray_prob must lie in [0, 1], got {gray_prob}")
    if iterations < 1 or batch_size < 2:
        raise ValueError("iterations must be >= 1 and batch_size >= 2")
    device = torch.device(device)
    torch.manual_seed(seed)
    _, targets = np.unique(np.asarray(labels), return_inverse=True)
    classes = int(targets.max()) + 1
    model = random_resnet(arch, model_width, num_classes=classes).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, iterations, eta_min=lr / 100)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    images = ImageCache(height, width, cache_mb)
    images.fill(paths, progress=progress)
    dataset = ImageDataset(paths, _train_transform(height, width, pad, gray_prob), images)
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, drop_last=True, generator=generator
    )
    if len(loader) == 0:
        raise ValueError(f"{len(paths)} images are fewer than one batch of {batch_size}")
    targets_t = torch.as_tensor(targets, dtype=torch.long)
    started = time.perf_counter()
    model.train()
    loss_avg = acc_avg = 0.0
    step = 0
    with tqdm(total=iterations, desc="pretrain", unit="it", disable=not progress) as bar:
        while step < iterations:
            for images, index in loader:
                images, y = images.to(device), targets_t[index].to(device)
                logits = model(images)
                loss = criterion(logits, y)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                schedule.step()
                accuracy = (logits.argmax(1) == y).float().mean().item()
                # Exponential averages over ~20 steps: the figures printed and recorded.
                decay = 0.0 if step == 0 else 0.95
                loss_avg = decay * loss_avg + (1 - decay) * loss.item()
                acc_avg = decay * acc_avg + (1 - decay) * accuracy
                step += 1
                bar.set_postfix(loss=f"{loss_avg:.3f}", acc=f"{acc_avg:.2f}")
                bar.update()
                if step % 100 == 0 or step == iterations:
                    log.info("pretrain step %d/%d loss %.3f acc %.3f", step, iterations,
                             loss_avg, acc_avg)  # fmt: skip
                if step >= iterations:
                    break
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    result = PretrainResult(
        arch=arch,
        images=len(paths),
        identities=classes,
        iterations=iterations,
        batch_size=batch_size,
        height=height,
        width=width,
        seed=seed,
        final_loss=round(loss_avg, 4),
        final_accuracy=round(acc_avg, 4),
        seconds=round(time.perf_counter() - started, 1),
        model_width=model_width,
        gray_prob=gray_prob,
    )
    return state, result
