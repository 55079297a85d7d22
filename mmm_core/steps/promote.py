"""Step "promote" (retraining): compare with the champion, register, promote, commit the state.

What is compared. The new model (the last round's checkpoint) and the champion it warm-started
from (the ingest step's initial checkpoint holds the champion's weights) are both evaluated
here, in one process, with the run's resolved config on the same mirrored dataset: the same
test set, the same gallery draws (trials), the same protocol. The score is `METRIC` (mAP) of
the dataset's primary setting (``sysu/all/single``, ``regdb/visible->thermal``), averaged over
the trials. The champion's mAP stored in its own MLflow run is *not* used: it was measured on
the test set of its day, possibly with other evaluation settings; re-evaluating costs one
evaluation and makes the two numbers comparable by construction.

The rule is the one of `mmm_core.engine.champion`: promote when ``new > champion +
min_improvement`` (a tie keeps the champion). A retraining is stage-2-only, so without a
champion (nothing to warm-start from, initial weights) it becomes the first one only with
``allow_first`` (the pipeline's ``promote_without_champion``). If alias ``champion`` moved
while the run was going (it no longer points at the version the run started from), nothing
is promoted: the comparison would be against the wrong model.

In order: evaluate both; log ``retrain/new_mAP``, ``retrain/champion_mAP``,
``retrain/promoted`` and the decision to the run's MLflow run (both evaluation files as
artifacts under ``promotion/``); register the new model (`mmm_core.steps.register`, alias
``candidate``: the model weights only, as every registered model);
point ``champion`` at it when better; commit the ingest snapshot as the new
state (`mmm_core.steps.ingest.write_state`); end the run. The state is committed last, so a
failure anywhere leaves the images pending for the next run. A retried step does not register
a second version: the version is recorded as metric ``retrain/registered_version`` and reused.

When the ingest step decided not to train, this step only writes its result and returns.
"""

from __future__ import annotations

import datetime
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from mmm_core.engine.champion import CHAMPION, METRIC, first_champion_allowed, judge, score
from mmm_core.steps.ingest import Decision

__all__ = ["METRIC", "run"]

log = logging.getLogger(__name__)

CANDIDATE = "candidate"
VERSION_METRIC = "retrain/registered_version"


def _write_result(path: str | Path, result: dict[str, Any]) -> dict[str, Any]:
    Path(path).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return result


def run(
    config_path: str | Path,
    decision_path: str | Path,
    snapshot_path: str | Path,
    initial_checkpoint_path: str | Path,
    checkpoint_path: str | Path,
    history_path: str | Path,
    out_result: str | Path,
    *,
    min_improvement: float = 0.0,
    allow_first: bool = False,
) -> dict[str, Any]:
    """Compare, register, promote, commit; returns (and writes to `out_result`) the result.

    The result: ``trained``, ``promoted`` (0/1), ``reason``, ``new_images``, and when trained
    ``new_mAP``, ``champion_mAP`` (None without a champion), ``version`` (registered),
    ``champion_version`` (the champion after this step), ``metric``.
    """
    decision = Decision.read(decision_path)
    if not decision.train:
        log.info("nothing to promote: %s", decision.reason)
        result = {
            "trained": 0,
            "promoted": 0,
            "reason": decision.reason,
            "new_images": decision.new_images,
        }
        return _write_result(out_result, result)

    from mmm_core.engine.build import tracker_for
    from mmm_core.engine.phases import PRIMARY_SETTING
    from mmm_core.steps import ingest, register
    from mmm_core.steps.common import read_config

    cfg = read_config(config_path)
    name = cfg.tracking.model_name
    tracker = tracker_for(cfg)
    tracker.resume(cfg.tracking.run_id)
    with tempfile.TemporaryDirectory() as folder:
        new_file, champion_file = Path(folder) / "new.json", Path(folder) / "champion.json"
        new_score = score(cfg, checkpoint_path, new_file)
        champion_score = None
        if decision.champion_version:
            champion_score = score(cfg, initial_checkpoint_path, champion_file)
            tracker.log_artifact(champion_file, "promotion")
        tracker.log_artifact(new_file, "promotion")

    recorded = tracker.get_run_metrics().get(VERSION_METRIC)
    registered = str(int(recorded)) if recorded is not None else ""  # by an earlier attempt
    current = tracker.get_alias_version(name, CHAMPION)
    current_version = current.version if current else ""
    if registered and current_version == registered:
        promote, reason = True, "promoted by an earlier attempt of this step"
    elif current_version != decision.champion_version:
        promote = False
        reason = (
            f"{CHAMPION} moved during the run (v{decision.champion_version or '-'} -> "
            f"v{current_version}): not promoting against a model this run was not compared with"
        )
    elif champion_score is None:  # (a retraining is stage-2-only: it needs `allow_first`)
        promote, reason = first_champion_allowed(cfg, allow_first)
    else:  # the rule of `mmm_core.engine.champion`, on the scores measured above
        verdict = judge(new_score, champion_score, current_version, min_improvement)
        promote, reason = verdict.promote, verdict.reason
    log.info("%s: %s", "promote" if promote else "keep the champion", reason)
    protocol = f"{PRIMARY_SETTING[cfg.data.format]} {METRIC}, mean of the evaluated trials"
    tracker.log_params(
        {"retrain": {"decision": "promoted" if promote else "kept", "protocol": protocol}}
    )
    numbers: dict[str, Any] = {
        f"retrain/new_{METRIC}": new_score,
        f"retrain/champion_{METRIC}": champion_score,
        "retrain/promoted": float(promote),
        "retrain/min_improvement": min_improvement,
    }
    tracker.log_metrics(numbers, step=decision.rounds)

    if registered:  # a retried step: this run's model is registered already
        version = registered
    else:
        # (registers the weights only: `finish_run` drops the optimiser and scheduler)
        registered_now = register.run(
            config_path, checkpoint_path, history_path, CANDIDATE, promote=False
        )
        version = registered_now["version"]
        tracker.resume(cfg.tracking.run_id)  # register ended the run
        tracker.log_metrics({VERSION_METRIC: float(version)}, step=decision.rounds)
    if promote:
        tracker.set_alias(name, CHAMPION, version)

    state = json.loads(Path(snapshot_path).read_text())
    state.update(
        run_id=cfg.tracking.run_id,
        model_name=name,
        model_version=version,
        promoted=promote,
        committed_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )
    ingest.write_state(decision.state_uri, state)
    log.info("committed %d images as consumed to %s", len(state["images"]), decision.state_uri)
    tracker.end("FINISHED")
    result = {
        "trained": 1,
        "promoted": int(promote),
        "reason": reason,
        "new_images": decision.new_images,
        "metric": METRIC,
        f"new_{METRIC}": new_score,
        f"champion_{METRIC}": champion_score,
        "version": version,
        "champion_version": version if promote else current_version,
    }
    return _write_result(out_result, result)
