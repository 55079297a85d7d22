"""Step "extract" (GPU): checkpoint + manifest -> train features per modality (features.npz)."""

from __future__ import annotations

import time
from pathlib import Path

from mmm_core.data import Manifest
from mmm_core.engine.build import dataset_root, load_network
from mmm_core.engine.features import resolve_device
from mmm_core.engine.phases import extract_train_features
from mmm_core.steps.common import read_config, write_features

__all__ = ["run"]


def run(
    config_path: str | Path,
    manifest_path: str | Path,
    checkpoint_path: str | Path,
    out_features: str | Path,
    *,
    progress: bool = False,
) -> dict[str, float]:
    started = time.perf_counter()
    cfg = read_config(config_path)
    device = resolve_device(cfg.train.device)
    manifest = Manifest.read(manifest_path, dataset_root(cfg))
    model = load_network(cfg, checkpoint_path, device)
    visible, infrared = extract_train_features(cfg, model, manifest, device, progress)
    write_features(out_features, visible, infrared)
    return {"time_extract": time.perf_counter() - started}
