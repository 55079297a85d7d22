"""torchvision ResNet building blocks for the two-stream network.

The two-stream model keeps torchvision's module names for ``layer1`` .. ``layer4`` so that
a torchvision state dict maps onto it key by key (see `mmm_core.models.weights`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torchvision
from torch import nn

__all__ = ["ARCHITECTURES", "ResNetSpec", "make_stem", "random_resnet", "set_last_stride"]


@dataclass(frozen=True)
class ResNetSpec:
    """What the two-stream model needs to know about one torchvision ResNet.

    ``non_local_layers[i]`` is how many non-local blocks follow the *last* blocks of
    ``layer{i+1}`` (AGW: ``(0, 2, 3, 0)`` for resnet50, i.e. after the last two blocks of
    layer2 and the last three of layer3).
    """

    factory: Callable[..., torchvision.models.ResNet]
    feature_dim: int
    non_local_layers: tuple[int, int, int, int]


ARCHITECTURES: dict[str, ResNetSpec] = {
    # resnet18 has two blocks per stage: one block after the last block of layer2 and one
    # after the last block of layer3 keeps AGW's "deeper stages only" placement.
    "resnet18": ResNetSpec(torchvision.models.resnet18, 512, (0, 1, 1, 0)),
    "resnet50": ResNetSpec(torchvision.models.resnet50, 2048, (0, 2, 3, 0)),
}


def random_resnet(arch: str) -> torchvision.models.ResNet:
    """A randomly initialised torchvision ResNet (torchvision's own initialisation)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch].factory(weights=None)


def set_last_stride(resnet: torchvision.models.ResNet, stride: int) -> None:
    """Set the stride of layer4's first block (main path and shortcut) to ``stride``.

    torchvision's default is 2; re-ID networks use 1, doubling layer4's resolution.
    """
    if stride not in (1, 2):
        raise ValueError(f"last stride must be 1 or 2, got {stride}")
    first_block = resnet.layer4[0]
    for module in first_block.modules():
        if isinstance(module, nn.Conv2d) and module.stride != (1, 1):
            module.stride = (stride, stride)


def make_stem(conv1: nn.Conv2d, bn1: nn.BatchNorm2d, maxpool: nn.Module) -> nn.Sequential:
    """``conv1 -> bn1 -> relu -> maxpool`` with named children (``stem.conv1.weight``...)."""
    return nn.Sequential(
        OrderedDict(conv1=conv1, bn1=bn1, relu=nn.ReLU(inplace=True), maxpool=maxpool)
    )
