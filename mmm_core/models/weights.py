"""Initial weights for the two-stream model: torchvision ImageNet weights or a local file.

A torchvision ResNet state dict maps onto `TwoStreamAGW` as follows:

    conv1.*, bn1.*   -> visible_stem.conv1.* / .bn1.*  and  infrared_stem.conv1.* / .bn1.*
    layer{1..4}.*    -> layer{1..4}.*   (same names)
    fc.*             -> ignored (no classifier in the unsupervised model)

Keys already named as in `TwoStreamAGW` are taken as they are. A ``"module."`` prefix (from
DataParallel) is stripped, and a dict wrapping the weights under ``"state_dict"`` or
``"model"`` is unwrapped.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = [
    "LoadReport",
    "PretrainedWeightsError",
    "imagenet_state_dict",
    "load_resnet_state_dict",
    "map_resnet_keys",
    "read_state_dict",
]

logger = logging.getLogger(__name__)

# torchvision's weight enums, by name: torchvision is imported (2-3 s) only to fetch them
_IMAGENET_WEIGHTS = {"resnet18": "ResNet18_Weights", "resnet50": "ResNet50_Weights"}
_STEMS = ("visible_stem", "infrared_stem")
_IGNORED_PREFIXES = ("fc.",)


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights could not be obtained or do not fit the model."""


class LoadReport(NamedTuple):
    """Outcome of `load_resnet_state_dict` (all lists of model / file keys, sorted).

    loaded: model keys that received a tensor from the file.
    missing: model keys the file did not provide (e.g. BN-neck, non-local blocks).
    unexpected: file keys with no place in the model (``fc.*`` is ignored silently).
    """

    loaded: list[str]
    missing: list[str]
    unexpected: list[str]


def imagenet_state_dict(arch: str) -> dict[str, Tensor]:
    """torchvision's IMAGENET1K_V1 state dict for ``arch``, from the torch hub cache or the web.

    Raises `PretrainedWeightsError` naming the URL and the local-file alternative when the
    weights cannot be fetched (e.g. on a machine without network access).
    """
    if arch not in _IMAGENET_WEIGHTS:
        raise ValueError(f"no ImageNet weights known for {arch!r}")
    import torchvision

    weights = getattr(torchvision.models, _IMAGENET_WEIGHTS[arch]).IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=False)
    except Exception as err:  # URLError, OSError, hash mismatch, ...
        raise PretrainedWeightsError(
            f"could not fetch the ImageNet weights for {arch} from {weights.url} ({err}). "
            "Download that file on a machine with network access and pass its path instead, "
            f"e.g. --set model.pretrained=/path/to/{weights.url.rsplit('/', 1)[-1]} "
            "(or model.pretrained=none for random initialisation)."
        ) from err


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """Read a state-dict file (``torch.save`` format, tensors only) onto the CPU."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights file not found: {path} "
            "(model.pretrained must be 'imagenet', 'none' or a path to a state-dict file)"
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise PretrainedWeightsError(
            f"{path}: not a readable torch state-dict file ({err})"
        ) from err
    for wrapper in ("state_dict", "model"):
        if isinstance(data, Mapping) and isinstance(data.get(wrapper), Mapping):
            data = data[wrapper]
    if not isinstance(data, Mapping):
        raise PretrainedWeightsError(f"{path}: expected a state dict, got {type(data).__name__}")
    return dict(data)


def map_resnet_keys(
    state_dict: Mapping[str, Tensor], model_keys: set[str]
) -> tuple[dict[str, Tensor], list[str]]:
    """Rename torchvision ResNet keys to `TwoStreamAGW` keys.

    Returns the renamed dict (stem tensors appear once per stem) and the file keys that
    have no place in the model (``fc.*`` excluded).
    """
    mapped: dict[str, Tensor] = {}
    unexpected: list[str] = []
    for raw_key, tensor in state_dict.items():
        key = raw_key.removeprefix("module.")
        if key in model_keys:
            mapped[key] = tensor
        elif key.startswith(("conv1.", "bn1.")):
            for stem in _STEMS:
                mapped[f"{stem}.{key}"] = tensor
        elif key.startswith(_IGNORED_PREFIXES):
            continue
        else:
            unexpected.append(raw_key)
    return mapped, unexpected


def load_resnet_state_dict(
    model: nn.Module, state_dict: Mapping[str, Tensor], source: str = "state dict"
) -> LoadReport:
    """Copy a torchvision ResNet state dict into a `TwoStreamAGW` (in place).

    Both stems receive the file's ``conv1``/``bn1``; ``layer1``-``layer4`` are copied by
    name. Missing and unexpected keys are logged (warnings for backbone keys); a shape
    mismatch or a file that provides no tensor at all raises `PretrainedWeightsError`.
    """
    model_keys = set(model.state_dict())
    mapped, unexpected = map_resnet_keys(state_dict, model_keys)
    unexpected.extend(k for k in mapped if k not in model_keys)
    mapped = {k: v for k, v in mapped.items() if k in model_keys}
    if not mapped:
        raise PretrainedWeightsError(
            f"{source}: no key matches a ResNet backbone (first keys: {list(state_dict)[:5]})"
        )
    try:
        model.load_state_dict(mapped, strict=False)
    except RuntimeError as err:
        raise PretrainedWeightsError(f"{source}: weights do not fit the model: {err}") from err
    missing = sorted(model_keys - set(mapped))
    report = LoadReport(sorted(mapped), missing, sorted(unexpected))

    backbone_missing = [k for k in missing if k.startswith((*_STEMS, "layer"))]
    logger.info("loaded %d tensors from %s", len(report.loaded), source)
    if backbone_missing:
        logger.warning(
            "%s lacks %d backbone keys: %s", source, len(backbone_missing), backbone_missing
        )
    other_missing = [k for k in missing if k not in backbone_missing]
    if other_missing:
        logger.info("not initialised from %s (kept as built): %s", source, other_missing)
    if report.unexpected:
        logger.warning(
            "%s has %d unexpected keys: %s", source, len(report.unexpected), report.unexpected
        )
    return report
