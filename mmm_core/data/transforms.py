"""Image transforms of SPEC section 5, built from torchvision's pieces where they exist.

Train: resize, pad + random crop, horizontal flip, to tensor, [channel exchange for the second
RGB view | channel-adaptive gray for IR], ImageNet normalisation, channel random erasing.
Test: resize, to tensor, normalisation.

Randomness comes from torch's generator (seeded per data-loader worker by the loader's
explicit ``generator``), so runs are reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torchvision import transforms as T

from mmm_core.data.manifest import DatasetError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ChannelAdaptiveGray",
    "ChannelExchange",
    "eval_transform",
    "load_image",
    "train_transforms",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)


def load_image(path: str | Path) -> Image.Image:
    """Open an image as 3-channel RGB (1-channel and palette images are converted)."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise DatasetError(path, "image file not found") from None
    except (UnidentifiedImageError, OSError) as err:
        raise DatasetError(path, f"cannot read image: {err}") from None


def _randint(high: int) -> int:
    return int(torch.randint(high, (1,)).item())


class ChannelExchange(torch.nn.Module):
    """Copy one randomly chosen channel of a (3, H, W) tensor to all three channels.

    This is the second view of an RGB image: it removes colour, the cue IR images lack.
    """

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        channel = _randint(3)
        return image[channel : channel + 1].expand_as(image).clone()


class ChannelAdaptiveGray(torch.nn.Module):
    """With probability `p`, replace the image by one random channel or by its gray level."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = p

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if torch.rand(1).item() >= self.p:
            return image
        choice = _randint(4)
        if choice < 3:
            return image[choice : choice + 1].expand_as(image).clone()
        weights = torch.tensor(_GRAY_WEIGHTS, dtype=image.dtype).view(3, 1, 1)
        gray = (image * weights).sum(0, keepdim=True)
        return gray.expand_as(image).clone()


def train_transforms(
    height: int,
    width: int,
    pad: int = 10,
    flip_p: float = 0.5,
    erasing_p: float = 0.5,
    channel_exchange: bool = True,
) -> dict[str, Callable[[Image.Image], torch.Tensor]]:
    """Training transforms keyed by view: "visible", "visible_exchange", "infrared"."""
    geometry = [
        T.Resize((height, width)),
        T.Pad(pad),
        T.RandomCrop((height, width)),
        T.RandomHorizontalFlip(flip_p),
        T.ToTensor(),
    ]
    tail = [
        T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        # Channel random erasing: a rectangle set to the per-channel mean (0 after normalising).
        T.RandomErasing(p=erasing_p, value=0),
    ]
    exchange = [ChannelExchange()] if channel_exchange else []
    return {
        "visible": T.Compose(geometry + tail),
        "visible_exchange": T.Compose(geometry + exchange + tail),
        "infrared": T.Compose([*geometry, ChannelAdaptiveGray(0.5), *tail]),
    }


def eval_transform(height: int, width: int) -> Callable[[Image.Image], torch.Tensor]:
    """Deterministic test-time transform (flip averaging happens on the batch)."""
    return T.Compose(
        [T.Resize((height, width)), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )
