"""The pipeline steps over files: artifact contracts, and a 2-process DDP train step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmm_core.config import dump_config
from mmm_core.data import Manifest
from mmm_core.engine.checkpoint import load_checkpoint
from mmm_core.engine.labels import ClusterOutput
from mmm_core.engine.targets import Stage1Targets, load_targets
from mmm_core.steps import cluster, evaluate, extract, match, start, train
from mmm_core.steps.common import read_features


def run_round(cfg_path: Path, folder: Path, manifest: Path, checkpoint: Path, r: int) -> dict:
    """One round through the five steps; returns the paths written."""
    paths = {
        name: folder / f"r{r}-{name}"
        for name in ("features.npz", "labels.npz", "targets.npz", "checkpoint.pt", "result.json")
    }
    extract.run(cfg_path, manifest, checkpoint, paths["features.npz"])
    cluster.run(cfg_path, manifest, paths["features.npz"], r, paths["labels.npz"])
    metrics = match.run(
        cfg_path, manifest, paths["features.npz"], paths["labels.npz"], r, paths["targets.npz"]
    )
    losses = train.run(
        cfg_path, manifest, checkpoint, paths["targets.npz"], r, paths["checkpoint.pt"]
    )
    paths["metrics"] = {**metrics, **losses}
    return paths


@pytest.mark.slow
def test_steps_honour_their_contracts(tmp_path: Path, micro_config) -> None:
    base = tmp_path / "base.yaml"
    dump_config(micro_config, base)
    cfg_path, manifest, checkpoint = tmp_path / "c.yaml", tmp_path / "m.tsv", tmp_path / "k.pt"
    history = tmp_path / "history.jsonl"
    data = start.run([base], ["seed=3"], cfg_path, manifest, checkpoint, history)
    assert data["data_images"] > 0 and history.read_text() == ""
    rows = Manifest.read(manifest, micro_config.data.root)
    assert load_checkpoint(checkpoint).next_round == 0

    for r in (0, 1):
        paths = run_round(cfg_path, tmp_path, manifest, checkpoint, r)
        visible, infrared = read_features(paths["features.npz"])
        n_v, n_r = len(rows.modality("visible")), len(rows.modality("infrared"))
        assert visible.shape == (n_v, 512) and infrared.shape == (n_r, 512)
        assert visible.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(visible, axis=1), 1.0, atol=1e-5)
        labels = ClusterOutput.load(paths["labels.npz"])
        assert labels.labels_visible.shape == (n_v,) and labels.labels_visible.dtype == np.int64
        targets = load_targets(paths["targets.npz"])
        assert targets.stage == r + 1
        if r == 0:
            assert labels.joint_visible is not None and targets.centres_joint is not None
            c_v = int(labels.labels_visible.max()) + 1
            assert targets.centres_visible.shape == (c_v, 512)
        else:
            assert labels.joint_visible is None and targets.v2r is not None
            c_v = int(labels.labels_visible.max()) + 1
            c_r = int(labels.labels_infrared.max()) + 1
            assert targets.centres_visible.shape[0::2] == (c_v, 512)
            assert targets.v2r.shape == (c_v,) and targets.r2v.shape == (c_r,)
            assert (targets.v2r >= 0).all() and (targets.r2v >= 0).all()
            np.testing.assert_allclose(targets.weights_v2r.sum(1), 1.0, atol=1e-5)
        assert load_checkpoint(paths["checkpoint.pt"]).next_round == r + 1
        assert {"ari_visible", "loss", "time_train"} <= set(paths["metrics"])
        checkpoint = paths["checkpoint.pt"]

    metrics_file = tmp_path / "m.json"
    metrics_file.write_text(json.dumps({"loss": 1.5}))
    row = evaluate.run_round(
        cfg_path, checkpoint, 1, history, [metrics_file], tmp_path / "h2.jsonl", tmp_path / "e"
    )
    assert row["round"] == 1 and row["loss"] == 1.5 and 0 <= row["mAP"] <= 1
    assert json.loads((tmp_path / "h2.jsonl").read_text()) == json.loads(json.dumps(row))


def test_start_without_a_dataset_says_to_set_data_root(tmp_path: Path, micro_config) -> None:
    """configs/sysu.yaml's data.root (data/SYSU-MM01) is not in a step's container: the start
    step names the pipeline parameter to set, before anything is written."""
    from mmm_core.config import ConfigError

    base = tmp_path / "base.yaml"
    missing = tmp_path / "SYSU-MM01"
    changes = {"data.root": str(missing), "data.synthetic.enabled": False}
    dump_config(micro_config.replace(**changes), base)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"'data.root': .*SYSU-MM01 is not a folder .* data_root"):
        start.run([base], [], out / "c.yaml", out / "m.tsv", out / "k.pt")
    assert not out.exists()


def test_train_step_refuses_a_checkpoint_of_another_round(tmp_path: Path, micro_config) -> None:
    base = tmp_path / "base.yaml"
    dump_config(micro_config, base)
    cfg_path, manifest, checkpoint = tmp_path / "c.yaml", tmp_path / "m.tsv", tmp_path / "k.pt"
    start.run([base], [], cfg_path, manifest, checkpoint)
    targets = tmp_path / "t.npz"
    Stage1Targets(np.zeros(1, int), np.zeros(1, int), np.ones((1, 512)), np.ones((1, 512))).save(
        targets
    )
    with pytest.raises(ValueError, match="checkpoint is at round 0, step asked for round 3"):
        train.run(cfg_path, manifest, checkpoint, targets, 3, tmp_path / "out.pt")


@pytest.mark.slow
def test_ddp_train_step_two_processes(tmp_path: Path, micro_config) -> None:
    """torchrun, 2 CPU processes, gloo: the step runs, gathers, and writes one checkpoint."""
    base = tmp_path / "base.yaml"
    dump_config(micro_config.replace(**{"train.device": "cpu"}), base)
    cfg_path, manifest, checkpoint = tmp_path / "c.yaml", tmp_path / "m.tsv", tmp_path / "k.pt"
    start.run([base], [], cfg_path, manifest, checkpoint)
    features = tmp_path / "f.npz"
    labels, targets = tmp_path / "l.npz", tmp_path / "t.npz"
    extract.run(cfg_path, manifest, checkpoint, features)
    cluster.run(cfg_path, manifest, features, 0, labels)
    match.run(cfg_path, manifest, features, labels, 0, targets)
    out = tmp_path / "ddp.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "mmm_core.steps.train",
        "--config", str(cfg_path),
        "--manifest", str(manifest),
        "--checkpoint", str(checkpoint),
        "--targets", str(targets),
        "--round", "0",
        "--out-checkpoint", str(out),
        "--out-metrics", str(tmp_path / "ddp.json"),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "ddp.json").read_text())
    assert metrics["world_size"] == 2.0 and np.isfinite(metrics["loss"])
    state = load_checkpoint(out)
    before = load_checkpoint(checkpoint)
    assert state.next_round == 1
    changed = [not torch.equal(state.model[k], before.model[k]) for k in before.model]
    assert any(changed)

    # What each rank holds at the end of the round (tests/steps/ddp_worker.py).
    worker = Path(__file__).with_name("ddp_worker.py")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        str(worker), str(cfg_path), str(manifest), str(checkpoint), str(targets), str(tmp_path),
    ]  # fmt: skip
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2.0, 2.0]
    # Each rank drew its own batches ...
    assert ranks[0]["loss"] != ranks[1]["loss"]
    # ... yet the averaged gradients kept the parameters identical on both ranks,
    for name, value in ranks[0]["parameters"].items():
        assert torch.equal(value, ranks[1]["parameters"][name]), name
    # and the gathered features kept the memory banks identical, and moved them.
    initial = load_targets(targets)
    assert set(ranks[0]["banks"]) == set(ranks[1]["banks"]) >= {"visible", "infrared"}
    for name, bank in ranks[0]["banks"].items():
        assert torch.equal(bank, ranks[1]["banks"][name]), name
    centres = torch.as_tensor(initial.centres_visible, dtype=ranks[0]["banks"]["visible"].dtype)
    assert not torch.allclose(ranks[0]["banks"]["visible"], torch.nn.functional.normalize(centres))


def test_tracking_is_on_where_the_cluster_names_an_mlflow_server() -> None:
    """The pipeline's tracking_enabled left empty: on when MLFLOW_TRACKING_URI is set (the
    ConfigMap), else the config's; a value given is kept."""
    from mmm_core.steps.start import parameter_overrides, tracking_parameter

    cluster = {"MLFLOW_TRACKING_URI": "http://mmm-mlflow:5000"}
    assert tracking_parameter("", cluster) == "true"
    assert tracking_parameter("false", cluster) == "false"
    assert tracking_parameter("", {}) == ""
    overrides = parameter_overrides({"tracking_enabled": tracking_parameter("", cluster)}, (1, 1))
    assert "tracking.enabled=true" in overrides
    assert not any(o.startswith("tracking.") for o in parameter_overrides({}, (1, 1)))
