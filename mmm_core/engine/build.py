"""Builders of a run: seeds, the dataset root, the tracker, the network, the trainer, features.

Everything a round or a pipeline step needs before it can start, each from the config alone.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from mmm_core.config import Config
from mmm_core.data.cache import ImageCache
from mmm_core.engine.checkpoint import load_checkpoint
from mmm_core.engine.features import amp_dtype, extract_features
from mmm_core.engine.trainer import LossWeights, Trainer

if TYPE_CHECKING:  # (imported where a network is built: cluster and match build none)
    from mmm_core.models import TwoStreamAGW

__all__ = [
    "build_network",
    "build_trainer",
    "dataset_root",
    "image_cache",
    "load_network",
    "make_extractor",
    "seed_everything",
    "tracker_for",
]

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def dataset_root(cfg: Config, progress: bool = False) -> Path:
    """A local dataset root for `cfg.data.root`.

    ``s3://bucket/prefix`` is mirrored into the local cache (MinIO, `mmm_core.storage`); a
    synthetic dataset is generated first when configured and missing, and generated again
    when its ``synthetic.json`` records other arguments (ids, seed, preset) or an older
    world model (`synthetic.SYNTH_VERSION`); a root without ``synthetic.json`` is never touched.
    """
    from mmm_core import storage

    if storage.is_remote(cfg.data.root):
        return storage.resolve_dataset_root(cfg.data.root, progress=progress)
    root = Path(cfg.data.root)
    synthetic = cfg.data.synthetic
    if not synthetic.enabled:
        return root
    from mmm_core.data import synthetic as synth

    synth.ensure_generated(root, cfg.data.format, synthetic.ids, synthetic.seed, synthetic.preset)
    return root


def tracker_for(cfg: Config, run_dir: Path | None = None):
    """The MLflow tracker of `cfg.tracking` (a no-op tracker when tracking is off)."""
    from mmm_core.tracking import make_tracker

    t = cfg.tracking
    return make_tracker(t.enabled, t.uri, t.experiment, run_dir=run_dir)


def build_network(cfg: Config, device: torch.device) -> TwoStreamAGW:
    """The config's two-stream network on `device`, its weights in channels-last layout.

    Channels-last (NHWC) lets oneDNN / cuDNN pick their fast convolution and pooling kernels:
    a training step of the bench network ran 15 % faster and an extraction batch 35 % faster
    on this project's 2-core CPU (benchmarks/step_time.py). The layout follows from the
    weights, so inputs need no conversion; state dicts hold the same values either way.
    """
    from mmm_core.models import build_model

    model = build_model(
        cfg.model.arch,
        cfg.model.pretrained,
        non_local=cfg.model.non_local,
        gem_p=cfg.model.gem_p,
        last_stride=cfg.model.last_stride,
        width=cfg.model.width,
    )
    return model.to(device=device, memory_format=torch.channels_last)


def load_network(cfg: Config, checkpoint_path: str | Path, device: torch.device) -> TwoStreamAGW:
    """The network with a checkpoint's weights (no pretrained weights are loaded first)."""
    model = build_network(cfg.replace(**{"model.pretrained": "none"}), device)
    model.load_state_dict(load_checkpoint(checkpoint_path, map_location=device).model)
    return model


def build_trainer(cfg: Config, model: torch.nn.Module, device: torch.device) -> Trainer:
    return Trainer(
        model,
        device,
        lr=cfg.train.lr,
        weight_decay=cfg.train.weight_decay,
        step_size=cfg.train.step_size,
        gamma=cfg.train.gamma,
        schedule_per=cfg.train.schedule_per,
        temperature=cfg.memory.temperature,
        momentum=cfg.memory.momentum,
        weights=LossWeights(cfg.loss.lambda_cmc, cfg.loss.lambda_cross, cfg.loss.lambda_sca),
        autocast=amp_dtype(cfg.train.amp, device),
    )


def image_cache(cfg: Config) -> ImageCache:
    """The run's decoded images (input size, `data.cache_mb`); filled as paths are first read."""
    return ImageCache(cfg.data.height, cfg.data.width, cfg.data.cache_mb)


def make_extractor(
    cfg: Config,
    model: TwoStreamAGW,
    device: torch.device,
    progress: bool = False,
    images: ImageCache | None = None,
) -> Callable[[list[str], str], np.ndarray]:
    """``(paths, modality) -> features``: test-time features with the config's settings.

    Images are decoded into `images` (a new cache when None) the first time they are read.
    """
    images = images if images is not None else image_cache(cfg)
    autocast = amp_dtype(cfg.train.amp, device)

    def extract(paths: list[str], modality: str) -> np.ndarray:
        images.fill(paths, progress=progress)
        return extract_features(
            model,
            paths,
            modality,
            height=cfg.data.height,
            width=cfg.data.width,
            device=device,
            batch_size=cfg.train.batch_size_eval,
            flip=cfg.eval.flip,
            workers=cfg.data.workers,
            progress=progress,
            desc=f"features {modality}",
            autocast=autocast,
            images=images,
        )

    return extract
