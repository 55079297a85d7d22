"""Step "register": log the final model and the run's history to MLflow, register the model,
apply the promotion rule.

The final checkpoint is logged as an MLflow Model of the pipeline's MLflow run
(`mmm_core.serving`) and registered under ``tracking.model_name`` with the alias `alias`
(``candidate``); with `promote` it becomes ``champion`` under the rule of
`mmm_core.engine.champion` (the retraining pipeline's promote step applies it itself). A
retried step registers no second version. The per-round curves of the history
(``rounds.png``, as ``mmm train`` draws them) are logged beside it; each round's evaluation
file was logged by its evaluate step. A no-op when tracking is off.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from mmm_core.engine.build import tracker_for
from mmm_core.engine.champion import CHAMPION
from mmm_core.engine.lifecycle import finish_run, parse_rows
from mmm_core.steps.common import read_config

__all__ = ["run"]


def run(
    config_path: str | Path,
    checkpoint_path: str | Path,
    history_path: str | Path,
    alias: str = "candidate",
    *,
    promote: bool = True,
) -> dict[str, str]:
    cfg = read_config(config_path)
    if not cfg.tracking.enabled:
        return {"registered": "no (tracking off)"}
    from mmm_core.evaluation.visualize import save_round_curves

    tracker = tracker_for(cfg)
    tracker.resume(cfg.tracking.run_id)
    rows = parse_rows(Path(history_path))
    with tempfile.TemporaryDirectory() as folder:
        # (a history without rounds, e.g. a promotion's registration, has no curves)
        curves = (
            save_round_curves({"pipeline": rows}, Path(folder) / "rounds.png") if rows else None
        )
        version = finish_run(
            tracker,
            cfg,
            config=config_path,
            history=history_path,
            checkpoint=checkpoint_path,
            alias=alias,
            extra=(curves,) if curves else (),
            promote=promote,
        )
    champion = tracker.get_alias_version(cfg.tracking.model_name, CHAMPION)
    return {
        "registered": cfg.tracking.model_name,
        "version": str(version),
        "alias": alias,
        "champion": champion.version if champion else "",
    }
