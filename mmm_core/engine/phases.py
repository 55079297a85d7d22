"""The phases of one round: extract -> cluster -> match (`prepare_round`), train, evaluate.

`mmm train` (`mmm_core.engine.loop`) runs them in one process; the pipeline steps
(`mmm_core.steps`) run each over files. Both close the round with
`mmm_core.engine.lifecycle.record_round`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmm_core.config import Config
from mmm_core.data import Manifest
from mmm_core.data.cache import ImageCache
from mmm_core.data.datasets import train_loader
from mmm_core.data.transforms import train_transforms
from mmm_core.engine.build import image_cache, make_extractor
from mmm_core.engine.labels import cluster_round, label_diagnostics
from mmm_core.engine.match import match_round
from mmm_core.engine.schedule import derive_seed, stage_of_round
from mmm_core.engine.trainer import Shard, Trainer
from mmm_core.evaluation.protocols import ProtocolResult, evaluate_regdb, evaluate_sysu
from mmm_core.models import TwoStreamAGW

__all__ = [
    "PRIMARY_SETTING",
    "RoundContext",
    "chance_summary",
    "evaluate_model",
    "evaluate_round",
    "extract_train_features",
    "prepare_round",
    "should_evaluate",
    "summary_metrics",
    "train_one_round",
]

PRIMARY_SETTING = {"sysu": "sysu/all/single", "regdb": "regdb/visible->thermal"}


def extract_train_features(
    cfg: Config,
    model: TwoStreamAGW,
    manifest: Manifest,
    device: torch.device,
    progress: bool,
    images: ImageCache | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Flip-averaged, normalised features of the visible and infrared training images."""
    extract = make_extractor(cfg, model, device, progress, images)
    visible = extract(manifest.modality("visible").full_paths(), "visible")
    infrared = extract(manifest.modality("infrared").full_paths(), "infrared")
    return visible, infrared


def evaluate_model(
    cfg: Config,
    model: TwoStreamAGW,
    root: Path,
    device: torch.device,
    progress: bool = False,
    images: ImageCache | None = None,
) -> ProtocolResult:
    """The dataset's protocols (SPEC section 4) on the current model."""
    extract = make_extractor(cfg, model, device, progress, images)
    if cfg.data.format == "sysu":
        return evaluate_sysu(
            extract, root, cfg.eval.sysu_modes, cfg.eval.sysu_shots, cfg.eval.trials
        )
    return evaluate_regdb(extract, root, cfg.data.trial)


def evaluate_round(
    cfg: Config,
    model: TwoStreamAGW,
    root: Path,
    device: torch.device,
    out_result: str | Path,
    progress: bool = False,
    images: ImageCache | None = None,
) -> dict[str, float]:
    """Evaluate, write the full per-trial result to `out_result`, return the summary row part."""
    started = time.perf_counter()
    result = evaluate_model(cfg, model, root, device, progress, images)
    Path(out_result).write_text(result.to_json())
    metrics = summary_metrics(cfg, result)
    metrics["time_evaluate"] = time.perf_counter() - started
    return metrics


def chance_summary(cfg: Config, root: Path, draws: int = 5) -> dict[str, float]:
    """The primary setting's metrics of random features: the chance level of the protocol.

    Each draw gives every image an i.i.d. Gaussian 64-d feature (normalised); the metrics
    (rank1 ... mINP) are averaged over `draws` draws (seeds 0 .. draws-1).
    """
    sums: dict[str, float] = {}
    for draw in range(draws):
        rng = np.random.default_rng(draw)

        def extract(paths: list[str], modality: str, rng=rng) -> np.ndarray:
            features = rng.standard_normal((len(paths), 64)).astype(np.float32)
            return features / np.linalg.norm(features, axis=1, keepdims=True)

        if cfg.data.format == "sysu":
            result = evaluate_sysu(extract, root, ("all",), (1,), cfg.eval.trials)
        else:
            result = evaluate_regdb(extract, root, cfg.data.trial)
        for key, value in result.summary(PRIMARY_SETTING[cfg.data.format]).items():
            sums[key] = sums.get(key, 0.0) + float(value)
    return {key: value / draws for key, value in sums.items()}


@dataclass
class RoundContext:
    """What one round needs besides the config: data, network, trainer, where to log."""

    cfg: Config
    root: Path
    manifest: Manifest
    model: TwoStreamAGW
    trainer: Trainer
    device: torch.device
    progress: bool = False
    images: ImageCache | None = None  # decoded once per run (a new one when None)

    def __post_init__(self) -> None:
        if self.images is None:
            self.images = image_cache(self.cfg)


def prepare_round(ctx: RoundContext, round_index: int) -> dict[str, Any]:
    """Extract, cluster and match; returns the targets and the round's diagnostics."""
    cfg = ctx.cfg
    stage = stage_of_round(cfg, round_index)
    started = time.perf_counter()
    features_v, features_r = extract_train_features(
        cfg, ctx.model, ctx.manifest, ctx.device, ctx.progress, ctx.images
    )
    extracted = time.perf_counter()
    visible, infrared = ctx.manifest.modality("visible"), ctx.manifest.modality("infrared")
    # Ground truth reaches the labels only for the supervised upper bound.
    truth = (visible.pids, infrared.pids) if cfg.train.supervision == "oracle" else None
    clusters = cluster_round(cfg, stage, features_v, features_r, truth)
    clustered = time.perf_counter()
    targets = match_round(
        cfg, stage, features_v, features_r, clusters, seed=derive_seed(cfg.seed, round_index, 2)
    )
    matched = time.perf_counter()
    metrics = label_diagnostics(
        targets,
        clusters,
        visible.pids,
        infrared.pids,
        features_v,
        features_r,
        cameras=(visible.camids, infrared.camids),
    )
    metrics.update(
        time_extract=extracted - started,
        time_cluster=clustered - extracted,
        time_match=matched - clustered,
    )
    return {"targets": targets, "metrics": metrics}


def train_one_round(ctx: RoundContext, round_index: int, targets: Any) -> dict[str, float]:
    """The training iterations of one round (memories built from `targets`)."""
    cfg, trainer = ctx.cfg, ctx.trainer
    started = time.perf_counter()
    views = train_transforms(
        cfg.data.height,
        cfg.data.width,
        pad=cfg.augment.pad,
        flip_p=cfg.augment.flip_p,
        erasing_p=cfg.augment.erasing_p,
        channel_exchange=cfg.augment.channel_exchange,
    )
    visible, infrared = ctx.manifest.modality("visible"), ctx.manifest.modality("infrared")
    from mmm_core.engine import distributed

    assert ctx.images is not None
    for subset in (visible, infrared):
        ctx.images.fill(subset.full_paths(), progress=ctx.progress)
    accumulate = cfg.train.accumulate
    shards = []
    # Shard i of the round's global batch: process rank r draws shards r*A .. r*A + A-1, so
    # one process with A = N shards draws what N processes with A = 1 draw, one each.
    for index in range(distributed.rank() * accumulate, (distributed.rank() + 1) * accumulate):
        # shard 0 keeps the seed of a run without shards (its numbers do not change)
        keys = (round_index, 3) if index == 0 else (round_index, 3, index)
        torch.manual_seed(derive_seed(cfg.seed, *keys))
        loaders = []
        for subset, labels, view_list, ids, instances, stream in (
            (
                visible,
                targets.labels_visible,
                [views["visible"], views["visible_exchange"]],
                cfg.sampler.visible_ids,
                cfg.sampler.visible_instances,
                4,
            ),
            (
                infrared,
                targets.labels_infrared,
                [views["infrared"]],
                cfg.sampler.infrared_ids,
                cfg.sampler.infrared_instances,
                5,
            ),
        ):
            loaders.append(
                train_loader(
                    subset.full_paths(),
                    labels,
                    subset.camids,
                    view_list,
                    ctx.images,
                    num_ids=ids,
                    num_instances=instances,
                    num_batches=cfg.train.iters_per_round,
                    seed=derive_seed(cfg.seed, round_index, stream, index),
                    workers=cfg.data.workers,
                    camera_aware=cfg.sampler.camera_aware,
                )
            )
        state = torch.random.get_rng_state() if accumulate > 1 else None
        shards.append(Shard(loaders[0], loaders[1], state))
    trainer.start_round(targets)
    losses = trainer.train_round_sharded(
        shards,
        cfg.train.iters_per_round,
        progress=ctx.progress,
        desc=f"round {round_index} train",
    )
    trainer.end_round()
    losses["time_train"] = time.perf_counter() - started
    losses["world_size"] = float(distributed.world_size())  # processes that trained the round
    losses["lr"] = float(trainer.optimizer.param_groups[0]["lr"]) if trainer.optimizer else 0.0
    return losses


def should_evaluate(cfg: Config, round_index: int) -> bool:
    total = cfg.train.stage1_rounds + cfg.train.stage2_rounds
    last = round_index == total - 1
    return last or (cfg.eval.every > 0 and (round_index + 1) % cfg.eval.every == 0)


def summary_metrics(cfg: Config, result: ProtocolResult) -> dict[str, float]:
    """rank1/5/10/20, mAP, mINP of the primary setting, plus every setting under its name."""
    primary = result.summary(PRIMARY_SETTING[cfg.data.format])
    out = {
        "rank1": primary["rank1"],
        "rank5": primary["rank5"],
        "rank10": primary["rank10"],
        "rank20": primary["rank20"],
        "mAP": primary["mAP"],
        "mINP": primary["mINP"],
    }
    out.update(result.metrics())
    return out
