"""Step "start": resolve the config, read the dataset, initialise the network.

Outputs: config.yaml, manifest.tsv, checkpoint.pt (round 0, no optimiser state).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from mmm_core.config import ConfigError, dump_config, load_config
from mmm_core.data import train_manifest
from mmm_core.data.check import check_run_images
from mmm_core.engine.build import build_network, dataset_root, seed_everything
from mmm_core.engine.checkpoint import TrainingState, save_checkpoint
from mmm_core.engine.lifecycle import start_run

__all__ = ["run"]


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
