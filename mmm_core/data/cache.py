"""Decode once: images kept in RAM as uint8 tensors at the network's input size.

A round reads every training image several times (extraction, then every batch that draws
it); decoding a JPEG and resizing it is most of a CPU step's data cost. `ImageCache` decodes
each file once per run (RGB, bicubic resize to ``height x width``) into one contiguous uint8
array of shape ``(N, 3, height, width)``, filled in the order given, while the array fits the
budget; the images beyond the budget are decoded from disk at every use, exactly as the
cached ones were. The resize is the first, deterministic step of every transform, so a
cached and an uncached image are the same tensor and the random augmentations that follow
see the same input (tests/data/test_cache.py).

DataLoader workers started by fork share the filled array (it is never written after
``fill``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from mmm_core.data.transforms import load_image

__all__ = ["ImageCache", "decode_image", "image_tensor"]

log = logging.getLogger(__name__)


def decode_image(path: str | Path, height: int, width: int) -> torch.Tensor:
    """The file as a ``(3, height, width)`` uint8 tensor: RGB, bicubic resize (PIL)."""
    return image_tensor(load_image(path), height, width)


def image_tensor(image: Image.Image, height: int, width: int) -> torch.Tensor:
    """An RGB image as a ``(3, height, width)`` uint8 tensor, bicubic resize (PIL)."""
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy())


class ImageCache:
    """Decoded images of one input size, in RAM up to ``budget_mb`` MiB.

    ``get(path)`` returns the ``(3, height, width)`` uint8 tensor of a file, from RAM when it
    was cached by `fill`, else decoded from disk (and not kept).
    """

    def __init__(self, height: int, width: int, budget_mb: float) -> None:
        if height < 1 or width < 1:
            raise ValueError(f"image size must be positive, got {height}x{width}")
        if budget_mb < 0:
            raise ValueError(f"budget_mb must be >= 0, got {budget_mb}")
        self.height = height
        self.width = width
        self.budget_bytes = int(budget_mb * 2**20)
        self._rows: dict[str, int] = {}
        self._array = torch.empty((0, 3, height, width), dtype=torch.uint8)

    @property
    def image_bytes(self) -> int:
        return 3 * self.height * self.width

    @property
    def capacity(self) -> int:
        """How many images the budget holds."""
        return self.budget_bytes // self.image_bytes

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, path: object) -> bool:
        return str(path) in self._rows

    @property
    def nbytes(self) -> int:
        return int(self._array.numel())

    def fill(self, paths: Iterable[str | Path], progress: bool = False) -> int:
        """Decode the files not cached yet, in order, while they fit; returns how many were added.

        Called once per run with every path the run reads; a second call only adds paths
        not seen before (while the budget lasts).
        """
        new = list(dict.fromkeys(str(p) for p in paths if str(p) not in self._rows))
        room = max(0, self.capacity - len(self._rows))
        take, left_out = new[:room], len(new) - min(room, len(new))
        if left_out:
            log.warning(
                "image cache: %d images do not fit data.cache_mb=%d MiB (%d fit); they are "
                "decoded from disk at every use",
                left_out,
                self.budget_bytes // 2**20,
                self.capacity,
            )
        if not take:
            return 0
        start = len(self._rows)
        array = torch.empty((start + len(take), 3, self.height, self.width), dtype=torch.uint8)
        array[:start] = self._array
        bar = tqdm(take, desc="decode images", disable=not progress, leave=False, unit="img")
        for offset, path in enumerate(bar):
            array[start + offset] = decode_image(path, self.height, self.width)
        self._array = array
        for offset, path in enumerate(take):
            self._rows[path] = start + offset
        log.info(
            "image cache: %d images decoded once (%.1f MiB)", len(self._rows), self.nbytes / 2**20
        )
        return len(take)

    def get(self, path: str | Path) -> torch.Tensor:
        row = self._rows.get(str(path))
        if row is None:
            return decode_image(path, self.height, self.width)
        return self._array[row]
