"""The run lifecycle, written once for `mmm train` and the pipeline steps.

A run is: `start_run` (the resolved config, the tracker's run), one `record_round` per round
(the row appended to the history, ``metrics.jsonl``, and logged), and `finish_run` (artifacts,
the model logged and registered, the tracker's run ended). Between rounds the training state
travels as a checkpoint (`state_of`, `restore_state`). `read_rows` is the one reader of a
history file.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from mmm_core.config import Config, ConfigError, config_to_dict
from mmm_core.engine.build import tracker_for
from mmm_core.engine.checkpoint import TrainingState, capture_rng, restore_rng
from mmm_core.engine.jsonfiles import json_line
from mmm_core.engine.trainer import Trainer

__all__ = [
    "TABLE_HEADER",
    "TRACKING_STATE",
    "HistoryError",
    "abort_run",
    "check_resumable",
    "finish_run",
    "format_row",
    "parse_rows",
    "read_rows",
    "record_round",
    "restore_state",
    "start_run",
    "state_of",
]

log = logging.getLogger(__name__)

REGISTERED_VERSION = "registered_version"  # run metric: the model version the run registered
PROMOTED = "promotion/promoted"  # run metric: 1 when the run's model became champion

# The tracking state of a run folder: the MLflow run id and the backlog of an outage.
TRACKING_STATE = "tracking.json"


def state_of(
    trainer: Trainer, model: torch.nn.Module, next_round: int, cfg: Config | None = None
) -> TrainingState:
    """The checkpoint of the run before round `next_round` (with `cfg`'s input size)."""
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
        input_size=(cfg.data.height, cfg.data.width) if cfg is not None else None,
    )


def check_resumable(cfg: Config, state: TrainingState, path: str | Path) -> None:
    """Refuse a config that does not fit the checkpoint it would continue (ConfigError naming
    the key, the config's value and the checkpoint's)."""
    checks = [
        ("model.arch", cfg.model.arch, state.arch),
        ("model.width", cfg.model.width, state.width),
    ]
    if state.input_size is not None:
        size = (cfg.data.height, cfg.data.width)
        checks.append(
            ("data.height/width", "x".join(map(str, size)), "x".join(map(str, state.input_size)))
        )
    for key, wanted, stored in checks:
        if stored not in ("", None) and wanted != stored:
            raise ConfigError(
                key,
                f"is {wanted}, but the checkpoint {path} was trained with {stored}; "
                "resume with the run's own config, or start a new run",
            )


def restore_state(
    trainer: Trainer, model: torch.nn.Module, state: TrainingState, stage: int
) -> None:
    """Load the model and RNG states; continue the optimiser only within the same stage.

    A new stage starts with a fresh optimiser and schedule (SPEC section 5).
    """
    model.load_state_dict(state.model)
    restore_rng(state.rng)
    trainer.start_stage(stage, first_round=state.next_round)
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


class HistoryError(ValueError):
    """A metrics.jsonl that cannot be read as a run's history (named with file and line)."""


def parse_rows(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of an existing metrics.jsonl ([] when empty); errors name file and line."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError as err:
            raise HistoryError(f"{path}:{number}: not a JSON object: {err}") from None
    return rows


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl (a run folder or the file itself); errors name file and line."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such metrics file (is it an `mmm train` run folder?)")
    rows = parse_rows(path)
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or "round" not in row:
            raise HistoryError(f"{path}: row {number}: a row needs a 'round' field")
    if not rows:
        raise HistoryError(f"{path}: no rounds yet")
    return rows


def start_run(
    cfg: Config,
    name: str,
    run_dir: Path | None = None,
    *,
    resume: bool = False,
    tags: dict[str, str] | None = None,
) -> tuple[Config, Any]:
    """The run's tracker: a new tracking run (its id written into the returned config), the
    run of ``tracking.run_id`` resumed, or the no-op tracker when tracking is off.

    `tags` are set on a new run; when a run with all of them exists already (a pipeline
    step retried after it made its run: the tags hold the KFP run id), that run is resumed
    instead of making a second one.

    `run_dir` is ``mmm train``'s run folder: a tracker without a server keeps its local store
    there, and logging goes through a `BufferedTracker` whose state file,
    ``RUN/tracking.json``, keeps the run id and what an outage of the server held back;
    with `resume`, the run recorded there is continued and its backlog sent. Without
    `run_dir` (the pipeline), tracking needs ``tracking.uri`` or ``MLFLOW_TRACKING_URI``.
    """
    if cfg.tracking.enabled and run_dir is None:
        from mmm_core.tracking import resolve_tracking_uri

        uri = resolve_tracking_uri(cfg.tracking.uri)
        if not uri:
            raise ValueError(
                "tracking.enabled is true but no MLflow server is configured: set "
                "tracking.uri or MLFLOW_TRACKING_URI"
            )
        cfg = cfg.replace(**{"tracking.uri": uri})
    tracker = tracker_for(cfg, run_dir)
    if tracker.enabled and run_dir is not None:
        from mmm_core.tracking import BufferedTracker

        state = Path(run_dir) / TRACKING_STATE
        if not resume:  # a replaced run's record is not this run's
            state.unlink(missing_ok=True)
            shutil.rmtree(Path(run_dir) / "tracking-backlog", ignore_errors=True)
        tracker = BufferedTracker(tracker, state)
        stored = tracker.stored_run_id() if resume else ""
        if stored and not cfg.tracking.run_id:
            cfg = cfg.replace(**{"tracking.run_id": stored})
    if not cfg.tracking.run_id and tags and tracker.enabled:
        found = tracker.find_run(tags)
        if found:
            log.info("resuming MLflow run %s, made earlier for the same %s", found, tags)
            cfg = cfg.replace(**{"tracking.run_id": found})
    if cfg.tracking.run_id:
        tracker.resume(cfg.tracking.run_id)
    elif tracker.enabled:
        run_id = tracker.start(name, params=config_to_dict(cfg), tags=tags)
        cfg = cfg.replace(**{"tracking.run_id": run_id})
    return cfg, tracker


def record_round(
    tracker: Any,
    row: dict[str, Any],
    history: str | Path,
    out_history: str | Path | None = None,
    evaluation: str | Path | None = None,
) -> None:
    """Close a round: `history` plus `row` written to `out_history` (default: `history`
    itself, appended), the row logged as the tracker's metrics at step ``row["round"]``, and
    the round's `evaluation` file (when it was evaluated) logged as an artifact.
    """
    history, out = Path(history), Path(out_history or history)
    if out == history:
        with history.open("a") as handle:
            handle.write(json_line(row))
    else:
        previous = history.read_text() if history.exists() else ""
        out.write_text(previous + json_line(row))
    tracker.log_metrics(row, step=int(row["round"]))
    if evaluation is not None:
        tracker.log_artifact(evaluation, f"evaluation/round-{int(row['round']):03d}")


def abort_run(tracker: Any, status: str = "FAILED") -> None:
    """End the tracker's run as FAILED (an error) or KILLED (interrupted); a tracking failure
    here is logged, never raised over the error that ended the run."""
    if not tracker.enabled or not tracker.run_id:
        return
    from mmm_core.tracking import TrackingError

    try:
        getattr(tracker, "inner", tracker).end(status)
    except TrackingError as exc:
        log.warning("could not mark MLflow run %s %s: %s", tracker.run_id, status, exc)


def finish_run(
    tracker: Any,
    cfg: Config,
    *,
    config: str | Path,
    history: str | Path,
    checkpoint: str | Path,
    alias: str = "candidate",
    extra: Iterable[str | Path] = (),
    promote: bool = True,
) -> str | None:
    """Log the config, the history and the `extra` files that exist, log the final model (an
    MLflow pyfunc model that `mmm_core.serving` serves: features from images; the
    checkpoint's weights, without its optimiser and scheduler states), register it
    under ``tracking.model_name`` with `alias`, apply the promotion rule
    (`mmm_core.engine.champion`, when `promote` and ``tracking.promote``), end the run.

    Called again for the same run (a retried register step, ``mmm train --resume``), it
    registers nothing new and decides nothing twice: the version and the decision are
    recorded as run metrics (`REGISTERED_VERSION`, ``promotion/promoted``).
    Returns the registered version, or None when tracking is off.
    """
    if not tracker.enabled:
        return None
    recorded = tracker.get_run_metrics()
    register = REGISTERED_VERSION not in recorded
    decide_now = promote and cfg.tracking.promote and PROMOTED not in recorded
    with tempfile.TemporaryDirectory() as folder:
        weights = Path(folder) / "checkpoint.pt"  # what is registered and what is judged
        state = None
        if register or decide_now:
            from mmm_core.engine.checkpoint import save_weights_only

            state = save_weights_only(checkpoint, weights)
        if not register:
            version = str(int(recorded[REGISTERED_VERSION]))
            log.info("version %s was registered by an earlier attempt", version)
        else:
            tracker.log_artifact(config)
            tracker.log_artifact(history, "history")
            for path in extra:
                if Path(path).exists():
                    tracker.log_artifact(path)
            from mmm_core.serving import model_metadata

            feature_dim = state.feature_dim
            metadata = model_metadata(cfg, feature_dim) if feature_dim else {}
            tracker.log_model(weights, "model", metadata=metadata, config_path=config)
            version = tracker.register_model(cfg.tracking.model_name, alias)
            tracker.log_metrics({REGISTERED_VERSION: float(version)}, step=0)
        if decide_now:
            from mmm_core.engine.champion import CHAMPION, decide

            decision = decide(cfg, tracker, weights, log_to=tracker)
            if decision.promote:
                tracker.set_alias(cfg.tracking.model_name, CHAMPION, version)
            log.info(
                "%s v%s: %s",
                "champion is now" if decision.promote else "not promoted:",
                version,
                decision.reason,
            )
            numbers = {
                PROMOTED: float(decision.promote),
                "promotion/new_mAP": decision.new_score,
                "promotion/champion_mAP": decision.champion_score,
            }
            tracker.log_metrics(numbers, step=0)
    tracker.end("FINISHED")
    return version
