"""Step "start": resolve the config, read the dataset, initialise the network.

Outputs: config.yaml, manifest.tsv, checkpoint.pt (round 0, no optimiser state).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from mmm_core.config import ConfigError, dump_config, load_config
from mmm_core.data import train_manifest
from mmm_core.data.check import check_run_images
from mmm_core.engine.build import build_network, dataset_root, seed_everything
from mmm_core.engine.checkpoint import TrainingState, save_checkpoint
from mmm_core.engine.lifecycle import start_run

__all__ = ["PARAMETER_KEYS", "kfp_tags", "parameter_overrides", "run", "tracking_parameter"]

# Pipeline parameters (shown in the KFP UI) -> config keys. An empty value keeps the config
# file's value; anything else is reachable through the pipeline's `overrides` list.
PARAMETER_KEYS = {
    "data_root": "data.root",
    "data_trial": "data.trial",
    "seed": "seed",
    "device": "train.device",
    "iters_per_round": "train.iters_per_round",
    "lr": "train.lr",
    "cluster_eps": "cluster.eps",
    "cluster_k1": "cluster.k1",
    "cluster_k2": "cluster.k2",
    "joint_eps": "cluster.joint_eps",
    "num_memories": "memory.num_memories",
    "match_cost": "match.cost",
    "match_assignment": "match.assignment",
    "lambda_cmc": "loss.lambda_cmc",
    "lambda_cross": "loss.lambda_cross",
    "lambda_sca": "loss.lambda_sca",
    "eval_every": "eval.every",
    "tracking_enabled": "tracking.enabled",
    "mlflow_experiment": "tracking.experiment",
    "model_name": "tracking.model_name",
}


def parameter_overrides(parameters: dict[str, object], rounds: tuple[int, int]) -> list[str]:
    """``key=value`` overrides: the compiled round counts, then every non-empty parameter."""
    unknown = set(parameters) - set(PARAMETER_KEYS)
    if unknown:
        raise ValueError(f"unknown pipeline parameters {sorted(unknown)}")
    overrides = [f"train.stage1_rounds={rounds[0]}", f"train.stage2_rounds={rounds[1]}"]
    for name, key in PARAMETER_KEYS.items():
        value = parameters.get(name, "")
        if str(value) != "":
            overrides.append(f"{key}={value}")
    return overrides


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


def run(
    config_paths: Sequence[str | Path],
    overrides: Sequence[str],
    out_config: str | Path,
    out_manifest: str | Path,
    out_checkpoint: str | Path,
    out_history: str | Path | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, float]:
    """Outputs config.yaml, manifest.tsv, checkpoint.pt and an empty history (metrics.jsonl).

    `tags` go on the tracking run (`kfp_tags`); a retried start finds the run by them.
    """
    cfg = load_config(list(config_paths), overrides)
    root = dataset_root(cfg)
    if not root.is_dir():
        raise ConfigError(
            "data.root",
            f"{cfg.data.root} is not a folder in this step's container: set the pipeline "
            "parameter data_root to the dataset, s3://bucket/prefix in MinIO or a path on a "
            "mounted volume (docs/deploy.md, step 6)",
        )
    manifest = train_manifest(cfg.data.format, root, cfg.data.trial)
    check_run_images(cfg.data.format, root, cfg.data.trial, manifest.full_paths())
    manifest.write(out_manifest)
    # One tracking run per pipeline run: created here; every later step logs to it by id.
    cfg, _ = start_run(cfg, f"{cfg.data.format}-seed{cfg.seed}", tags=tags)
    dump_config(cfg, out_config)
    seed_everything(cfg.seed)
    model = build_network(cfg, torch.device("cpu"))
    save_checkpoint(
        out_checkpoint,
        TrainingState(
            next_round=0,
            stage=0,
            model=model.state_dict(),
            arch=model.arch,
            feature_dim=model.feature_dim,
        ),
    )
    if out_history is not None:
        Path(out_history).write_text("")
    return {f"data_{k}": float(v) for k, v in manifest.summary().items()}
