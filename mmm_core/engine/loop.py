"""The whole method in one process: per round extract -> cluster -> match -> train -> evaluate.

This is what ``mmm train`` runs and what researchers debug and ablate. It composes the same
pieces the pipeline steps (`mmm_core.steps`) call over files: the builders
(`mmm_core.engine.build`), the round's phases (`mmm_core.engine.phases`) and the run
lifecycle (`mmm_core.engine.lifecycle`). Every round appends one JSON object to
``RUN/metrics.jsonl`` (and redraws ``RUN/rounds.png``, its curves, at most once a minute and
after the last round); ``RUN/config.yaml`` holds
the resolved config and ``RUN/checkpoint.pt`` the state after the last finished round
(``--resume`` continues there).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mmm_core.config import Config, dump_config
from mmm_core.data import Manifest, train_manifest
from mmm_core.data.check import check_run_images
from mmm_core.engine.budget import check_batch_fits
from mmm_core.engine.build import (
    build_network,
    build_trainer,
    dataset_root,
    seed_everything,
)
from mmm_core.engine.checkpoint import TrainingState, load_checkpoint, save_checkpoint
from mmm_core.engine.features import resolve_device
from mmm_core.engine.jsonfiles import json_line
from mmm_core.engine.lifecycle import (
    TABLE_HEADER,
    HistoryError,
    abort_run,
    check_resumable,
    finish_run,
    format_row,
    parse_rows,
    record_round,
    restore_state,
    start_run,
    state_of,
)
from mmm_core.engine.phases import (
    RoundContext,
    evaluate_round,
    prepare_round,
    should_evaluate,
    train_one_round,
)
from mmm_core.engine.schedule import stage_of_round
from mmm_core.evaluation.visualize import save_round_curves
from mmm_core.tracking import TrackingError, check_server, resolve_tracking_uri

__all__ = ["check_run_folder", "run_training"]

log = logging.getLogger(__name__)

# rounds.png is redrawn after a round when this many seconds have passed since the last
# drawing, and always after the last round: a drawing costs 1-1.5 s on a small CPU, more than
# a bench round's clustering.
PLOT_INTERVAL_S = 60.0


def check_run_folder(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse a run folder that would be silently overwritten, or a resume with nothing to
    resume; raises FileExistsError / FileNotFoundError naming the folder and what to do."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: is a file, not a run folder; choose another --out")
    if resume:
        if not (out / "checkpoint.pt").is_file():
            raise FileNotFoundError(
                f"{out / 'checkpoint.pt'}: no checkpoint to resume from; drop --resume to "
                "start a new run"
            )
        return
    if not overwrite and out.is_dir() and any(out.iterdir()):
        raise FileExistsError(
            f"{out}: the folder already holds a run; pass --resume to continue it, "
            "--overwrite to replace it, or choose another --out"
        )


def run_training(
    cfg: Config,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    echo: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Train the method end to end; returns the per-round metric rows (also in metrics.jsonl).

    A run folder is a record: a folder that already holds files is refused unless `resume`
    (which needs its checkpoint) or `overwrite`, before anything is written. `echo` receives
    the round table line by line (the CLI passes ``print``).
    """
    out = Path(out)
    check_run_folder(out, resume=resume, overwrite=overwrite)
    metrics_path = out / "metrics.jsonl"
    checkpoint_path = out / "checkpoint.pt"
    evaluation_path = out / "evaluation.json"
    device = resolve_device(cfg.train.device)
    rows: list[dict[str, Any]] = []
    state = None
    if resume:  # everything checked before anything of the run is written
        state = load_checkpoint(checkpoint_path, map_location=device)
        check_resumable(cfg, state, checkpoint_path)
        rows = parse_rows(metrics_path)[: state.next_round] if metrics_path.exists() else []
        if len(rows) < state.next_round:
            raise HistoryError(
                f"{metrics_path}: {len(rows)} rows, but the checkpoint is after round "
                f"{state.next_round - 1}; the history of rounds {len(rows)}.."
                f"{state.next_round - 1} is lost - start a new run"
            )
    # The data is read and every image decoded before anything of the run is written: bad
    # data ends the run here, not in a DataLoader worker or after a round of training.
    root = dataset_root(cfg, progress)
    manifest = train_manifest(cfg.data.format, root, cfg.data.trial)
    check_run_images(cfg.data.format, root, cfg.data.trial, manifest.full_paths(), progress)
    check_batch_fits(cfg, device)
    if cfg.tracking.enabled:  # a dead server fails here, before the run folder exists
        check_server(resolve_tracking_uri(cfg.tracking.uri))
    out.mkdir(parents=True, exist_ok=True)
    for orphan in out.glob("*.tmp"):  # a write that a kill interrupted (never a live one)
        log.info("removing %s, left by an interrupted write", orphan)
        orphan.unlink(missing_ok=True)
    dump_config(cfg, out / "config.yaml")
    seed_everything(cfg.seed)
    manifest.write(out / "manifest.tsv")
    cfg, tracker = start_run(cfg, out.name, run_dir=out, resume=resume)
    try:
        rows = _train_rounds(cfg, out, tracker, root, manifest, device, state, rows, progress, echo)
    except KeyboardInterrupt:
        abort_run(tracker, "KILLED")
        raise
    except BaseException:
        abort_run(tracker, "FAILED")
        raise
    try:
        finish_run(
            tracker,
            cfg,
            config=out / "config.yaml",
            history=metrics_path,
            checkpoint=checkpoint_path,
            extra=(out / "rounds.png", evaluation_path),
        )
    except TrackingError as exc:
        raise TrackingError(
            f"training finished ({out}), but tracking did not: {exc}. Nothing is lost: "
            f"`mmm train --resume --out {out}` with the same config sends what is left, logs "
            "the model and registers it once the server answers"
        ) from None
    return rows


def plot_due(round_index: int, total: int, last_drawn: float | None, now: float) -> bool:
    """Whether rounds.png is redrawn after `round_index`: after the first round drawn, the
    last round, and any round `PLOT_INTERVAL_S` seconds or more after the last drawing."""
    return last_drawn is None or round_index == total - 1 or now - last_drawn >= PLOT_INTERVAL_S


def _train_rounds(
    cfg: Config,
    out: Path,
    tracker: Any,
    root: Path,
    manifest: Manifest,
    device: torch.device,
    state: TrainingState | None,
    rows: list[dict[str, Any]],
    progress: bool,
    echo: Callable[[str], None] | None,
) -> list[dict[str, Any]]:
    """The rounds from the checkpoint's next one (or 0) to the last; returns every row."""
    metrics_path = out / "metrics.jsonl"
    checkpoint_path = out / "checkpoint.pt"
    evaluation_path = out / "evaluation.json"
    model = build_network(cfg, device)
    trainer = build_trainer(cfg, model, device)
    ctx = RoundContext(cfg, root, manifest, model, trainer, device, progress)
    total = cfg.train.stage1_rounds + cfg.train.stage2_rounds
    start = 0
    if state is not None:
        start = state.next_round
        restore_state(trainer, model, state, stage_of_round(cfg, min(start, total - 1)))
        log.info("resuming at round %d of %d", start, total)
    metrics_path.write_text("".join(json_line(r) for r in rows))
    if echo:
        echo(TABLE_HEADER)
        for row in rows:
            echo(format_row(row))
    plotted: float | None = None  # when rounds.png was last drawn (time.monotonic)
    for round_index in range(start, total):
        stage = stage_of_round(cfg, round_index)
        if trainer.stage != stage:
            trainer.start_stage(stage, first_round=round_index)
        prepared = prepare_round(ctx, round_index)
        row: dict[str, Any] = {"round": round_index, "stage": stage, **prepared["metrics"]}
        row.update(train_one_round(ctx, round_index, prepared["targets"]))
        evaluated = should_evaluate(cfg, round_index)
        if evaluated:
            row.update(
                evaluate_round(cfg, model, root, device, evaluation_path, progress, ctx.images)
            )
        save_checkpoint(checkpoint_path, state_of(trainer, model, round_index + 1, cfg))
        rows.append(row)
        record_round(tracker, row, metrics_path, evaluation=evaluation_path if evaluated else None)
        if plot_due(round_index, total, plotted, time.monotonic()):
            save_round_curves({out.name: rows}, out / "rounds.png")
            plotted = time.monotonic()
        if echo:
            echo(format_row(row))
    return rows
