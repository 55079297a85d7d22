"""Image transforms of SPEC section 5, as the released MMM code orders them.

Every transform takes a ``(3, H, W)`` uint8 tensor already decoded and resized (bicubic) to
the input size by `mmm_core.data.cache` (decode once per run), and returns a float tensor:

* train: pad + random crop, horizontal flip, to float, ImageNet normalisation, channel random
  erasing (the released fill values), then channel exchange for the second RGB view or
  channel-adaptive gray for IR. Exchange, gray and erasing act on the *normalised* tensor,
  as released: on an IR image, whose raw channels are equal, the normalised channels differ,
  so channel-adaptive gray changes it;
* test: to float, normalisation.

Randomness comes from torch's generator (seeded per data-loader worker by the loader's
explicit ``generator``), so runs are reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from mmm_core.data.manifest import DatasetError

__all__ = [
    "ERASING_FILL",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ChannelAdaptiveGray",
    "ChannelExchange",
    "ChannelRandomErasing",
    "TrainView",
    "eval_transform",
    "load_image",
    "train_transforms",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)
# The released code fills an erased rectangle with these per-channel values (CIFAR's mean),
# written into the already normalised tensor.
ERASING_FILL = (0.4914, 0.4822, 0.4465)


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
    """With probability `p`: one of four equally likely choices, R, G or B copied to all
    channels, or (with probability `p` again) the gray level ``0.2989 R + 0.587 G + 0.114 B``
    in all channels; the image is kept otherwise (the released code's reading)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = p

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if torch.rand(1).item() >= self.p:
            return image
        choice = _randint(4)
        if choice < 3:
            return image[choice : choice + 1].expand_as(image).clone()
        if torch.rand(1).item() >= self.p:
            return image
        weights = torch.tensor(_GRAY_WEIGHTS, dtype=image.dtype).view(3, 1, 1)
        gray = (image * weights).sum(0, keepdim=True)
        return gray.expand_as(image).clone()


class ChannelRandomErasing(torch.nn.Module):
    """With probability `p`, fill one rectangle of a (3, H, W) tensor with `fill` per channel.

    The rectangle's area is uniform in ``[area_min, area_max]`` of the image and its aspect
    (height / width) uniform in ``[aspect_min, 1 / aspect_min]``; up to 100 draws are made
    until it fits strictly inside the image (none fits: the image is kept).
    """

    def __init__(
        self,
        p: float = 0.5,
        area_min: float = 0.02,
        area_max: float = 0.4,
        aspect_min: float = 0.3,
        fill: tuple[float, float, float] = ERASING_FILL,
    ) -> None:
        super().__init__()
        self.p = p
        self.area = (area_min, area_max)
        self.aspect = (aspect_min, 1.0 / aspect_min)
        self.fill = fill

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if torch.rand(1).item() >= self.p:
            return image
        _, height, width = image.shape
        for _ in range(100):
            area = height * width * _uniform(*self.area)
            aspect = _uniform(*self.aspect)
            h = round(math.sqrt(area * aspect))
            w = round(math.sqrt(area / aspect))
            if h < height and w < width:
                top, left = _randint(height - h + 1), _randint(width - w + 1)
                out = image.clone()
                fill = torch.tensor(self.fill, dtype=image.dtype).view(3, 1, 1)
                out[:, top : top + h, left : left + w] = fill
                return out
        return image


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * torch.rand(1).item()


class TrainView:
    """One training view of a decoded ``(3, height, width)`` uint8 image, fused for speed.

    In order: zero padding by `pad` and a random ``height x width`` crop (one window per
    image, drawn as torchvision's ``RandomCrop`` draws it), horizontal flip with `flip_p`, to
    float and ImageNet normalisation, channel random erasing with `erasing_p`, then the
    view's channel step: ``"exchange"`` (`ChannelExchange`), ``"gray"``
    (`ChannelAdaptiveGray`, p 0.5) or none. The random draws are torchvision's in the same
    order, so the result equals ``Pad, RandomCrop, RandomHorizontalFlip, ToTensor,
    Normalize`` on the image followed by the channel steps (tests/data/test_transforms.py);
    fusing them saves most of the per-image cost of the composed transforms.
    """

    def __init__(
        self,
        height: int,
        width: int,
        pad: int = 10,
        flip_p: float = 0.5,
        erasing_p: float = 0.5,
        channel: str | None = None,
    ) -> None:
        if channel not in (None, "exchange", "gray"):
            raise ValueError(f"channel must be None, 'exchange' or 'gray', got {channel!r}")
        self.height, self.width, self.pad = height, width, pad
        self.flip_p = flip_p
        self.erasing = ChannelRandomErasing(erasing_p)
        self.channel = {None: None, "exchange": ChannelExchange(), "gray": ChannelAdaptiveGray()}[
            channel
        ]
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        self.scale = 1.0 / (255.0 * std)
        self.shift = torch.tensor(IMAGENET_MEAN).view(3, 1, 1) / std

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        h, w, pad = self.height, self.width, self.pad
        if image.shape != (3, h, w):
            raise ValueError(f"expected a (3, {h}, {w}) decoded image, got {tuple(image.shape)}")
        top, left = _randint(2 * pad + 1), _randint(2 * pad + 1)  # window in the padded image
        crop = torch.zeros((3, h, w), dtype=image.dtype)
        rows = slice(max(0, top - pad), min(h, top - pad + h))
        cols = slice(max(0, left - pad), min(w, left - pad + w))
        crop[
            :,
            rows.start - (top - pad) : rows.stop - (top - pad),
            cols.start - (left - pad) : cols.stop - (left - pad),
        ] = image[:, rows, cols]
        if torch.rand(1).item() < self.flip_p:
            crop = crop.flip(-1)
        out = crop.float().mul_(self.scale).sub_(self.shift)
        out = self.erasing(out)
        return self.channel(out) if self.channel is not None else out


def train_transforms(
    height: int,
    width: int,
    pad: int = 10,
    flip_p: float = 0.5,
    erasing_p: float = 0.5,
    channel_exchange: bool = True,
) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Training transforms keyed by view: "visible", "visible_exchange", "infrared".

    Each maps a ``(3, height, width)`` uint8 tensor (see `mmm_core.data.cache`) to a
    normalised float tensor of the same size (`TrainView`).
    """
    return {
        "visible": TrainView(height, width, pad, flip_p, erasing_p),
        "visible_exchange": TrainView(
            height, width, pad, flip_p, erasing_p, "exchange" if channel_exchange else None
        ),
        "infrared": TrainView(height, width, pad, flip_p, erasing_p, "gray"),
    }


class EvalView:
    """The deterministic test-time transform: to float in [0, 1], ImageNet normalisation.

    The same operations, in the same order, as torchvision's
    ``Compose([ConvertImageDtype(float32), Normalize(mean, std)])`` (tested equal), without
    importing torchvision (2-3 s in every step that extracts features).
    """

    def __init__(self) -> None:
        self.mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if image.is_floating_point():
            scaled = image.to(torch.float32).clone()
        else:
            scaled = image.to(torch.float32) / float(torch.iinfo(image.dtype).max)
        return scaled.sub_(self.mean).div_(self.std)


def eval_transform() -> Callable[[torch.Tensor], torch.Tensor]:
    """Deterministic test-time transform of a decoded uint8 image (flip averaging happens on
    the batch)."""
    return EvalView()
