"""The whole method in one process: per round extract -> cluster -> match -> train -> evaluate.

This is what ``mmm train`` runs and what researchers debug and ablate; the pipeline steps
(`mmm_core.steps`) call the same building blocks over files. Every round appends one JSON
object to ``RUN/metrics.jsonl`` (and redraws ``RUN/rounds.png``, its curves); ``RUN/config.yaml``
holds the resolved config and ``RUN/checkpoint.pt`` the state after the last finished round
(``--resume`` continues there).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmm_core.config import Config, config_to_dict, dump_config
from mmm_core.data import Manifest, train_manifest
from mmm_core.data.cache import ImageCache
from mmm_core.data.datasets import train_loader
from mmm_core.data.transforms import train_transforms
from mmm_core.engine.checkpoint import (
    TrainingState,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from mmm_core.engine.features import amp_dtype, extract_features, resolve_device
from mmm_core.engine.labels import cluster_round, label_diagnostics, match_round
from mmm_core.engine.trainer import LossWeights, Trainer
from mmm_core.evaluation.protocols import ProtocolResult, evaluate_regdb, evaluate_sysu
from mmm_core.evaluation.visualize import save_round_curves
from mmm_core.models import TwoStreamAGW, build_model

__all__ = [
    "RoundContext",
    "build_trainer",
    "chance_summary",
    "dataset_root",
    "derive_seed",
    "evaluate_model",
    "load_network",
    "prepare_round",
    "run_training",
    "stage_of_round",
    "tracker_for",
    "train_one_round",
]

log = logging.getLogger(__name__)

PRIMARY_SETTING = {"sysu": "sysu/all/single", "regdb": "regdb/visible->thermal"}


def jsonable(value: Any) -> Any:
    """Plain JSON data: NumPy scalars unwrapped, NaN and infinities as None (null)."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_line(row: dict[str, Any]) -> str:
    """One metrics.jsonl line (strict JSON, newline-terminated)."""
    return json.dumps(jsonable(row), allow_nan=False) + "\n"


def derive_seed(seed: int, *keys: int) -> int:
    """A 31-bit seed for one purpose (round, stream, rank) derived from the run seed."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0] & 0x7FFFFFFF)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def stage_of_round(cfg: Config, round_index: int) -> int:
    return 1 if round_index < cfg.train.stage1_rounds else 2


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

    args = dict(ids=synthetic.ids, seed=synthetic.seed, preset=synthetic.preset)
    stale = root.exists() and synth.stale_reason(root, cfg.data.format, **args)
    if root.exists() and not stale:
        return root
    generate = synth.generate_sysu if cfg.data.format == "sysu" else synth.generate_regdb
    if stale:
        log.warning("regenerating the synthetic dataset at %s (%s)", root, stale)
    else:
        log.info("generating a synthetic %s dataset at %s", cfg.data.format, root)
    generate(root, **args, overwrite=bool(stale))
    return root


def tracker_for(cfg: Config, run_dir: Path | None = None):
    """The MLflow tracker of `cfg.tracking` (a no-op tracker when tracking is off)."""
    from mmm_core.tracking import make_tracker

    t = cfg.tracking
    return make_tracker(t.enabled, t.uri, t.experiment, run_dir=run_dir)


def build_network(cfg: Config, device: torch.device) -> TwoStreamAGW:
    model = build_model(
        cfg.model.arch,
        cfg.model.pretrained,
        non_local=cfg.model.non_local,
        gem_p=cfg.model.gem_p,
        last_stride=cfg.model.last_stride,
        width=cfg.model.width,
    )
    return model.to(device)


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
        targets, clusters, visible.pids, infrared.pids, features_v, features_r
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
    torch.manual_seed(derive_seed(cfg.seed, round_index, 3))
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

    rank = distributed.rank()
    loaders = []
    assert ctx.images is not None
    for subset in (visible, infrared):
        ctx.images.fill(subset.full_paths(), progress=ctx.progress)
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
                seed=derive_seed(cfg.seed, round_index, stream, rank),
                workers=cfg.data.workers,
                camera_aware=cfg.sampler.camera_aware,
            )
        )
    trainer.start_round(targets)
    losses = trainer.train_round(
        loaders[0],
        loaders[1],
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


def state_of(trainer: Trainer, model: torch.nn.Module, next_round: int) -> TrainingState:
    return TrainingState(
        next_round=next_round,
        stage=trainer.stage,
        model=model.state_dict(),
        optimizer=trainer.optimizer.state_dict() if trainer.optimizer else None,
        scheduler=trainer.scheduler.state_dict() if trainer.scheduler else None,
        rng=capture_rng(),
        arch=getattr(model, "arch", ""),
        feature_dim=getattr(model, "feature_dim", 0),
        width=getattr(model, "width", 64),
    )


def restore_state(
    trainer: Trainer, model: torch.nn.Module, state: TrainingState, stage: int
) -> None:
    """Load the model and RNG states; continue the optimiser only within the same stage.

    A new stage starts with a fresh optimiser and schedule (SPEC section 5).
    """
    model.load_state_dict(state.model)
    restore_rng(state.rng)
    trainer.start_stage(stage)
    if state.stage == stage and state.optimizer is not None:
        trainer.optimizer.load_state_dict(state.optimizer)
        if state.scheduler is not None:
            trainer.scheduler.load_state_dict(state.scheduler)


def format_row(row: dict[str, Any]) -> str:
    def pct(key: str) -> str:
        value = row.get(key)
        return f"{100 * value:6.2f}" if isinstance(value, float) else "     -"

    return (
        f"{row['round']:>5} {row['stage']:>5} {row['n_clusters_visible']:>6} "
        f"{row['n_clusters_infrared']:>6} {100 * row['noise_visible']:>6.1f} "
        f"{100 * row['noise_infrared']:>6.1f} {row['ari_visible']:>6.3f} "
        f"{row['ari_infrared']:>6.3f} {pct('correspondence_accuracy')} "
        f"{pct('oracle_match_accuracy')} {row['loss']:>7.3f} "
        f"{pct('rank1')} {pct('mAP')} {pct('mINP')}"
    )


TABLE_HEADER = (
    "round stage  C_vis   C_ir  noiseV noiseR  ARI_V  ARI_R  corr%  xmod%    loss     R1    mAP"
    "   mINP"
)
# corr%: correspondence accuracy of the round's pairs (CMC joint clusters in stage 1, the
# matching in stage 2); xmod%: what matching would reach with perfect clusters (true-id
# centroids matched by the Hungarian algorithm): the cross-modality information the
# features carry (see evaluation.diagnostics.cross_modality_information).


def run_training(
    cfg: Config,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = False,
    echo: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Train the method end to end; returns the per-round metric rows (also in metrics.jsonl).

    `echo` receives the round table line by line (the CLI passes ``print``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    seed_everything(cfg.seed)
    root = dataset_root(cfg, progress)
    manifest = train_manifest(cfg.data.format, root, cfg.data.trial)
    manifest.write(out / "manifest.tsv")
    tracker = tracker_for(cfg, out)
    if cfg.tracking.run_id:
        tracker.resume(cfg.tracking.run_id)
    elif tracker.enabled:
        tracker.start(out.name, params=config_to_dict(cfg))
    device = resolve_device(cfg.train.device)
    model = build_network(cfg, device)
    trainer = build_trainer(cfg, model, device)
    ctx = RoundContext(cfg, root, manifest, model, trainer, device, progress)
    total = cfg.train.stage1_rounds + cfg.train.stage2_rounds
    metrics_path = out / "metrics.jsonl"
    checkpoint_path = out / "checkpoint.pt"
    start = 0
    rows: list[dict[str, Any]] = []
    if resume and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path, map_location=device)
        start = state.next_round
        restore_state(trainer, model, state, stage_of_round(cfg, min(start, total - 1)))
        if metrics_path.exists():
            rows = [json.loads(line) for line in metrics_path.read_text().splitlines()]
            rows = rows[:start]
        log.info("resuming at round %d of %d", start, total)
    metrics_path.write_text("".join(json_line(r) for r in rows))
    if echo:
        echo(TABLE_HEADER)
        for row in rows:
            echo(format_row(row))
    for round_index in range(start, total):
        stage = stage_of_round(cfg, round_index)
        if trainer.stage != stage:
            trainer.start_stage(stage)
        prepared = prepare_round(ctx, round_index)
        row: dict[str, Any] = {"round": round_index, "stage": stage, **prepared["metrics"]}
        row.update(train_one_round(ctx, round_index, prepared["targets"]))
        if should_evaluate(cfg, round_index):
            started = time.perf_counter()
            result = evaluate_model(cfg, model, root, device, progress, ctx.images)
            row.update(summary_metrics(cfg, result))
            row["time_evaluate"] = time.perf_counter() - started
            (out / "evaluation.json").write_text(result.to_json())
        save_checkpoint(checkpoint_path, state_of(trainer, model, round_index + 1))
        rows.append(row)
        with metrics_path.open("a") as handle:
            handle.write(json_line(row))
        tracker.log_metrics(row, step=round_index)
        save_round_curves({out.name: rows}, out / "rounds.png")
        if echo:
            echo(format_row(row))
    if tracker.enabled:
        tracker.log_artifact(out / "config.yaml")
        tracker.log_artifact(metrics_path)
        if (out / "rounds.png").exists():
            tracker.log_artifact(out / "rounds.png")
        if (out / "evaluation.json").exists():
            tracker.log_artifact(out / "evaluation.json")
        tracker.log_model(checkpoint_path, "model")
        tracker.register_model(cfg.tracking.model_name, "candidate")
        tracker.end("FINISHED")
    return rows
