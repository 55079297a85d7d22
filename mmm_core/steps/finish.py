"""Step "finish": the exit handler of a cluster run; a run that did not succeed leaves its MLflow
run FAILED (KILLED when cancelled), not RUNNING.

KFP runs it after every other task, whatever their outcome, with the run's final status. It
cannot read the start step's outputs (an exit task depends on no task), so it finds the MLflow
run by the tag start put on it, ``kfp.run_id``. Nothing is done for a run that succeeded,
when tracking is off, when start failed before making a run, or when the run has ended.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mmm_core.config import load_config

__all__ = ["run"]

# The final state of the training group -> the MLflow run status it leaves. The KFP backend
# passes the group's MLMD execution state (backend/src/v2/driver/resolve.go): COMPLETE or
# CACHED after a success, FAILED, or CANCELED; other spellings are accepted as well.
ENDED = {"FAILED": "FAILED", "CANCELED": "KILLED", "CANCELLED": "KILLED", "CANCELING": "KILLED"}


def run(
    config_paths: Sequence[str | Path], overrides: Sequence[str], kfp_run_id: str, state: str
) -> dict[str, str]:
    """Mark the MLflow run of KFP run `kfp_run_id` after a final `state`; returns what it did."""
    from mmm_core.tracking import make_tracker, resolve_tracking_uri

    cfg = load_config(list(config_paths), list(overrides))
    status = ENDED.get(state.upper())
    if status is None:
        return {"finish": f"pipeline {state.lower()}: nothing to mark"}
    uri = resolve_tracking_uri(cfg.tracking.uri)
    if not cfg.tracking.enabled or not uri:
        return {"finish": "tracking off"}
    tracker = make_tracker(True, uri, cfg.tracking.experiment)
    run_id = tracker.find_run({"kfp.run_id": kfp_run_id})
    if run_id is None:
        return {"finish": f"no MLflow run is tagged kfp.run_id={kfp_run_id}"}
    current = tracker.get_run_status(run_id)
    if current != "RUNNING":
        return {"finish": f"MLflow run {run_id} had ended ({current})"}
    tracker.resume(run_id)
    tracker.end(status)
    return {"finish": f"MLflow run {run_id} marked {status} (pipeline {state.lower()})"}
