"""ResNet building blocks for the two-stream network.

The ResNets are `mmm_core.models.resnet`'s, torchvision's layout without importing
torchvision. The two-stream model keeps torchvision's module names for ``layer1`` ..
``layer4`` so that a torchvision state dict maps onto it key by key (see
`mmm_core.models.weights`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from mmm_core.models import resnet

__all__ = [
    "ARCHITECTURES",
    "ResNetSpec",
    "feature_dim",
    "make_stem",
    "random_resnet",
    "set_last_stride",
]


@dataclass(frozen=True)
class ResNetSpec:
    """What the two-stream model needs to know about one ResNet.

    ``non_local_layers[i]`` is how many non-local blocks follow the *last* blocks of
    ``layer{i+1}`` (AGW: ``(0, 2, 3, 0)`` for resnet50, i.e. after the last two blocks of
    layer2 and the last three of layer3).
    """

    factory: Callable[..., resnet.ResNet]
    feature_dim: int
    non_local_layers: tuple[int, int, int, int]


ARCHITECTURES: dict[str, ResNetSpec] = {
    # resnet18 has two blocks per stage: one block after the last block of layer2 and one
    # after the last block of layer3 keeps AGW's "deeper stages only" placement.
    "resnet18": ResNetSpec(resnet.resnet18, 512, (0, 1, 1, 0)),
    "resnet50": ResNetSpec(resnet.resnet50, 2048, (0, 2, 3, 0)),
}


def feature_dim(arch: str, width: int = 64) -> int:
    """Channels of layer4's output: 512 (resnet18) or 2048 (resnet50) at width 64, scaled."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch].feature_dim * width // 64


def random_resnet(arch: str, width: int = 64, num_classes: int = 1000) -> resnet.ResNet:
    """A randomly initialised ResNet (torchvision's initialisation, bit for bit).

    ``width`` is the base channel count: the stem and layer1 have ``width`` channels,
    layer2-4 ``2, 4, 8 x width`` (times the block expansion), exactly torchvision's layout
    at 64. Other widths keep every module name, block count and stride, so state dicts of
    the same width load key by key; only width 64 matches torchvision's ImageNet weights.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(ARCHITECTURES)}")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    # Built at width 64 first, then rebuilt: the random numbers drawn (and so the weights
    # under a seed) stay those of every earlier version of this function.
    network = ARCHITECTURES[arch].factory(num_classes=num_classes)
    if width == 64:
        return network
    block = type(network.layer1[0])
    blocks = [len(getattr(network, f"layer{i}")) for i in range(1, 5)]
    network.inplanes = width
    network.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    network.bn1 = nn.BatchNorm2d(width)
    for index, count in enumerate(blocks):
        stride = 1 if index == 0 else 2
        layer = network._make_layer(block, width * 2**index, count, stride=stride)
        setattr(network, f"layer{index + 1}", layer)
    network.fc = nn.Linear(8 * width * block.expansion, num_classes)
    for module in network.modules():  # torchvision's initialisation of the rebuilt modules
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.constant_(module.weight, 1)
            nn.init.constant_(module.bias, 0)
    return network


def set_last_stride(network: resnet.ResNet, stride: int) -> None:
    """Set the stride of layer4's first block (main path and shortcut) to ``stride``.

    torchvision's default is 2; re-ID networks use 1, doubling layer4's resolution.
    """
    if stride not in (1, 2):
        raise ValueError(f"last stride must be 1 or 2, got {stride}")
    first_block = network.layer4[0]
    for module in first_block.modules():
        if isinstance(module, nn.Conv2d) and module.stride != (1, 1):
            module.stride = (stride, stride)


def make_stem(conv1: nn.Conv2d, bn1: nn.BatchNorm2d, maxpool: nn.Module) -> nn.Sequential:
    """``conv1 -> bn1 -> relu -> maxpool`` with named children (``stem.conv1.weight``...)."""
    return nn.Sequential(
        OrderedDict(conv1=conv1, bn1=bn1, relu=nn.ReLU(inplace=True), maxpool=maxpool)
    )
