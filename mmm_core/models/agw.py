"""Two-stream AGW ResNet for visible-infrared re-ID.

Structure (Ye et al.'s AGW baseline, cross-modality variant):

    visible images  -> visible_stem  (conv1, bn1, relu, maxpool) --\\
                                                                    +-> layer1 .. layer4 (shared,
    infrared images -> infrared_stem (conv1, bn1, relu, maxpool) --/    optional non-local blocks)
                                                                    -> GeM -> BN-neck

Each stem has its own BatchNorm, so stem statistics are per modality; everything after
the stems is shared (and, in training mode, the shared BatchNorms see the whole mixed
batch).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmm_core.models.backbone import (
    ARCHITECTURES,
    feature_dim,
    make_stem,
    random_resnet,
    set_last_stride,
)
from mmm_core.models.layers import BNNeck, GeneralizedMeanPooling, NonLocalBlock
from mmm_core.models.onednn import cap_onednn_below_amx
from mmm_core.models.weights import imagenet_state_dict, load_resnet_state_dict, read_state_dict

__all__ = [
    "INFRARED",
    "VISIBLE",
    "FeatureOutput",
    "TwoStreamAGW",
    "build_model",
    "extract_features",
]

logger = logging.getLogger(__name__)

VISIBLE = 0
INFRARED = 1
_MODALITY_NAMES = {"visible": VISIBLE, "infrared": INFRARED}

Modality = str | Tensor


class FeatureOutput(NamedTuple):
    """What `TwoStreamAGW` returns in training mode.

    pooled: ``(B, D)`` GeM-pooled feature before the BN-neck (float32 or wider).
    neck: ``(B, D)`` BN-neck feature, *not* L2-normalised; the memory losses use
        ``F.normalize(neck, dim=1)``.
    """

    pooled: Tensor
    neck: Tensor


class TwoStreamAGW(nn.Module):
    """Two-stream AGW ResNet with modality-specific stems and shared layers 1-4.

    Args:
        arch: ``"resnet18"`` (D = 512) or ``"resnet50"`` (D = 2048).
        width: base channel count (64 = torchvision's network; D scales with it:
            resnet18 at width 32 gives D = 256). Same structure at every width.
        non_local: insert non-local blocks (inter channels C/2) after the last blocks of
            layer2 and layer3: 2 + 3 for resnet50 as in AGW, 1 + 1 for resnet18.
        gem_p: GeM exponent (3 in AGW).
        learnable_gem: learn the GeM exponent (default: fixed, as in cross-modality AGW).
        last_stride: stride of layer4's first block (1 for re-ID, 2 as in torchvision).

    Weights are torchvision's random initialisation; see `build_model` for pretrained
    weights.

    ``forward(images, modality)``:
        images: ``(B, 3, H, W)`` float tensor.
        modality: ``"visible"`` or ``"infrared"`` for a single-modality batch, or a
            ``(B,)`` bool/integer tensor, ``0``/False = visible, ``1``/True = infrared, for a
            mixed batch (each sample goes through its own stem; order is kept).
        Returns in training mode a `FeatureOutput` ``(pooled, neck)``, each ``(B, D)``; in
        eval mode the L2-normalised BN-neck feature ``(B, D)``.

    A batch of one modality leaves the other stem without gradient: under DDP, train on
    mixed batches or set ``find_unused_parameters=True``. The BN-neck bias has
    ``requires_grad=False``: build optimisers from ``p for p in parameters() if
    p.requires_grad``.
    """

    def __init__(
        self,
        arch: str = "resnet50",
        non_local: bool = False,
        gem_p: float = 3.0,
        learnable_gem: bool = False,
        last_stride: int = 1,
        width: int = 64,
    ) -> None:
        super().__init__()
        cap_onednn_below_amx()  # before this network's first convolution (see the module)
        resnet = random_resnet(arch, width)
        set_last_stride(resnet, last_stride)
        spec = ARCHITECTURES[arch]
        self.arch = arch
        self.width = width
        self.feature_dim = feature_dim(arch, width)

        self.visible_stem = make_stem(resnet.conv1, resnet.bn1, resnet.maxpool)
        self.infrared_stem = copy.deepcopy(self.visible_stem)
        self.layer1 = resnet.layer1
        self.layer2 = resnet.layer2
        self.layer3 = resnet.layer3
        self.layer4 = resnet.layer4

        # Non-local blocks live beside the torchvision layers (not inside them) so that
        # layer keys stay identical to a torchvision state dict.
        self.non_local_positions: dict[str, tuple[int, ...]] = {}
        self.non_local = nn.ModuleDict()
        counts = spec.non_local_layers if non_local else (0, 0, 0, 0)
        for index, count in enumerate(counts):
            name = f"layer{index + 1}"
            layer = getattr(self, name)
            if count > len(layer):
                raise ValueError(f"{name} has {len(layer)} blocks, cannot follow {count}")
            positions = tuple(range(len(layer) - count, len(layer)))
            self.non_local_positions[name] = positions
            if count:
                channels = _block_out_channels(layer[-1])
                self.non_local[name] = nn.ModuleList(
                    NonLocalBlock(channels, channels // 2) for _ in positions
                )

        self.pool = GeneralizedMeanPooling(gem_p, learnable=learnable_gem)
        self.bnneck = BNNeck(self.feature_dim)

    def stems(self, images: Tensor, modality: Modality) -> Tensor:
        """Route each image through its modality's stem; ``(B, 3, H, W) -> (B, width, H', W')``."""
        if isinstance(modality, str):
            if modality not in _MODALITY_NAMES:
                raise ValueError(
                    f"modality must be 'visible', 'infrared' or a (B,) tensor, got {modality!r}"
                )
            stem = self.visible_stem if modality == "visible" else self.infrared_stem
            return stem(images)
        if not isinstance(modality, Tensor):
            raise TypeError(f"modality must be a str or a tensor, got {type(modality).__name__}")
        if modality.shape != (images.shape[0],):
            raise ValueError(
                f"a modality tensor must have shape ({images.shape[0]},), got "
                f"{tuple(modality.shape)}"
            )
        is_infrared = modality.to(device=images.device) != VISIBLE
        parts, order = [], []
        for selected, stem in (
            ((~is_infrared).nonzero().squeeze(1), self.visible_stem),
            (is_infrared.nonzero().squeeze(1), self.infrared_stem),
        ):
            if selected.numel():
                parts.append(stem(images.index_select(0, selected)))
                order.append(selected)
        if len(parts) == 1:
            return parts[0]
        stacked = torch.cat(parts)
        positions = torch.cat(order)
        return torch.empty_like(stacked).index_copy(0, positions, stacked)

    def backbone(self, x: Tensor) -> Tensor:
        """Shared layers 1-4 with the non-local blocks; ``(B, width, h, w) -> (B, D, h', w')``."""
        for name in ("layer1", "layer2", "layer3", "layer4"):
            layer = getattr(self, name)
            positions = self.non_local_positions[name]
            blocks = self.non_local[name] if positions else ()
            next_block = 0
            for index, block in enumerate(layer):
                x = block(x)
                if next_block < len(positions) and index == positions[next_block]:
                    x = blocks[next_block](x)
                    next_block += 1
        return x

    def forward(self, images: Tensor, modality: Modality) -> FeatureOutput | Tensor:
        pooled = self.pool(self.backbone(self.stems(images, modality)))
        neck = self.bnneck(pooled)
        if self.training:
            return FeatureOutput(pooled, neck)
        return F.normalize(neck, dim=1)


def _block_out_channels(block: nn.Module) -> int:
    """Output channels of a torchvision residual block (its last BatchNorm's width)."""
    norms = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)]
    return norms[-1].num_features


def build_model(
    arch: str = "resnet50",
    pretrained: str = "imagenet",
    non_local: bool = False,
    gem_p: float = 3.0,
    last_stride: int = 1,
    learnable_gem: bool = False,
    width: int = 64,
) -> TwoStreamAGW:
    """Build the two-stream AGW model, on CPU, with the requested initial weights.

    Args:
        arch: ``"resnet18"`` or ``"resnet50"``.
        pretrained: ``"imagenet"`` (torchvision's IMAGENET1K_V1 weights, from the torch hub
            cache or downloaded; raises `PretrainedWeightsError` with instructions when
            they cannot be fetched), ``"none"`` (random initialisation), or a path to a
            torchvision ResNet state-dict file (conv1/bn1 go into both stems, layer1-4 into
            the shared layers; missing and unexpected keys are logged).
        non_local, gem_p, last_stride, learnable_gem, width: see `TwoStreamAGW`. ImageNet
            weights exist for width 64 only; other widths take ``"none"`` or a file of
            their width (``mmm pretrain --width``).

    Loading the project's own training checkpoints is the engine's job, not this one's.
    """
    model = TwoStreamAGW(
        arch,
        non_local=non_local,
        gem_p=gem_p,
        learnable_gem=learnable_gem,
        last_stride=last_stride,
        width=width,
    )
    if pretrained == "none":
        logger.info("%s: random initialisation", arch)
        return model
    if pretrained == "imagenet":
        if width != 64:
            raise ValueError(f"ImageNet weights exist only for width 64, not {width}")
        state_dict = imagenet_state_dict(arch)
        source = f"torchvision {arch} ImageNet weights"
    else:
        state_dict = read_state_dict(Path(pretrained))
        source = str(pretrained)
    load_resnet_state_dict(model, state_dict, source=source)
    return model


@torch.no_grad()
def extract_features(
    model: TwoStreamAGW, images: Tensor, modality: Modality, flip: bool = True
) -> Tensor:
    """Test-time features of one batch: ``(B, 3, H, W) -> (B, D)``, L2-normalised.

    The eval-mode (L2-normalised BN-neck) feature; with ``flip``, the average of the image's
    and its horizontal mirror's features, renormalised. The model is put in eval mode for
    the call and returned to its previous mode. Images must already be on the model's
    device; the result is on that device, without gradient.
    """
    was_training = model.training
    model.eval()
    try:
        features = model(images, modality)
        if flip:
            features = features + model(torch.flip(images, dims=(3,)), modality)
            features = F.normalize(features, dim=1)
    finally:
        model.train(was_training)
    return features
