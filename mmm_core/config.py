"""One frozen configuration tree for the whole method.

Every number of SPEC section 5 is a field here, with the SYSU-MM01 default. YAML files
(`configs/*.yaml`) override defaults; `--set a.b=value` overrides YAML. Unknown keys and
ill-typed values are rejected with the dotted path of the offending key.

Library code never sees a `Config`: builders hand each algorithm plain numbers taken from
its sub-tree (see STYLE.md).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

__all__ = [
    "AugmentConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "LossConfig",
    "MatchConfig",
    "MemoryConfig",
    "ModelConfig",
    "SamplerConfig",
    "SyntheticConfig",
    "TrackingConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "dump_config",
    "fingerprint",
    "flatten",
    "load_config",
]


class ConfigError(ValueError):
    """A configuration problem, naming the dotted key path (e.g. ``cluster.eps``)."""

    def __init__(self, path: str, message: str, source: str | None = None) -> None:
        self.path = path
        self.message = message
        self.source = source
        where = f"{source}: " if source else ""
        key = f"'{path}': " if path else ""
        super().__init__(f"{where}{key}{message}")

    def within(self, prefix: str, source: str | None = None) -> ConfigError:
        path = f"{prefix}.{self.path}" if prefix and self.path else (prefix or self.path)
        return ConfigError(path, self.message, source or self.source)


def _require(condition: bool, name: str, message: str) -> None:
    if not condition:
        raise ConfigError(name, message)


@dataclass(frozen=True)
class SyntheticConfig:
    """Generate a synthetic dataset at ``data.root`` when it does not exist yet."""

    enabled: bool = False
    ids: int = 24
    seed: int = 0
    preset: Literal["tiny", "bench"] = "tiny"

    def __post_init__(self) -> None:
        _require(self.ids >= 4, "ids", "needs at least 4 identities")


@dataclass(frozen=True)
class DataConfig:
    format: Literal["sysu", "regdb"] = "sysu"
    root: str = "data/sysu"
    trial: int = 1
    height: int = 288
    width: int = 144
    workers: int = 4
    # Decoded images (uint8, resized to height x width) kept in RAM for the whole run, up to
    # this many MiB; images beyond the budget are read from disk at every use. 0 = no cache.
    cache_mb: int = 4096
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def __post_init__(self) -> None:
        _require(1 <= self.trial <= 10, "trial", "RegDB trials are numbered 1..10")
        _require(self.height > 0 and self.width > 0, "height", "image size must be positive")
        _require(self.workers >= 0, "workers", "must be >= 0")
        _require(self.cache_mb >= 0, "cache_mb", "must be >= 0")


@dataclass(frozen=True)
class AugmentConfig:
    pad: int = 10
    flip_p: float = 0.5
    erasing_p: float = 0.5
    channel_exchange: bool = True

    def __post_init__(self) -> None:
        _require(self.pad >= 0, "pad", "must be >= 0")
        for name in ("flip_p", "erasing_p"):
            _require(0.0 <= getattr(self, name) <= 1.0, name, "a probability must be in [0, 1]")


@dataclass(frozen=True)
class SamplerConfig:
    """P identities x K instances per modality, per batch."""

    visible_ids: int = 8
    visible_instances: int = 16
    infrared_ids: int = 16
    infrared_instances: int = 16
    camera_aware: bool = True

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.type in ("int", int):
                _require(getattr(self, f.name) >= 1, f.name, "must be >= 1")


@dataclass(frozen=True)
class ModelConfig:
    arch: Literal["resnet18", "resnet50"] = "resnet50"
    # Base channel count of the ResNet (64 = torchvision's network, the only width with
    # ImageNet weights); 16 or 32 give the same structure at a fraction of the cost (CPU benches).
    width: int = 64
    pretrained: str = "imagenet"  # "imagenet", "none", or a path to a state-dict file
    non_local: bool = False
    gem_p: float = 3.0
    last_stride: int = 1

    def __post_init__(self) -> None:
        _require(self.gem_p > 0, "gem_p", "must be > 0")
        _require(self.last_stride in (1, 2), "last_stride", "must be 1 or 2")
        _require(self.width >= 4 and self.width % 4 == 0, "width", "a multiple of 4, >= 4")
        _require(
            self.width == 64 or self.pretrained != "imagenet",
            "pretrained",
            f"ImageNet weights exist only for model.width 64, not {self.width}; use 'none' "
            "or a weights file of that width (mmm pretrain --width)",
        )
        _require(
            self.pretrained in ("imagenet", "none") or Path(self.pretrained).is_file(),
            "pretrained",
            f"no such weights file {self.pretrained!r} (expected 'imagenet', 'none' or the "
            "path of a state-dict file)",
        )


@dataclass(frozen=True)
class ClusterConfig:
    k1: int = 30
    k2: int = 6
    eps: float = 0.6
    min_samples: int = 4
    joint: bool = True  # CMC joint clustering of both modalities (stage 1)
    joint_k1: int = 40
    joint_k2: int = 32
    joint_eps: float = 0.6
    knn: Literal["auto", "faiss", "torch"] = "auto"
    # CMC's modality-balanced query expansion (SPEC section 5): "balanced" averages V over the
    # k2 nearest visible points and over the k2 nearest infrared points, half each;
    # "released" splits the k2 nearest overall by modality (the released code's reading).
    joint_expansion: Literal["balanced", "released"] = "balanced"

    def __post_init__(self) -> None:
        for name in ("k1", "k2", "joint_k1", "joint_k2", "min_samples"):
            _require(getattr(self, name) >= 1, name, "must be >= 1")
        for name in ("eps", "joint_eps"):
            _require(0.0 < getattr(self, name) <= 1.0, name, "a Jaccard radius is in (0, 1]")


@dataclass(frozen=True)
class MemoryConfig:
    temperature: float = 0.05
    momentum: float = 0.1
    num_memories: int = 4  # K sub-cluster memories per cluster in stage 2
    kmeans_iters: int = 20

    def __post_init__(self) -> None:
        _require(self.temperature > 0, "temperature", "must be > 0")
        _require(0.0 <= self.momentum < 1.0, "momentum", "must be in [0, 1)")
        _require(self.num_memories >= 1, "num_memories", "must be >= 1")
        _require(self.kmeans_iters >= 1, "kmeans_iters", "must be >= 1")


@dataclass(frozen=True)
class MatchConfig:
    cost: Literal["chamfer", "one_sided", "centroid"] = "chamfer"
    assignment: Literal["hungarian", "greedy"] = "hungarian"
    sca_topk: int = 3
    sca_temperature: float = 0.05

    def __post_init__(self) -> None:
        _require(self.sca_topk >= 1, "sca_topk", "must be >= 1")
        _require(self.sca_temperature > 0, "sca_temperature", "must be > 0")


@dataclass(frozen=True)
class LossConfig:
    lambda_cmc: float = 1.0
    lambda_cross: float = 1.0
    lambda_sca: float = 0.5

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _require(getattr(self, f.name) >= 0, f.name, "a loss weight must be >= 0")


@dataclass(frozen=True)
class TrainConfig:
    stage1_rounds: int = 50
    stage2_rounds: int = 50
    iters_per_round: int = 200
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    step_size: int = 20
    gamma: float = 0.1
    # What StepLR counts: "stage" (SPEC section 5): the schedule restarts with each stage's
    # fresh optimiser, so the rate drops `step_size` rounds into a stage; "run": it counts
    # rounds from the run's first, so every variant of an ablation, one-stage or two-stage,
    # trains each round at the same rate (the optimiser still restarts at stage 2).
    schedule_per: Literal["stage", "run"] = "stage"
    # Mixed precision of the network: "auto" = bf16 where the device supports it, else none;
    # "fp16" (CUDA only) uses a gradient scaler. Memories, their updates, clustering
    # features and losses stay float32.
    amp: Literal["auto", "none", "bf16", "fp16"] = "auto"
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    batch_size_eval: int = 128
    # "pseudo": the method (pseudo-labels and matching from the features alone); "oracle":
    # the supervised upper bound, the same network, schedule and losses with the true
    # identities as cluster labels and the true correspondence as v2r / r2v.
    supervision: Literal["pseudo", "oracle"] = "pseudo"
    # Gradient accumulation: each optimiser step draws this many P x K batches (sampler and
    # augmentation streams of their own, batch-norm statistics per batch), averages their
    # gradients and updates the memories with all of them: on one device, the same updates
    # as that many data-parallel processes (torchrun); under torchrun, per process.
    accumulate: int = 1

    def __post_init__(self) -> None:
        _require(self.accumulate >= 1, "accumulate", "must be >= 1")
        _require(self.stage1_rounds >= 0, "stage1_rounds", "must be >= 0")
        _require(self.stage2_rounds >= 0, "stage2_rounds", "must be >= 0")
        _require(self.stage1_rounds + self.stage2_rounds >= 1, "stage1_rounds", "no rounds")
        _require(self.iters_per_round >= 1, "iters_per_round", "must be >= 1")
        _require(self.lr > 0, "lr", "must be > 0")
        _require(self.step_size >= 1, "step_size", "must be >= 1")
        _require(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        _require(0 < self.gamma <= 1, "gamma", "the learning-rate decay factor is in (0, 1]")
        _require(
            self.schedule_per in ("stage", "run"),
            "schedule_per",
            f"expected stage or run, got {self.schedule_per!r}",
        )
        _require(self.batch_size_eval >= 1, "batch_size_eval", "must be >= 1")
        _require(
            re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", self.device) is not None,
            "device",
            f"expected auto, cpu, cuda, cuda:N or mps, got {self.device!r}",
        )


@dataclass(frozen=True)
class EvalConfig:
    every: int = 1  # evaluate every N rounds; 0 = only after the last round
    flip: bool = True
    sysu_modes: tuple[str, ...] = ("all", "indoor")
    sysu_shots: tuple[int, ...] = (1,)
    trials: int = 10

    def __post_init__(self) -> None:
        _require(self.every >= 0, "every", "must be >= 0")
        _require(1 <= self.trials <= 10, "trials", "1..10 trials")
        for mode in self.sysu_modes:
            _require(mode in ("all", "indoor"), "sysu_modes", f"unknown mode {mode!r}")
        for shots in self.sysu_shots:
            _require(shots in (1, 10), "sysu_shots", "single-shot (1) or multi-shot (10)")


@dataclass(frozen=True)
class TrackingConfig:
    enabled: bool = False
    uri: str = ""  # empty: MLFLOW_TRACKING_URI, else a local SQLite store in the run folder
    experiment: str = "mmm-vi-reid"
    model_name: str = "mmm-vi-reid"  # registered model name in the MLflow model registry
    run_id: str = ""  # set by the start step: every later step logs to this MLflow run
    # The promotion rule at the end of a run (mmm_core.engine.champion): the registered model
    # becomes alias "champion" when there is none (a full run) or when it beats the champion,
    # both re-evaluated now. false: register as "candidate" only.
    promote: bool = True


@dataclass(frozen=True)
class Config:
    seed: int = 1
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    match: MatchConfig = field(default_factory=MatchConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def replace(self, **overrides: Any) -> Config:
        """A copy with dotted-key overrides: ``cfg.replace(**{"cluster.eps": 0.5})``."""
        return apply_overrides(self, [f"{k}={_yaml_scalar(v)}" for k, v in overrides.items()])


# --------------------------------------------------------------------------- conversion


def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _coerce(value: Any, annotation: Any, path: str) -> Any:
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, Mapping):
            raise ConfigError(path, f"expected a mapping, got {value!r}")
        return _build(annotation, value, path)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ConfigError(path, f"expected one of {list(choices)}, got {value!r}")
        return value
    if origin in (tuple, list):
        (item_type, *_rest) = typing.get_args(annotation)
        if isinstance(value, str | bytes) or not isinstance(value, Iterable):
            raise ConfigError(path, f"expected a list, got {value!r}")
        return tuple(_coerce(v, item_type, f"{path}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], path)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"expected true/false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(path, f"expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(path, f"expected a string, got {value!r}")
        return value
    raise ConfigError(path, f"unsupported field type {annotation!r}")  # pragma: no cover


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(path, f"unknown key (valid keys here: {', '.join(sorted(names))})")
        kwargs[key] = _coerce(value, hints[key], path)
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise err.within(prefix) from None


def config_from_dict(data: Mapping[str, Any] | None, source: str | None = None) -> Config:
    """Build a validated `Config` from nested plain data (as read from YAML)."""
    try:
        return _build(Config, data or {}, "")
    except ConfigError as err:
        raise err.within("", source) from None


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Nested plain data (tuples as lists), suitable for YAML and MLflow params."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = config_to_dict(value)
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        else:
            out[f.name] = value
    return out


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping):
            out.update(flatten(value, path))
        else:
            out[path] = value
    return out


# Settings that do not change a run's numbers: where data and runs live, devices, caching,
# tracking.
_NOT_FINGERPRINTED = ("data.root", "data.workers", "data.cache_mb", "train.device", "tracking")
# Settings added after runs were first fingerprinted, with the value that reproduces what
# those runs did: hashed only when set to something else, so earlier fingerprints (the demo
# references, finished benchmark runs) stay valid.
_ADDED_LATER = {"train.schedule_per": "stage", "train.accumulate": 1}


def fingerprint(cfg: Config) -> str:
    """A short hash of every config value that can change a run's metrics (not where its
    data lives, the device, caching or tracking): two runs with the same fingerprint train
    the same thing."""
    import hashlib
    import json

    values = {
        key: value
        for key, value in flatten(config_to_dict(cfg)).items()
        if not key.startswith(_NOT_FINGERPRINTED)
        and not (key in _ADDED_LATER and _ADDED_LATER[key] == value)
    }
    return hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError("", f"override {item!r} is not of the form key.path=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(key, f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(key, f"cannot parse value {raw!r}: {err}") from None
    return key.split("."), value


def apply_overrides(cfg: Config, overrides: Iterable[str]) -> Config:
    """Apply ``key.path=value`` strings (values parsed as YAML scalars) to a config."""
    data = config_to_dict(cfg)
    for item in overrides:
        parts, value = _parse_override(item)
        node = data
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                raise ConfigError(".".join(parts[: i + 1]), "unknown section")
            node = node[part]
        if parts[-1] not in node:
            valid = ", ".join(sorted(node))
            raise ConfigError(".".join(parts), f"unknown key (valid keys here: {valid})")
        node[parts[-1]] = value
    return config_from_dict(data, source="--set")


def _deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> Mapping[str, Any]:
    if not path.is_file():
        raise ConfigError("", "config file not found", source=str(path))
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError("", f"invalid YAML: {err}", source=str(path)) from None
    if not isinstance(data, Mapping):
        raise ConfigError("", "the top level must be a mapping", source=str(path))
    return data


def load_config(
    paths: str | Path | Sequence[str | Path] | None = None, overrides: Iterable[str] = ()
) -> Config:
    """Defaults, then each YAML file in order (later files win), then ``--set`` overrides.

    Several files compose: ``[configs/synthetic-tiny.yaml, configs/ablation/baseline.yaml]``.
    Each file is validated on its own, so an error names the file that holds the bad key.
    """
    if paths is None:
        paths = []
    elif isinstance(paths, str | Path):
        paths = [paths]
    data: dict[str, Any] = {}
    for path in paths:
        layer = _read_yaml(Path(path))
        config_from_dict(layer, source=str(path))  # validate this file alone
        data = _deep_merge(data, layer)
    cfg = config_from_dict(data)
    return apply_overrides(cfg, overrides)


def dump_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (what a run actually used)."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
