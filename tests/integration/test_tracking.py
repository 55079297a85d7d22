"""mmm_core.tracking against a real MLflow server (SQLite backend, artifacts in S3 when boto3
is installed, else in a local folder; read back with a plain MlflowClient)."""

from __future__ import annotations

import math
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from mmm_core.tracking import (
    MAX_PARAM_VALUE_LENGTH,
    TRUNCATION_MARK,
    MlflowTracker,
    TrackingError,
    make_tracker,
)

pytestmark = pytest.mark.servers


@pytest.fixture
def experiment() -> str:
    return f"mmm-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def reader(mlflow_server):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.uri, registry_uri=mlflow_server.uri)


def stored_artifact(mlflow_server, s3_server, run, relative: str) -> bytes:
    """The bytes of a run's artifact, read from the artifact store itself."""
    run_path = run.info.artifact_uri.split("mlflow-artifacts:/", 1)[1].strip("/")
    if mlflow_server.artifact_store == "s3":
        bucket, prefix = mlflow_server.artifact_root[len("s3://") :].split("/", 1)
        response = s3_server.client().get_object(bucket, f"{prefix}/{run_path}/{relative}")
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()
    return (Path(mlflow_server.artifact_root) / run_path / relative).read_bytes()


def test_run_params_metrics_and_artifacts(mlflow_server, s3_server, reader, experiment, tmp_path):
    tracker = make_tracker(True, mlflow_server.uri, experiment)
    assert isinstance(tracker, MlflowTracker)
    config = {
        "seed": 1,
        "cluster": {"eps": 0.6, "k1": 30},
        "data": {"root": "s3://mmm-data/sysu", "cameras": [1, 2, 4, 5]},
        "notes": "x" * (MAX_PARAM_VALUE_LENGTH + 50),
    }
    run_id = tracker.start("round-test", params=config, tags={"pipeline": "mmm-test"})
    for step, loss in enumerate([2.5, 1.25]):
        tracker.log_metrics(
            {
                "loss": loss,
                "skipped_none": None,
                "skipped_nan": math.nan,
                "label": "not a number",
                "regdb/visible->thermal/R1": 0.5 + step,
            },
            step=step,
        )
    report = tmp_path / "report.json"
    report.write_text('{"r1": 0.5}\n')
    tracker.log_artifact(report)
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "curve.txt").write_text("1 2 3\n")
    tracker.log_artifact(plots, "plots")
    tracker.end("FINISHED")

    run = reader.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "round-test"
    assert run.data.tags["pipeline"] == "mmm-test"
    params = run.data.params
    assert params["seed"] == "1" and params["cluster.eps"] == "0.6"
    assert params["cluster.k1"] == "30" and params["data.root"] == "s3://mmm-data/sysu"
    assert params["data.cameras"] == "[1, 2, 4, 5]"
    assert len(params["notes"]) == MAX_PARAM_VALUE_LENGTH
    assert params["notes"].endswith(TRUNCATION_MARK)
    history = reader.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (0, 2.5),
        (1, 1.25),
    ]
    assert set(run.data.metrics) == {"loss", "regdb/visible_to_thermal/R1"}
    assert run.data.metrics["regdb/visible_to_thermal/R1"] == 1.5
    listed = {f.path for f in reader.list_artifacts(run_id)}
    assert listed == {"report.json", "plots"}
    assert [f.path for f in reader.list_artifacts(run_id, "plots")] == ["plots/curve.txt"]
    assert stored_artifact(mlflow_server, s3_server, run, "report.json") == report.read_bytes()
    assert stored_artifact(mlflow_server, s3_server, run, "plots/curve.txt") == b"1 2 3\n"


def test_model_registry_with_champion_alias(mlflow_server, reader, experiment, tmp_path):
    name = f"mmm-model-{uuid.uuid4().hex[:8]}"
    tracker = make_tracker(True, mlflow_server.uri, experiment)
    run_id = tracker.start("register")
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(bytes(range(256)) * 64)
    model_uri = tracker.log_model(checkpoint, metadata={"arch": "agw", "R1": 0.42})
    assert model_uri == f"runs:/{run_id}/model"
    assert tracker.get_alias_version(name, "champion") is None  # no such model yet
    version = tracker.register_model(name, alias="champion")
    assert version == "1"

    champion = reader.get_model_version_by_alias(name, "champion")
    assert champion.version == "1" and champion.run_id == run_id
    found = tracker.get_alias_version(name, "champion")
    assert found is not None and (found.version, found.run_id) == ("1", run_id)
    assert found.source.endswith("/model")

    folder = tracker.download_model(name, "champion", tmp_path / "download")
    assert (folder / "data" / "files" / "checkpoint.pt").read_bytes() == checkpoint.read_bytes()
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())  # an MLflow Model
    assert mlmodel["metadata"] == {"arch": "agw", "R1": 0.42}
    assert mlmodel["flavors"]["python_function"]["loader_module"] == "mmm_core.serving"
    assert "signature" not in mlmodel or mlmodel["signature"] is None  # no feature_dim given

    # a second version: registered without the alias, promoted explicitly
    assert tracker.register_model(name) == "2"
    assert tracker.get_alias_version(name, "champion").version == "1"
    tracker.set_alias(name, "champion", "2")
    assert reader.get_model_version_by_alias(name, "champion").version == "2"
    assert tracker.get_alias_version(name, "no-such-alias") is None
    tracker.end()


def test_register_without_logged_model_is_an_error(mlflow_server, experiment):
    tracker = make_tracker(True, mlflow_server.uri, experiment)
    tracker.start("no-model")
    with pytest.raises(TrackingError, match="call log_model first"):
        tracker.register_model(f"mmm-model-{uuid.uuid4().hex[:8]}")


def test_later_step_resumes_the_run_by_id(mlflow_server, reader, experiment):
    first = make_tracker(True, mlflow_server.uri, experiment)
    run_id = first.start("pipeline-run", params={"seed": 3})
    first.log_metrics({"round/loss": 1.0}, step=0)

    # another process in the pipeline: a fresh tracker that only knows the run id
    later = make_tracker(True, mlflow_server.uri, experiment)
    assert later is not first and later.run_id is None
    assert later.resume(run_id) == run_id
    later.log_metrics({"round/loss": 0.5, "eval/R1": 0.25}, step=1)
    later.log_params({"extra": {"flag": True}})
    assert later.get_run_metrics() == {"round/loss": 0.5, "eval/R1": 0.25}
    later.end("FAILED")

    run = reader.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.params == {"seed": "3", "extra.flag": "True"}
    steps = sorted((m.step, m.value) for m in reader.get_metric_history(run_id, "round/loss"))
    assert steps == [(0, 1.0), (1, 0.5)]

    with pytest.raises(TrackingError, match=mlflow_server.uri):
        make_tracker(True, mlflow_server.uri, experiment).resume("0" * 32)


def test_a_retried_start_goes_on_with_the_run_its_first_attempt_made(
    mlflow_server, reader, experiment
):
    """start_run with the KFP run's tags: the second call (a retried start step) finds the run
    the first one made; another KFP run gets its own."""
    from mmm_core.config import load_config
    from mmm_core.engine.lifecycle import start_run
    from mmm_core.steps.parameters import kfp_tags

    cfg = load_config(
        None,
        [
            "tracking.enabled=true",
            f"tracking.uri={mlflow_server.uri}",
            f"tracking.experiment={experiment}",
        ],
    )
    tags = kfp_tags("run-1", "mmm-training-3x3-20261206", "mmm-training-3x3")
    first, _ = start_run(cfg, "sysu-seed1", tags=tags)
    again, tracker = start_run(cfg, "sysu-seed1", tags=tags)
    assert again.tracking.run_id == first.tracking.run_id
    assert tracker.run_id == first.tracking.run_id
    other, _ = start_run(cfg, "sysu-seed1", tags=kfp_tags("run-2", "", "mmm-training-3x3"))
    assert other.tracking.run_id != first.tracking.run_id
    run = reader.get_run(first.tracking.run_id)
    assert {k: v for k, v in run.data.tags.items() if k.startswith("kfp.")} == tags
    assert kfp_tags("", "", "p") == {"kfp.pipeline": "p"}
    found = make_tracker(True, mlflow_server.uri, experiment).find_run({"kfp.run_id": "none"})
    assert found is None


def test_the_exit_task_marks_the_run_of_a_failed_pipeline(mlflow_server, reader, experiment):
    """mmm_core.steps.finish: FAILED / KILLED for a run that failed / was cancelled, found by
    its kfp.run_id tag; nothing for a run that succeeded or has ended."""
    from mmm_core.config import load_config
    from mmm_core.engine.lifecycle import start_run
    from mmm_core.steps import finish
    from mmm_core.steps.parameters import kfp_tags

    settings = [f"tracking.uri={mlflow_server.uri}", f"tracking.experiment={experiment}"]
    on = ["tracking.enabled=true", *settings]
    runs = {}
    for kfp_run in ("ok", "failed", "cancelled"):
        cfg, _ = start_run(load_config(None, on), "sysu-seed1", tags=kfp_tags(kfp_run, "", "p"))
        runs[kfp_run] = cfg.tracking.run_id
    said = finish.run([], on, "ok", "COMPLETE")["finish"]  # (the backend's word)
    assert said == "pipeline complete: nothing to mark"
    assert reader.get_run(runs["ok"]).info.status == "RUNNING"
    assert "marked FAILED" in finish.run([], on, "failed", "FAILED")["finish"]
    assert reader.get_run(runs["failed"]).info.status == "FAILED"
    assert "had ended (FAILED)" in finish.run([], on, "failed", "FAILED")["finish"]
    assert "marked KILLED" in finish.run([], on, "cancelled", "CANCELED")["finish"]
    assert reader.get_run(runs["cancelled"]).info.status == "KILLED"
    said = finish.run([], on, "never-started", "FAILED")["finish"]
    assert said == "no MLflow run is tagged kfp.run_id=never-started"
    off = ["tracking.enabled=false", *settings]
    assert finish.run([], off, "ok", "FAILED")["finish"] == "tracking off"


def test_server_down_is_a_clear_error(unused_port):
    uri = f"http://127.0.0.1:{unused_port}"
    tracker = make_tracker(True, uri, "anything")
    with pytest.raises(TrackingError, match="not reachable") as caught:
        tracker.start("never")
    assert uri in str(caught.value)
    with pytest.raises(TrackingError, match=uri):
        tracker.resume("abc")


def test_tracking_uri_from_the_environment(mlflow_server, monkeypatch, experiment, reader):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    tracker = make_tracker(True, "", experiment, run_dir=None)
    run_id = tracker.start("from-env")
    tracker.end()
    assert (
        reader.get_run(run_id).info.experiment_id
        == reader.get_experiment_by_name(experiment).experiment_id
    )


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("mmm-mlflow:5000", 200),
        ("mmm-mlflow.kubeflow.svc.cluster.local:5000", 200),
        ("localhost:5000", 200),
        ("attacker.example.com", 403),
    ],
)
def test_server_with_the_k8s_allowed_hosts(mlflow_server, host, status):
    """The MLflow Deployment's MLFLOW_SERVER_ALLOWED_HOSTS, on a real server: the cluster's
    names for the Service are accepted, others refused (DNS-rebinding protection)."""
    assert "mmm-mlflow" in mlflow_server.allowed_hosts
    request = urllib.request.Request(
        f"{mlflow_server.uri}/api/2.0/mlflow/experiments/search?max_results=1",
        headers={"Host": host},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            got = response.status
    except urllib.error.HTTPError as exc:
        got = exc.code
    assert got == status
