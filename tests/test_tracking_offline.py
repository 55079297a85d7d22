"""mmm_core.tracking without a server: flattening, keys, the null tracker, the local store."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from mmm_core.tracking import (
    MAX_PARAM_VALUE_LENGTH,
    MlflowTracker,
    NullTracker,
    Tracker,
    TrackingError,
    finite_metrics,
    flatten_params,
    make_tracker,
    metric_key,
    resolve_tracking_uri,
)


@dataclass(frozen=True)
class Inner:
    eps: float = 0.6
    ids: tuple[int, ...] = (1, 2)


@dataclass(frozen=True)
class Outer:
    seed: int = 1
    inner: Inner = field(default_factory=Inner)
    name: str = "mmm"


def test_flatten_params_matches_a_hand_written_reference():
    assert flatten_params(Outer()) == {
        "seed": "1",
        "inner.eps": "0.6",
        "inner.ids": "[1, 2]",
        "name": "mmm",
    }
    nested = {"a": {"b": {"c": np.float32(0.5)}, "d": None}, "e": [np.int64(3)], "f": True}
    assert flatten_params(nested) == {"a.b.c": "0.5", "a.d": "None", "e": "[3]", "f": "True"}


def test_flatten_params_of_the_project_config():
    from mmm_core.config import Config

    flat = flatten_params(Config())
    assert flat["seed"] == str(Config().seed)
    assert flat["cluster.eps"] == str(Config().cluster.eps)
    assert flat["tracking.experiment"] == Config().tracking.experiment
    assert all(isinstance(v, str) and len(v) <= MAX_PARAM_VALUE_LENGTH for v in flat.values())


def test_long_values_are_truncated_to_the_limit():
    flat = flatten_params({"long": "y" * 10_000, "short": "y" * MAX_PARAM_VALUE_LENGTH})
    assert len(flat["long"]) == MAX_PARAM_VALUE_LENGTH and flat["long"].endswith("[truncated]")
    assert flat["short"] == "y" * MAX_PARAM_VALUE_LENGTH


def test_flatten_params_rejects_scalars():
    with pytest.raises(TypeError, match="mapping or a dataclass"):
        flatten_params(3)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("loss", "loss"),
        ("regdb/visible->thermal/R1", "regdb/visible_to_thermal/R1"),
        ("sysu/all/single/mAP", "sysu/all/single/mAP"),
        ("a//b/", "a/b"),
        ("a/../b", "a/_/b"),
        ("r@1 (%)", "r_1 ___"),
        ("x" * 300, "x" * 250),
    ],
)
def test_metric_key(key, expected):
    assert metric_key(key) == expected


def test_finite_metrics_drops_none_nan_inf_and_text():
    values = {
        "a": 1,
        "b": np.float64(0.25),
        "c": None,
        "d": math.nan,
        "e": math.inf,
        "f": "text",
        "g": True,
        "h": np.array(2.0),
    }
    assert finite_metrics(values) == {"a": 1.0, "b": 0.25, "g": 1.0, "h": 2.0}


def test_null_tracker_does_nothing(tmp_path):
    tracker = make_tracker(False, "http://unused:5000", "x")
    assert isinstance(tracker, NullTracker) and isinstance(tracker, Tracker)
    assert not tracker.enabled
    assert tracker.start("run", {"a": 1}, {"t": "v"}) == ""
    assert tracker.resume("abc") == "abc" and tracker.run_id == "abc"
    tracker.log_params({"a": 1})
    tracker.log_metrics({"loss": 1.0}, step=0)
    tracker.log_artifact(tmp_path / "missing-is-fine")
    assert tracker.log_model(tmp_path / "missing.pt", "model") == ""
    assert tracker.register_model("m", "champion") == ""
    tracker.set_alias("m", "champion", "1")
    assert tracker.get_alias_version("m", "champion") is None
    assert tracker.get_run_metrics() == {}
    tracker.end("FAILED")
    with pytest.raises(TrackingError, match="tracking is off"):
        tracker.download_model("m", "champion", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_make_tracker_resolves_the_uri(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    explicit = make_tracker(True, "http://mlflow:5000", "exp")
    assert isinstance(explicit, MlflowTracker) and explicit.uri == "http://mlflow:5000"
    local = make_tracker(True, "", "exp", run_dir=tmp_path / "run")
    assert local.uri == f"sqlite:///{(tmp_path / 'run' / 'mlflow.db').resolve()}"
    assert local.artifact_location == (tmp_path / "run" / "mlartifacts").resolve().as_uri()
    with pytest.raises(TrackingError, match="MLFLOW_TRACKING_URI"):
        make_tracker(True, "", "exp")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env:5000")
    assert make_tracker(True, "", "exp", run_dir=tmp_path).uri == "http://from-env:5000"


def test_resolve_tracking_uri_order(monkeypatch, tmp_path):
    """Explicit URI, else $MLFLOW_TRACKING_URI, else the run folder's SQLite store, else ""."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store = f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    assert resolve_tracking_uri("") == ""
    assert resolve_tracking_uri("", tmp_path) == store
    assert resolve_tracking_uri("http://given:5000", tmp_path) == "http://given:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env:5000")
    assert resolve_tracking_uri("", tmp_path) == "http://from-env:5000"
    assert resolve_tracking_uri("http://given:5000") == "http://given:5000"
    # the env URI is not a run folder's store: no artifact folder is chosen for it
    assert make_tracker(True, "", "exp", run_dir=tmp_path).artifact_location is None


def test_logging_needs_a_run():
    tracker = MlflowTracker("sqlite:///unused.db", "exp")
    with pytest.raises(TrackingError, match="call start"):
        tracker.log_metrics({"a": 1.0}, step=0)


@pytest.mark.slow
def test_local_sqlite_store_round_trip(tmp_path, monkeypatch):
    """The embedded default (no server): a run, a metric, a model with the champion alias."""
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracker = make_tracker(True, "", "local-exp", run_dir=tmp_path / "run")
    run_id = tracker.start("demo", params={"cluster": {"eps": 0.6}})
    tracker.log_metrics({"R1": 0.3}, step=2)
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(b"weights")
    tracker.log_model(checkpoint)
    assert tracker.register_model("mmm-local", alias="champion") == "1"
    tracker.end()

    again = make_tracker(True, "", "local-exp", run_dir=tmp_path / "run")
    assert again.get_alias_version("mmm-local", "champion").run_id == run_id
    assert again.get_run_metrics(run_id) == {"R1": 0.3}
    stored = list((tmp_path / "run" / "mlartifacts").rglob("checkpoint.pt"))
    assert len(stored) == 1 and stored[0].read_bytes() == b"weights"
