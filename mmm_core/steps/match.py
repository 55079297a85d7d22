"""Step "match" (CPU): features + labels -> memories, matching, SCA weights (targets.npz).

Also computes the round's pseudo-label diagnostics against the manifest's true ids.
"""

from __future__ import annotations

import time
from pathlib import Path

from mmm_core.data import Manifest
from mmm_core.engine.labels import ClusterOutput, label_diagnostics
from mmm_core.engine.match import match_round
from mmm_core.engine.schedule import derive_seed, stage_of_round
from mmm_core.steps.common import read_config, read_features

__all__ = ["run"]


def run(
    config_path: str | Path,
    manifest_path: str | Path,
    features_path: str | Path,
    labels_path: str | Path,
    round_index: int,
    out_targets: str | Path,
) -> dict[str, float | None]:
    started = time.perf_counter()
    cfg = read_config(config_path)
    visible, infrared = read_features(features_path)
    clusters = ClusterOutput.load(labels_path)
    stage = stage_of_round(cfg, round_index)
    seed = derive_seed(cfg.seed, round_index, 2)
    targets = match_round(cfg, stage, visible, infrared, clusters, seed=seed)
    targets.save(out_targets)
    manifest = Manifest.read(manifest_path, cfg.data.root)  # true ids only: no images read
    sides = manifest.modality("visible"), manifest.modality("infrared")
    metrics = label_diagnostics(
        targets,
        clusters,
        sides[0].pids,
        sides[1].pids,
        visible,
        infrared,
        cameras=(sides[0].camids, sides[1].camids),
    )
    metrics["time_match"] = time.perf_counter() - started
    return metrics
