"""Torch datasets and loaders over manifest rows.

`ImageDataset` serves test-time images in a fixed order (feature extraction);
`ViewsDataset` serves training samples as a stack of views with their pseudo-label:
visible images give two views (plain and channel-exchanged), infrared images one.
Both read decoded ``(3, H, W)`` uint8 images from an `ImageCache` (decoded once per run, or
from disk beyond its budget) and apply tensor transforms to them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mmm_core.data.cache import ImageCache
from mmm_core.data.samplers import IdentitySampler

__all__ = ["ImageDataset", "ViewsDataset", "eval_loader", "train_loader"]

Transform = Callable[[torch.Tensor], torch.Tensor]


class ImageDataset(Dataset):
    """``dataset[i] -> (transform(decoded image), i)`` for a list of file paths."""

    def __init__(self, paths: Sequence[str], transform: Transform, images: ImageCache) -> None:
        self.paths = list(paths)
        self.transform = transform
        self.images = images

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images.get(self.paths[index])), index


class ViewsDataset(Dataset):
    """``dataset[i] -> (views (V, 3, H, W), label, i)``: one tensor per transform in `views`."""

    def __init__(
        self,
        paths: Sequence[str],
        labels: np.ndarray,
        views: Sequence[Transform],
        images: ImageCache,
    ) -> None:
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.views = list(views)
        self.images = images

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        image = self.images.get(self.paths[index])
        stacked = torch.stack([view(image) for view in self.views])
        return stacked, int(self.labels[index]), index


def eval_loader(
    paths: Sequence[str],
    transform: Transform,
    images: ImageCache,
    batch_size: int = 128,
    workers: int = 0,
) -> DataLoader:
    """Ordered, non-shuffled batches of ``(images, indices)``."""
    return DataLoader(
        ImageDataset(paths, transform, images),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        persistent_workers=False,
    )


def train_loader(
    paths: Sequence[str],
    labels: np.ndarray,
    camids: np.ndarray,
    views: Sequence[Transform],
    images: ImageCache,
    *,
    num_ids: int,
    num_instances: int,
    num_batches: int,
    seed: int,
    workers: int = 0,
    camera_aware: bool = True,
) -> DataLoader:
    """P x K batches of ``(views (B, V, 3, H, W), labels (B,), indices (B,))``.

    Noise samples (label -1) are never drawn. Worker randomness derives from `seed`.
    """
    sampler = IdentitySampler(
        labels,
        camids,
        num_ids,
        num_instances,
        num_batches,
        seed=seed,
        camera_aware=camera_aware,
    )
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        ViewsDataset(paths, labels, views, images),
        batch_sampler=sampler,
        num_workers=workers,
        generator=generator,
    )
