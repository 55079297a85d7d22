"""Tracking failures never cost training: `BufferedTracker` keeps what an outage of the MLflow
server held back, says so once, sends it in order when the server answers again or on
resume, and `mmm train` marks a run that ends by an error FAILED."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from mmm_core import tracking
from mmm_core.tracking import BufferedTracker, TrackingError


class FlakyServer:
    """An MlflowTracker stand-in whose server can be switched off and on."""

    enabled = True

    def __init__(self) -> None:
        self.uri = "http://127.0.0.1:9"
        self.experiment = "outage"
        self.run_id: str | None = None
        self.up = True
        self.metrics: list[tuple[int, dict[str, float]]] = []
        self.artifacts: list[tuple[str | None, str]] = []
        self.ended: str | None = None

    def _check(self) -> None:
        if not self.up:
            raise TrackingError(f"MLflow at {self.uri}: connection refused")

    def start(self, run_name, params=None, tags=None) -> str:
        self._check()
        self.run_id = "run-1"
        return self.run_id

    def resume(self, run_id: str) -> str:
        self._check()
        self.run_id = run_id
        return run_id

    def log_metrics(self, metrics, step: int) -> None:
        self._check()
        self.metrics.append((step, dict(metrics)))

    def log_artifact(self, path, artifact_path=None) -> None:
        self._check()
        self.artifacts.append((artifact_path, Path(path).read_text()))

    def end(self, status: str = "FINISHED") -> None:
        self._check()
        self.ended = status


@pytest.fixture
def server(monkeypatch) -> FlakyServer:
    flaky = FlakyServer()

    def health(uri: str, timeout: float = 5.0) -> None:
        flaky._check()

    monkeypatch.setattr(tracking, "check_server", health)
    return flaky


def log_round(tracker: BufferedTracker, folder: Path, step: int) -> None:
    evaluation = folder / "evaluation.json"
    evaluation.write_text(f"round {step}")  # rewritten every round, as training does
    tracker.log_metrics({"mAP": 0.1 * step, "note": "text is dropped"}, step=step)
    tracker.log_artifact(evaluation, f"evaluation/round-{step:03d}")


def test_an_outage_is_kept_then_sent_in_order(server, tmp_path, caplog):
    tracker = BufferedTracker(server, tmp_path / "tracking.json")
    tracker.start("run")
    log_round(tracker, tmp_path, 0)
    server.up = False
    with caplog.at_level(logging.WARNING, logger="mmm_core.tracking"):
        log_round(tracker, tmp_path, 1)
        log_round(tracker, tmp_path, 2)
    assert tracker.pending == 4
    behind = [r for r in caplog.records if "tracking is behind" in r.getMessage()]
    assert len(behind) == 1  # said once, not at every request
    state = json.loads((tmp_path / "tracking.json").read_text())
    assert state["run_id"] == "run-1" and len(state["pending"]) == 4
    server.up = True
    log_round(tracker, tmp_path, 3)
    assert tracker.pending == 0
    assert [step for step, _ in server.metrics] == [0, 1, 2, 3]
    assert server.metrics[1][1] == {"mAP": pytest.approx(0.1)}
    # each round's file as it was when the round ended, not as it is now
    assert server.artifacts == [(f"evaluation/round-{s:03d}", f"round {s}") for s in range(4)]
    assert not any((tmp_path / "tracking-backlog").iterdir())


def test_end_keeps_the_backlog_for_resume(server, tmp_path):
    tracker = BufferedTracker(server, tmp_path / "tracking.json")
    tracker.start("run")
    server.up = False
    log_round(tracker, tmp_path, 0)
    with pytest.raises(TrackingError, match=r"2 request\(s\) of run run-1 are kept in .*--resume"):
        tracker.end("FINISHED")
    assert server.ended is None
    # a later process (mmm train --resume) finds the run id and the backlog
    server.up = True
    again = BufferedTracker(server, tmp_path / "tracking.json")
    assert again.stored_run_id() == "run-1" and again.pending == 2
    again.resume(again.stored_run_id())
    assert again.pending == 0 and [s for s, _ in server.metrics] == [0]
    again.end("FINISHED")
    assert server.ended == "FINISHED"


def test_a_state_file_of_another_server_gives_no_run_id(server, tmp_path):
    (tmp_path / "tracking.json").write_text(
        json.dumps({"uri": "http://elsewhere:5000", "run_id": "x", "pending": []})
    )
    assert BufferedTracker(server, tmp_path / "tracking.json").stored_run_id() == ""


def test_bounded_retries_keep_the_users_settings(monkeypatch):
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", raising=False)
    tracking.bounded_retries()
    import os

    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
    assert os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "1"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "60"


@pytest.mark.slow
def test_a_run_that_ends_by_an_error_is_marked_failed(capsys, micro_dataset, tmp_path):
    from mlflow import MlflowClient

    from mmm_core.tracking import local_store_uri
    from tests.reliability.test_error_boundary import one_error_line, run, train_argv

    out = tmp_path / "run"
    argv = train_argv(
        micro_dataset, out, "--set", "tracking.enabled=true", "--set", "cluster.min_samples=10000"
    )
    code, err = run(capsys, argv)
    assert code == 1 and "cluster" in one_error_line(err).lower()
    state = json.loads((out / "tracking.json").read_text())
    client = MlflowClient(tracking_uri=local_store_uri(out))
    assert client.get_run(state["run_id"]).info.status == "FAILED"
