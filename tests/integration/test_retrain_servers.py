"""Scheduled retraining end to end: the retraining pipeline run by kfp.local three times against
a real S3 server (SeaweedFS) holding the camera data and a real MLflow server holding the
registry. Run 1: no champion -> trains, promotes. New images arrive. Run 2: trains from the
champion, promotes only if better. Run 3: nothing new -> does nothing."""

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


def test_retraining_twice_then_nothing(
    tmp_path: Path, micro_dataset: Path, micro_overrides, minio_env, mlflow_server, monkeypatch
) -> None:
    from mlflow import MlflowClient

    from mmm_core.config import dump_config, load_config
    from mmm_core.steps.ingest import default_state_uri, list_images, read_state
    from mmm_core.storage import upload_directory
    from pipelines.retrain import run_local

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    monkeypatch.setenv("MMM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    tag = uuid.uuid4().hex[:8]
    model, experiment = f"retrain-{tag}", f"retrain-test-{tag}"
    data_root = f"s3://{minio_env.data_bucket}/cameras-{tag}/sysu"
    upload_directory(micro_dataset, data_root)
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
    state_uri = default_state_uri(data_root, model)
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

    # Run 1: everything is new, no champion -> trains from the config's initialisation and
    # promotes; the listing is committed as consumed.
    first = retrain("run1")
    assert first["trained"] == 1 and first["promoted"] == 1
    assert first["champion_mAP"] is None and 0 <= first["new_mAP"] <= 1
    assert versions() == ["1"] and alias("champion") == "1"
    state = read_state(state_uri)
    assert state is not None and state["images"] == list_images(data_root)
    assert first["new_images"] == len(state["images"])

    # New camera images arrive under the prefix.
    added = tmp_path / "added"
    new_paths = flipped_training_images(micro_dataset, added, NEW_IMAGES)
    assert upload_directory(added, data_root) == NEW_IMAGES

    # Run 2: warm start from the champion; promoted iff better on the same protocol.
    second = retrain("run2")
    assert second["trained"] == 1 and second["new_images"] == NEW_IMAGES
    assert versions() == ["1", "2"] and alias("candidate") == "2"
    better = second["new_mAP"] > second["champion_mAP"]
    assert second["promoted"] == int(better)
    assert alias("champion") == ("2" if better else "1")
    # The champion re-evaluated now scores what it scored when it was trained: the same
    # weights on the same test set (only training images were added).
    assert second["champion_mAP"] == pytest.approx(first["new_mAP"], abs=1e-6)
    run2 = client.get_run(client.get_model_version(model, "2").run_id)
    assert run2.data.params["retrain.init"] == "champion v1"
    assert run2.data.params["retrain.decision"] == ("promoted" if better else "kept")
    assert run2.data.metrics["retrain/new_mAP"] == pytest.approx(second["new_mAP"])
    assert run2.data.metrics["retrain/champion_mAP"] == pytest.approx(second["champion_mAP"])
    assert run2.data.metrics["retrain/promoted"] == float(better)
    state = read_state(state_uri)
    assert set(new_paths) <= set(state["images"]) and state["model_version"] == "2"
    champion_after_two = alias("champion")
    state_bytes = json.dumps(state, sort_keys=True)

    # Run 3: nothing new -> every step is a no-op: no MLflow run, no version, same alias.
    runs_before = len(client.search_runs([client.get_experiment_by_name(experiment).experiment_id]))
    third = retrain("run3")
    assert third == {
        "trained": 0,
        "promoted": 0,
        "new_images": 0,
        "reason": third["reason"],
    }
    assert third["reason"].startswith("only 0 new")
    assert versions() == ["1", "2"] and alias("champion") == champion_after_two
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    assert len(client.search_runs([experiment_id])) == runs_before == 2
    assert json.dumps(read_state(state_uri), sort_keys=True) == state_bytes
    (run3,) = (tmp_path / "run3").iterdir()
    for step in ("extract", "cluster", "match", "train", "evaluate"):
        assert json.loads((run3 / f"{step}-op" / "metrics").read_text()) == {"skipped": 1.0}

    print(
        "\nretraining durations (s): "
        + ", ".join(f"{label} {seconds:.0f}" for label, seconds in durations.items())
        + f"; run 2 new mAP {second['new_mAP']:.4f} vs champion {second['champion_mAP']:.4f}"
        + f" -> {'promoted' if better else 'kept v1'}"
    )
