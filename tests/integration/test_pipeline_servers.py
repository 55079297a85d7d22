"""The tiny pipeline end to end against real servers on 127.0.0.1: the dataset read from a
SeaweedFS bucket (s3://), the run logged to an MLflow server, the model registered there.

The pipeline runs once per session (`pipeline_on_servers` in conftest.py, through
kfp.local.SubprocessRunner, as `mmm run` runs it); each test checks one thing it left behind,
and one checks that `mmm train` (the same method in one process) writes the same rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.servers, pytest.mark.slow]


@pytest.fixture(scope="module")
def reader(mlflow_server):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.uri, registry_uri=mlflow_server.uri)


@pytest.fixture(scope="module")
def the_run(pipeline_on_servers, reader):
    """The MLflow run of the session's pipeline: exactly one in its experiment."""
    found = reader.get_experiment_by_name(pipeline_on_servers.experiment)
    assert found is not None
    (run,) = reader.search_runs([found.experiment_id])
    return run


def test_both_rounds_ran(pipeline_on_servers, row_keys) -> None:
    rows = pipeline_on_servers.rows
    assert [r["round"] for r in rows] == [0, 1] and [r["stage"] for r in rows] == [1, 2]
    for row in rows:
        assert set(row) >= row_keys | {"time_extract", "time_cluster", "time_match"}
        assert 0 <= row["mAP"] <= 1
    out = pipeline_on_servers.out
    history = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in history] == rows
    assert (out / "pipeline.log").stat().st_size > 0
    printed = pipeline_on_servers.printed  # the header, then one line per round
    assert printed[0].startswith("round") and len(printed) == 3


def test_the_artifacts_follow_their_contracts(pipeline_on_servers) -> None:
    """Features per modality (float32, the embedding's width: 8x the base width), the targets
    of each stage."""
    from mmm_core.engine.targets import load_targets

    root = pipeline_on_servers.out / "pipeline_root"
    features = sorted(root.glob("*/*/features"))
    assert len(features) == 2
    with np.load(features[0]) as data:
        assert set(data.files) == {"visible", "infrared"}
        assert data["visible"].dtype == np.float32
        assert data["visible"].shape[1] == 8 * pipeline_on_servers.cfg.model.width
    assert sorted(load_targets(p).stage for p in root.glob("*/*/targets")) == [1, 2]


def test_mmm_train_and_mmm_run_write_identical_rows(pipeline_on_servers, tmp_path: Path) -> None:
    """The in-process loop (`mmm train`) and the pipeline's steps over files (`mmm run`) are
    one method: on the same config and seed their metrics rows are equal, timings aside. The
    loop reads the local copy of the bucket's files and tells no tracking server."""
    from mmm_core.engine.loop import run_training

    run = pipeline_on_servers
    cfg = run.cfg.replace(**{"data.root": str(run.dataset), "tracking.enabled": False})
    in_process = run_training(cfg, tmp_path / "train")

    def comparable(rows: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if not k.startswith("time_")} for r in rows]

    assert [r["stage"] for r in in_process] == [1, 2]
    assert comparable(run.rows) == comparable(in_process)


def test_each_dataset_object_is_fetched_once_per_run(pipeline_on_servers) -> None:
    """The steps that read images (start, extract, train, evaluate: 7 processes in 1 + 1
    rounds) share the run's workspace, so the S3 server sends each dataset object once, whole.
    No step mirrors into its own $MMM_CACHE_DIR."""
    run = pipeline_on_servers
    files = {
        f.relative_to(run.dataset).as_posix(): f for f in run.dataset.rglob("*") if f.is_file()
    }
    bucket, prefix = run.data_uri.removeprefix("s3://").split("/", 1)
    base = f"/{bucket}/{prefix}/"
    fetched = {path.removeprefix(base): n for path, n in run.downloads.items()}
    print(f"{len(files)} objects, {sum(fetched.values())} downloads, max {max(fetched.values())}")
    assert all(path.startswith(base) for path in run.downloads)
    assert set(fetched) == set(files)
    assert set(fetched.values()) == {1}
    sizes = {path.removeprefix(base): n for path, n in run.sent.items()}
    assert sizes == {key: path.stat().st_size for key, path in files.items()}
    assert not (run.out.parent / "not-the-workspace").exists()
    assert not (run.out / "pipeline_root" / "workspace").exists()  # kfp removed it


def test_one_mlflow_run_with_params_metrics_and_artifacts(
    pipeline_on_servers, the_run, reader, mlflow_server
) -> None:
    cfg, rows = pipeline_on_servers.cfg, pipeline_on_servers.rows
    assert the_run.info.status == "FINISHED"
    tags = the_run.data.tags  # the KFP run it belongs to (kfp.local's job id and name)
    assert tags["kfp.pipeline"] == "mmm-training" and tags["kfp.run_id"]
    assert tags["kfp.run_name"].startswith("mmm-training-")
    params = the_run.data.params
    assert params["data.root"] == pipeline_on_servers.data_uri
    assert params["tracking.uri"] == mlflow_server.uri
    assert params["loss.lambda_sca"] == str(cfg.loss.lambda_sca)
    assert params["train.iters_per_round"] == str(cfg.train.iters_per_round)
    run_id = the_run.info.run_id
    for key in ("rank1", "mAP", "mINP", "n_clusters_visible", "ari_infrared", "loss"):
        history = sorted(reader.get_metric_history(run_id, key), key=lambda m: m.step)
        assert [m.step for m in history] == [0, 1], key
        assert [m.value for m in history] == pytest.approx([float(r[key]) for r in rows]), key
    artifacts = {a.path for a in reader.list_artifacts(run_id)}
    assert {"model", "history", "evaluation", "rounds.png"} <= artifacts


def test_the_model_is_registered_and_downloadable(
    pipeline_on_servers, the_run, reader, mlflow_server, s3_server, tmp_path: Path
) -> None:
    from mmm_core.tracking import make_tracker

    run_id = the_run.info.run_id
    version = reader.get_model_version_by_alias(pipeline_on_servers.model_name, "candidate")
    assert (version.version, version.run_id) == ("1", run_id)
    # a full training run and no champion yet: the promotion rule makes it the first
    champion = reader.get_model_version_by_alias(pipeline_on_servers.model_name, "champion")
    assert champion.version == "1" and the_run.data.metrics["promotion/promoted"] == 1.0
    final_checkpoint = max(
        (pipeline_on_servers.out / "pipeline_root").glob("*/train-op*/new_checkpoint"),
        key=lambda p: p.stat().st_mtime,
    )
    tracker = make_tracker(True, mlflow_server.uri, pipeline_on_servers.experiment)
    folder = tracker.download_model(pipeline_on_servers.model_name, "candidate", tmp_path / "d")
    stored = folder / "data" / "files"  # an MLflow Model: MLmodel, data/files/...
    from mmm_core.engine.checkpoint import load_checkpoint

    registered, final = load_checkpoint(stored / "checkpoint.pt"), load_checkpoint(final_checkpoint)
    assert registered.model.keys() == final.model.keys()
    assert all(registered.model[k].equal(v) for k, v in final.model.items())
    # the weights only: no optimiser or scheduler state (a third of the training checkpoint)
    assert final.optimizer is not None and registered.optimizer is registered.scheduler is None
    assert (registered.width, registered.feature_dim) == (final.width, final.feature_dim)
    size = (stored / "checkpoint.pt").stat().st_size
    assert size < 0.5 * final_checkpoint.stat().st_size
    assert (folder / "MLmodel").is_file() and (stored / "config.yaml").is_file()
    if mlflow_server.artifact_store == "s3":  # the server keeps the files in the S3 bucket
        bucket = mlflow_server.artifact_root.removeprefix("s3://").split("/", 1)[0]
        keys = [o.object_name for o in s3_server.client().list_objects(bucket, recursive=True)]
        assert any(f"/{run_id}/artifacts/model/data/files/checkpoint.pt" in k for k in keys)


def test_the_registered_model_serves_features(
    pipeline_on_servers, mlflow_server, monkeypatch, tmp_path
) -> None:
    """``mlflow.pyfunc.load_model("models:/NAME@ALIAS")``: image files and their modality in,
    the evaluation's features out (L2-normalised, the same numbers as the evaluation's own
    extraction with the final checkpoint)."""
    import mlflow
    import pandas as pd
    import torch

    from mmm_core.engine.build import build_network, make_extractor
    from mmm_core.engine.checkpoint import load_checkpoint

    run = pipeline_on_servers
    # (the environment, which monkeypatch restores: mlflow.set_tracking_uri would stay set
    # for the later tests of this process)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    # (dst_path: without it mlflow downloads the model into a temporary folder it never
    # removes, 129 MB per call)
    model = mlflow.pyfunc.load_model(f"models:/{run.model_name}@champion", dst_path=tmp_path)
    metadata = model.metadata.metadata
    cfg = run.cfg
    assert metadata["input_size"] == [cfg.data.height, cfg.data.width]
    assert metadata["width"] == cfg.model.width and metadata["feature_dim"] == 8 * cfg.model.width
    assert "ImageNet" in metadata["preprocessing"] and metadata["flip_average"] is True

    # SYSU-MM01 layout: cameras 3 and 6 are infrared
    paths = {
        "visible": sorted(run.dataset.glob("cam1/*/*.jpg"))[:3],
        "infrared": sorted(run.dataset.glob("cam3/*/*.jpg"))[:3],
    }
    rows = [(p, m) for m in paths for p in paths[m]]
    frame = pd.DataFrame(
        {"image": [p.read_bytes() for p, _ in rows], "modality": [m for _, m in rows]}
    )
    features = model.predict(frame)
    assert features.shape == (len(rows), metadata["feature_dim"])
    assert features.dtype == np.float32
    assert np.allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)

    final = max(
        (run.out / "pipeline_root").glob("*/train-op*/new_checkpoint"),
        key=lambda p: p.stat().st_mtime,
    )
    network = build_network(cfg.replace(**{"model.pretrained": "none"}), torch.device("cpu"))
    network.load_state_dict(load_checkpoint(final).model)
    # Serving runs in full precision; under "auto" the extractor would use bf16 autocast on a
    # CPU that has it (0.6 % apart on an Intel Xeon).
    extract = make_extractor(cfg.replace(**{"train.amp": "none"}), network, torch.device("cpu"))
    for modality in ("visible", "infrared"):
        expected = extract([str(p) for p in paths[modality]], modality)
        got = features[[i for i, (_, m) in enumerate(rows) if m == modality]]
        assert np.abs(got - expected).max() < 1e-4, modality
    with pytest.raises(Exception, match="modality"):
        model.predict(frame.assign(modality=["thermal"] * len(rows)))
