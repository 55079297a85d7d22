"""Step "cluster" (CPU, memory): features -> pseudo-labels (labels.npz) and diagnostics."""

from __future__ import annotations

import time
from pathlib import Path

from mmm_core.data import Manifest
from mmm_core.engine.labels import cluster_round
from mmm_core.engine.schedule import stage_of_round
from mmm_core.steps.common import read_config, read_features

__all__ = ["run"]


def run(
    config_path: str | Path,
    manifest_path: str | Path,
    features_path: str | Path,
    round_index: int,
    out_labels: str | Path,
) -> dict[str, float]:
    """The manifest's true ids are read only under ``train.supervision: oracle``."""
    started = time.perf_counter()
    cfg = read_config(config_path)
    visible, infrared = read_features(features_path)
    truth = None
    if cfg.train.supervision == "oracle":
        manifest = Manifest.read(manifest_path, cfg.data.root)  # true ids only: no images read
        truth = (manifest.modality("visible").pids, manifest.modality("infrared").pids)
    clusters = cluster_round(cfg, stage_of_round(cfg, round_index), visible, infrared, truth)
    clusters.save(out_labels)
    return {"time_cluster": time.perf_counter() - started}
