"""Two-stream AGW ResNet (resnet18 / resnet50) with GeM pooling, non-local blocks, BN-neck."""

from mmm_core.models.agw import (
    INFRARED,
    VISIBLE,
    FeatureOutput,
    TwoStreamAGW,
    build_model,
    extract_features,
)
from mmm_core.models.layers import BNNeck, GeneralizedMeanPooling, NonLocalBlock
from mmm_core.models.weights import (
    LoadReport,
    PretrainedWeightsError,
    imagenet_state_dict,
    load_resnet_state_dict,
    read_state_dict,
)

__all__ = [
    "INFRARED",
    "VISIBLE",
    "BNNeck",
    "FeatureOutput",
    "GeneralizedMeanPooling",
    "LoadReport",
    "NonLocalBlock",
    "PretrainedWeightsError",
    "TwoStreamAGW",
    "build_model",
    "extract_features",
    "imagenet_state_dict",
    "load_resnet_state_dict",
    "read_state_dict",
]
