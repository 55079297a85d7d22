"""Scheduled retraining end to end: the retraining pipeline run by kfp.local against a real S3
server (SeaweedFS) holding the camera data and a real MLflow server holding the registry.

The champion is the model of the session's tiny training pipeline (`pipeline_on_servers`),
copied as version 1 of the retraining's model name, and the retraining state says its images
were consumed, as a first retraining would have left them (that first run, no champion ->
train -> promote, is the training flow plus the promotion rule that
tests/steps/test_promote.py checks on a registry). New images arrive. Run 1: trains from the
champion, promotes only if better. Run 2: nothing new -> does nothing."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from PIL import Image

pytestmark = [pytest.mark.servers, pytest.mark.slow]

NEW_IMAGES = 40


def flipped_training_images(dataset: Path, out: Path, count: int) -> list[str]:
    """`count` new images: mirror images of training-id crops under new file names.

    Only folders of training ids get new files, so the test set (and the protocol) stays
    the same. Returns the new paths relative to the dataset root.
    """
    from mmm_core.data.sysu import train_ids

    ids = set(train_ids(dataset))
    written: list[str] = []
    for camera in sorted(p for p in dataset.glob("cam*") if p.is_dir()):
        for folder in sorted(p for p in camera.iterdir() if int(p.name) in ids):
            for index, image in enumerate(sorted(folder.glob("*.jpg")), start=1):
                relative = f"{camera.name}/{folder.name}/{9000 + index:04d}.jpg"
                target = out / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                with Image.open(image) as original:
                    original.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(target, quality=95)
                written.append(relative)
                if len(written) == count:
                    return written
    raise AssertionError(f"only {len(written)} training images to flip")


def test_retraining_from_the_champion_then_nothing(
    tmp_path: Path, pipeline_on_servers, micro_overrides, minio_env, mlflow_server, monkeypatch
) -> None:
    from mlflow import MlflowClient

    from mmm_core.config import dump_config, load_config
    from mmm_core.steps.ingest import (
        STATE_VERSION,
        default_state_uri,
        list_images,
        read_state,
        write_state,
    )
    from mmm_core.storage import upload_directory
    from pipelines.retrain import run_local

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    monkeypatch.setenv("MMM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    tag = uuid.uuid4().hex[:8]
    model, experiment = f"retrain-{tag}", f"retrain-test-{tag}"
    data_root = f"s3://{minio_env.data_bucket}/cameras-{tag}/sysu"
    dataset = pipeline_on_servers.dataset
    upload_directory(dataset, data_root)
    configs = Path(__file__).resolve().parents[2] / "configs"
    cfg = load_config(
        configs / "synthetic-tiny.yaml",
        [
            *micro_overrides,
            f"data.root={data_root}",
            "data.synthetic.enabled=false",
            f"tracking.experiment={experiment}",
            f"tracking.model_name={model}",
        ],
    )
    dump_config(cfg, tmp_path / "config.yaml")
    client = MlflowClient(mlflow_server.uri, registry_uri=mlflow_server.uri)

    # The state a first retraining leaves: v1 (a copy of the session pipeline's model, so this
    # test leaves that model as it found it) is the champion, every image is consumed.
    source = f"models:/{pipeline_on_servers.model_name}/1"
    assert client.copy_model_version(source, model).version in ("1", 1)
    client.set_registered_model_alias(model, "champion", "1")
    state_uri = default_state_uri(data_root, model)
    consumed = list_images(data_root)
    assert len(consumed) == len([p for p in dataset.rglob("*.jpg")])
    write_state(
        state_uri,
        {"version": STATE_VERSION, "source": data_root, "images": consumed, "model_version": "1"},
    )
    durations: dict[str, float] = {}

    def retrain(label: str) -> dict:
        started = time.perf_counter()
        result = run_local(
            tmp_path / "config.yaml", tmp_path / label, rounds=1, min_new_images=NEW_IMAGES // 2
        )
        durations[label] = time.perf_counter() - started
        return result

    def alias(name: str) -> str:
        return str(client.get_model_version_by_alias(model, name).version)

    def versions() -> list[str]:
        return sorted(str(v.version) for v in client.search_model_versions(f"name='{model}'"))

    # New camera images arrive under the prefix.
    added = tmp_path / "added"
    new_paths = flipped_training_images(dataset, added, NEW_IMAGES)
    assert upload_directory(added, data_root) == NEW_IMAGES

    # Run 1: warm start from the champion; promoted iff better on the same protocol.
    first = retrain("run1")
    assert first["trained"] == 1 and first["new_images"] == NEW_IMAGES
    assert versions() == ["1", "2"] and alias("candidate") == "2"
    better = first["new_mAP"] > first["champion_mAP"]
    assert first["promoted"] == int(better)
    assert alias("champion") == ("2" if better else "1")
    # The champion re-evaluated now scores what it scored when it was trained: the same
    # weights on the same test set (only training images were added).
    assert first["champion_mAP"] == pytest.approx(pipeline_on_servers.rows[-1]["mAP"], abs=1e-6)
    run1 = client.get_run(client.get_model_version(model, "2").run_id)
    assert run1.data.params["retrain.init"] == "champion v1"
    assert run1.data.params["retrain.decision"] == ("promoted" if better else "kept")
    assert run1.data.metrics["retrain/new_mAP"] == pytest.approx(first["new_mAP"])
    assert run1.data.metrics["retrain/champion_mAP"] == pytest.approx(first["champion_mAP"])
    assert run1.data.metrics["retrain/promoted"] == float(better)
    state = read_state(state_uri)
    assert state["images"] == list_images(data_root)  # the listing run 1 saw, committed
    assert set(new_paths) <= set(state["images"]) and state["model_version"] == "2"
    champion_after = alias("champion")
    state_bytes = json.dumps(state, sort_keys=True)

    # Run 2: nothing new -> every step is a no-op: no MLflow run, no version, same alias.
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs_before = len(client.search_runs([experiment_id]))
    second = retrain("run2")
    assert second == {
        "trained": 0,
        "promoted": 0,
        "new_images": 0,
        "reason": second["reason"],
    }
    assert second["reason"].startswith("only 0 new")
    assert versions() == ["1", "2"] and alias("champion") == champion_after
    assert len(client.search_runs([experiment_id])) == runs_before == 1
    assert json.dumps(read_state(state_uri), sort_keys=True) == state_bytes
    (run2,) = (tmp_path / "run2").iterdir()
    for step in ("extract", "cluster", "match", "train", "evaluate"):
        assert json.loads((run2 / f"{step}-op" / "metrics").read_text()) == {"skipped": 1.0}

    print(
        "\nretraining durations (s): "
        + ", ".join(f"{label} {seconds:.0f}" for label, seconds in durations.items())
        + f"; run 1 new mAP {first['new_mAP']:.4f} vs champion {first['champion_mAP']:.4f}"
        + f" -> {'promoted' if better else 'kept v1'}"
    )
