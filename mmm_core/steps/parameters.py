"""The pipelines' run-time parameters and the config keys they set (imports nothing heavy).

Each named parameter of the training and retraining pipelines (the KFP UI's form) is typed:
an integer, a number or a string. Its default is a value the config key never takes, which
means "the config file's value": 0 for counts and rates that must be positive, -1 where 0 is
meaningful (a loss weight of 0 turns the loss off; ``eval_every=0`` evaluates the last round
only; a seed is never negative), "" for strings. (KFP's local runner of kfp 2.16 fails on
parameters whose default is None, so "unset" cannot be None.) Any other key is reachable
through the ``overrides`` list.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "PARAMETERS",
    "PARAMETER_KEYS",
    "Parameter",
    "kfp_tags",
    "parameter_overrides",
    "parameter_value",
    "tracking_parameter",
]


@dataclass(frozen=True)
class Parameter:
    """A pipeline parameter: the config key it sets, its type, and the value meaning unset."""

    key: str
    type: type
    unset: Any


PARAMETERS: dict[str, Parameter] = {
    "data_root": Parameter("data.root", str, ""),
    "data_trial": Parameter("data.trial", int, 0),
    "seed": Parameter("seed", int, -1),
    "device": Parameter("train.device", str, ""),
    "iters_per_round": Parameter("train.iters_per_round", int, 0),
    "lr": Parameter("train.lr", float, 0.0),
    "cluster_eps": Parameter("cluster.eps", float, 0.0),
    "cluster_k1": Parameter("cluster.k1", int, 0),
    "cluster_k2": Parameter("cluster.k2", int, 0),
    "joint_eps": Parameter("cluster.joint_eps", float, 0.0),
    "num_memories": Parameter("memory.num_memories", int, 0),
    "match_cost": Parameter("match.cost", str, ""),
    "match_assignment": Parameter("match.assignment", str, ""),
    "lambda_cmc": Parameter("loss.lambda_cmc", float, -1.0),
    "lambda_cross": Parameter("loss.lambda_cross", float, -1.0),
    "lambda_sca": Parameter("loss.lambda_sca", float, -1.0),
    "eval_every": Parameter("eval.every", int, -1),
    "tracking_enabled": Parameter("tracking.enabled", str, ""),
    "mlflow_experiment": Parameter("tracking.experiment", str, ""),
    "model_name": Parameter("tracking.model_name", str, ""),
}
# parameter -> config key
PARAMETER_KEYS = {name: parameter.key for name, parameter in PARAMETERS.items()}


def parameter_overrides(parameters: Mapping[str, object], rounds: tuple[int, int]) -> list[str]:
    """``key=value`` overrides: the compiled round counts, then every parameter that is set
    (not its `Parameter.unset` value)."""
    unknown = set(parameters) - set(PARAMETERS)
    if unknown:
        raise ValueError(f"unknown pipeline parameters {sorted(unknown)}")
    overrides = [f"train.stage1_rounds={rounds[0]}", f"train.stage2_rounds={rounds[1]}"]
    for name, parameter in PARAMETERS.items():
        value = parameters.get(name, parameter.unset)
        if value is None or str(value) == "" or value == parameter.unset:
            continue
        overrides.append(f"{parameter.key}={value}")
    return overrides


def parameter_value(name: str, text: str) -> Any:
    """A config value written as YAML text (``0.5``, ``8``) as parameter `name` takes it."""
    import yaml

    parameter = PARAMETERS[name]
    if parameter.type is str:
        return text
    value = yaml.safe_load(text)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"parameter {name} takes a {parameter.type.__name__}, got {text!r}")
    if parameter.type is int and value != int(value):
        raise ValueError(f"parameter {name} takes an int, got {text!r}")
    return parameter.type(value)


def tracking_parameter(value: str, environ: Mapping[str, str] | None = None) -> str:
    """The pipeline's ``tracking_enabled`` as the steps use it: left empty, tracking is on
    when the step's environment names an MLflow server (MLFLOW_TRACKING_URI, which the
    cluster's ConfigMap mmm-pipeline-env sets), else the config decides."""
    environ = os.environ if environ is None else environ
    if str(value).strip() == "" and environ.get("MLFLOW_TRACKING_URI"):
        return "true"
    return value


def kfp_tags(run_id: str, run_name: str, pipeline: str) -> dict[str, str]:
    """The tracking run's tags naming the KFP run (the placeholders' values); empty values
    are left out."""
    tags = {"kfp.run_id": run_id, "kfp.run_name": run_name, "kfp.pipeline": pipeline}
    return {key: value for key, value in tags.items() if value}
