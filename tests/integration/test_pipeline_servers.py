"""The tiny pipeline end to end against real servers on 127.0.0.1: the dataset read from a
SeaweedFS bucket (s3://), the run logged to an MLflow server, the model registered there.

The pipeline runs through kfp.local.SubprocessRunner (as in tests/pipelines/test_local_run.py);
every step is a subprocess that inherits the MINIO_* and MMM_CACHE_DIR variables set here.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.servers, pytest.mark.slow]


def test_tiny_pipeline_from_s3_to_the_mlflow_server(
    tmp_path: Path, micro_config, micro_dataset: Path, minio_env, mlflow_server, monkeypatch
) -> None:
    from mlflow import MlflowClient

    from mmm_core.storage import upload_directory
    from mmm_core.tracking import make_tracker
    from pipelines.local import run_local

    tag = uuid.uuid4().hex[:8]
    data_uri = f"s3://{minio_env.data_bucket}/it-{tag}/sysu"
    files = sorted(p for p in micro_dataset.rglob("*") if p.is_file())
    assert upload_directory(micro_dataset, data_uri, client=minio_env.client()) == len(files)
    cache = tmp_path / "cache"
    monkeypatch.setenv("MMM_CACHE_DIR", str(cache))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    experiment, model_name = f"mmm-it-{tag}", f"mmm-it-model-{tag}"
    cfg = micro_config.replace(
        **{
            "data.root": data_uri,
            "data.synthetic.enabled": False,
            "tracking.enabled": True,
            "tracking.uri": mlflow_server.uri,
            "tracking.experiment": experiment,
            "tracking.model_name": model_name,
        }
    )

    out = tmp_path / "run"
    rows = run_local(cfg, out, echo=lambda _line: None)
    assert [r["round"] for r in rows] == [0, 1] and [r["stage"] for r in rows] == [1, 2]

    # The steps read the bucket: the whole prefix was mirrored into MMM_CACHE_DIR, byte for byte.
    mirror = cache / "s3" / minio_env.data_bucket / f"it-{tag}" / "sysu"
    mirrored = sorted(p for p in mirror.rglob("*") if p.is_file())
    assert [p.relative_to(mirror) for p in mirrored] == [
        p.relative_to(micro_dataset) for p in files
    ]
    assert mirrored[len(files) // 2].read_bytes() == files[len(files) // 2].read_bytes()

    # One MLflow run on the server: params, per-round metrics (step = round), artifacts.
    reader = MlflowClient(tracking_uri=mlflow_server.uri, registry_uri=mlflow_server.uri)
    found = reader.get_experiment_by_name(experiment)
    assert found is not None
    (run,) = reader.search_runs([found.experiment_id])
    run_id = run.info.run_id
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["data.root"] == data_uri
    assert params["tracking.uri"] == mlflow_server.uri
    assert params["loss.lambda_sca"] == str(cfg.loss.lambda_sca)
    assert params["train.iters_per_round"] == str(cfg.train.iters_per_round)
    for key in ("rank1", "mAP", "mINP", "n_clusters_visible", "ari_infrared", "loss"):
        history = sorted(reader.get_metric_history(run_id, key), key=lambda m: m.step)
        assert [m.step for m in history] == [0, 1], key
        assert [m.value for m in history] == pytest.approx([float(r[key]) for r in rows]), key
    artifacts = {a.path for a in reader.list_artifacts(run_id)}
    assert {"model", "history", "evaluation"} <= artifacts

    # The registered model: version 1 with the alias `candidate`, from this run, downloadable.
    version = reader.get_model_version_by_alias(model_name, "candidate")
    assert (version.version, version.run_id) == ("1", run_id)
    final_checkpoint = max(
        (out / "pipeline_root").glob("*/train-op*/new_checkpoint"), key=lambda p: p.stat().st_mtime
    )
    tracker = make_tracker(True, mlflow_server.uri, experiment)
    folder = tracker.download_model(model_name, "candidate", tmp_path / "download")
    assert (folder / final_checkpoint.name).read_bytes() == final_checkpoint.read_bytes()
    if mlflow_server.artifact_store == "s3":  # the server keeps the files in the S3 bucket
        bucket = mlflow_server.artifact_root.removeprefix("s3://").split("/", 1)[0]
        keys = [o.object_name for o in minio_env.client().list_objects(bucket, recursive=True)]
        assert any(f"/{run_id}/artifacts/model/{final_checkpoint.name}" in k for k in keys)
