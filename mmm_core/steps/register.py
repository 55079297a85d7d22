"""Step "register": log the final model and the run's history to MLflow, register the model.

The final checkpoint is logged as an artifact of the pipeline's MLflow run and registered
under ``tracking.model_name`` with the alias `alias` (``candidate`` for training runs; the
retraining pipeline promotes ``champion`` separately). A no-op when tracking is off.
"""

from __future__ import annotations

from pathlib import Path

from mmm_core.engine.build import tracker_for
from mmm_core.engine.lifecycle import finish_run
from mmm_core.steps.common import read_config

__all__ = ["run"]


def run(
    config_path: str | Path,
    checkpoint_path: str | Path,
    history_path: str | Path,
    alias: str = "candidate",
) -> dict[str, str]:
    cfg = read_config(config_path)
    if not cfg.tracking.enabled:
        return {"registered": "no (tracking off)"}
    tracker = tracker_for(cfg)
    tracker.resume(cfg.tracking.run_id)
    version = finish_run(
        tracker,
        cfg,
        config=config_path,
        history=history_path,
        checkpoint=checkpoint_path,
        alias=alias,
    )
    return {"registered": cfg.tracking.model_name, "version": str(version), "alias": alias}
