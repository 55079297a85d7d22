"""Step "evaluate" (GPU): checkpoint -> metrics of the dataset's protocols, ranked-list picture."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmm_core.engine.build import dataset_root, load_network, tracker_for
from mmm_core.engine.features import resolve_device
from mmm_core.engine.lifecycle import record_round
from mmm_core.engine.phases import evaluate_round, should_evaluate
from mmm_core.engine.schedule import stage_of_round
from mmm_core.steps.common import read_config, read_json
from mmm_core.tracking import NullTracker

__all__ = ["ROUNDS_LOGGED", "run", "run_round"]

# Run metric: how many rounds the pipeline's evaluate steps have logged (a retried step that
# finds its round logged logs nothing again, so no metric has two entries for one round).
ROUNDS_LOGGED = "rounds_logged"


def run(
    config_path: str | Path,
    checkpoint_path: str | Path,
    out_result: str | Path,
    *,
    progress: bool = False,
) -> dict[str, float]:
    """Evaluate; writes the full per-trial result JSON to `out_result`, returns the summary."""
    cfg = read_config(config_path)
    device = resolve_device(cfg.train.device)
    model = load_network(cfg, checkpoint_path, device)
    return evaluate_round(cfg, model, dataset_root(cfg), device, out_result, progress)


def run_round(
    config_path: str | Path,
    checkpoint_path: str | Path,
    round_index: int,
    history_path: str | Path,
    metrics_paths: Sequence[str | Path],
    out_history: str | Path,
    out_result: str | Path,
    *,
    progress: bool = False,
) -> dict[str, Any]:
    """Close a round: evaluate when due, and append the round's row to the history.

    The row merges the metrics files of the round's steps (extract, cluster, match, train)
    and the evaluation summary; `out_history` is `history_path` plus that row (JSON lines,
    the same keys as ``mmm train`` writes to metrics.jsonl). When no evaluation is due,
    `out_result` is written as ``{}``.
    """
    cfg = read_config(config_path)
    row: dict[str, Any] = {"round": round_index, "stage": stage_of_round(cfg, round_index)}
    for path in metrics_paths:
        row.update(read_json(path))
    evaluated = should_evaluate(cfg, round_index)
    if evaluated:
        row.update(run(config_path, checkpoint_path, out_result, progress=progress))
    else:
        Path(out_result).write_text("{}")
    tracker = tracker_for(cfg)
    if tracker.enabled:
        tracker.resume(cfg.tracking.run_id)
        if tracker.get_run_metrics().get(ROUNDS_LOGGED, 0) > round_index:
            tracker = NullTracker()  # a retried step: an earlier attempt logged this round
    record_round(tracker, row, history_path, out_history, out_result if evaluated else None)
    if tracker.enabled:
        tracker.log_metrics({ROUNDS_LOGGED: round_index + 1}, step=round_index)
    return row
