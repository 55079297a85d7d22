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

from mmm_core.config import ConfigError, dump_config, load_config
from mmm_core.data import Manifest
from mmm_core.engine.checkpoint import load_checkpoint
from mmm_core.engine.labels import ClusterOutput, cluster_round
from mmm_core.engine.match import match_round
from mmm_core.engine.schedule import derive_seed, stage_of_round
from mmm_core.engine.targets import Stage1Targets, load_targets
from mmm_core.steps import cluster, evaluate, extract, match, start, train
from mmm_core.steps.common import read_config, read_features, write_features

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


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
        dim = 8 * micro_config.model.width
        assert visible.shape == (n_v, dim) and infrared.shape == (n_r, dim)
        assert visible.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(visible, axis=1), 1.0, atol=1e-5)
        labels = ClusterOutput.load(paths["labels.npz"])
        assert labels.labels_visible.shape == (n_v,) and labels.labels_visible.dtype == np.int64
        targets = load_targets(paths["targets.npz"])
        assert targets.stage == r + 1
        if r == 0:
            assert labels.joint_visible is not None and targets.centres_joint is not None
            c_v = int(labels.labels_visible.max()) + 1
            assert targets.centres_visible.shape == (c_v, dim)
        else:
            assert labels.joint_visible is None and targets.v2r is not None
            c_v = int(labels.labels_visible.max()) + 1
            c_r = int(labels.labels_infrared.max()) + 1
            assert targets.centres_visible.shape[0::2] == (c_v, dim)
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


def test_the_cluster_and_match_steps_run_without_torch(tmp_path: Path) -> None:
    """Cluster and match compute with numpy, scipy and faiss: in a fresh process, a stage-1
    and a stage-2 round of both never import torch (2-3 s of a task's start-up), and they
    write what the in-process calls compute. The steps that compute nothing (finish, ingest,
    promote) import no torch either."""
    cfg = load_config(CONFIGS / "synthetic-tiny.yaml", [f"data.root={tmp_path}"])
    cfg_path, features, manifest = tmp_path / "c.yaml", tmp_path / "f.npz", tmp_path / "m.tsv"
    dump_config(cfg, cfg_path)
    rng = np.random.default_rng(0)

    def people(count: int, images: int) -> np.ndarray:
        centres = rng.normal(size=(count, 32))
        x = np.repeat(centres, images, axis=0) + 0.15 * rng.normal(size=(count * images, 32))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    visible, infrared = people(6, 8), people(6, 6)
    write_features(features, visible, infrared)
    pids = [int(p) for p in (*np.repeat(np.arange(6), 8), *np.repeat(np.arange(6), 6))]
    cameras = [*np.tile([1, 2], 24), *np.full(36, 3)]
    modality = [0] * 48 + [1] * 36
    paths = [
        f"cam{c}/{p:04d}/{i:04d}.jpg" for i, (c, p) in enumerate(zip(cameras, pids, strict=True))
    ]
    Manifest.from_rows(tmp_path, paths, pids, cameras, modality).write(manifest)
    rounds = (0, cfg.train.stage1_rounds)  # one of each stage
    code = (
        "import sys\nimport mmm_core.steps.finish, mmm_core.steps.ingest, mmm_core.steps.promote\n"
    )
    code += "from mmm_core.steps import cluster, match\n"
    for r in rounds:
        args = f"{str(cfg_path)!r}, {str(manifest)!r}, {str(features)!r}"
        labels, targets = str(tmp_path / f"l{r}.npz"), str(tmp_path / f"t{r}.npz")
        code += f"cluster.run({args}, {r}, {labels!r})\n"
        code += f"match.run({args}, {labels!r}, {r}, {targets!r})\n"
    code += "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]", result.stdout[-2000:]

    def assert_same(got: object, expected: object) -> None:
        for name, value in vars(expected).items():
            if value is None:
                assert getattr(got, name) is None, name
            else:
                np.testing.assert_array_equal(getattr(got, name), value, err_msg=name)

    for r in rounds:
        stage = stage_of_round(cfg, r)
        clusters = ClusterOutput.load(tmp_path / f"l{r}.npz")
        assert_same(clusters, cluster_round(cfg, stage, visible, infrared))
        seed = derive_seed(cfg.seed, r, 2)
        targets = load_targets(tmp_path / f"t{r}.npz")
        assert targets.stage == stage
        assert_same(targets, match_round(cfg, stage, visible, infrared, clusters, seed=seed))
    assert load_targets(tmp_path / f"t{rounds[1]}.npz").v2r is not None  # matching ran


def test_start_without_a_dataset_says_to_set_data_root(tmp_path: Path, micro_config) -> None:
    """configs/sysu.yaml's data.root (data/SYSU-MM01) is not in a step's container: the start
    step names the pipeline parameter to set, before anything is written."""

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


def run_worker(folder: Path, tag: str, cfg_path: Path, inputs: list[Path], processes: int):
    """tests/steps/ddp_worker.py under torchrun (`processes` > 1) or alone; one thread per
    process in both, so that their arithmetic matches."""
    worker = Path(__file__).with_name("ddp_worker.py")
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    arguments = [str(cfg_path), *map(str, inputs), str(folder), tag]
    done = subprocess.run(
        [*launcher, str(worker), *arguments], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(folder / f"{tag}-rank{r}.pt") for r in range(processes)]


def largest_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.mark.slow
def test_ddp_train_step_equals_one_process_over_the_same_global_batch(
    tmp_path: Path, micro_config
) -> None:
    """torchrun, 2 CPU processes, gloo, against one process drawing both processes' batches
    (``train.accumulate=2``): the same parameters and memory banks, within float error."""
    base = tmp_path / "base.yaml"
    dump_config(micro_config.replace(**{"train.device": "cpu", "train.iters_per_round": 3}), base)
    cfg_path, manifest, checkpoint = tmp_path / "c.yaml", tmp_path / "m.tsv", tmp_path / "k.pt"
    start.run([base], [], cfg_path, manifest, checkpoint)
    features = tmp_path / "f.npz"
    labels, targets = tmp_path / "l.npz", tmp_path / "t.npz"
    extract.run(cfg_path, manifest, checkpoint, features)
    cluster.run(cfg_path, manifest, features, 0, labels)
    match.run(cfg_path, manifest, features, labels, 0, targets)
    inputs = [manifest, checkpoint, targets]

    # The pipeline's train task with 2 GPUs takes this path: torchrun, rank 0 writes.
    out = tmp_path / "ddp.pt"
    metrics = train.launch(cfg_path, manifest, checkpoint, targets, 0, out, processes=2)
    assert metrics["world_size"] == 2.0 and np.isfinite(metrics["loss"])
    assert load_checkpoint(out).next_round == 1

    ddp = run_worker(tmp_path, "ddp", cfg_path, inputs, processes=2)
    accumulated = tmp_path / "accumulate.yaml"
    dump_config(read_config(cfg_path).replace(**{"train.accumulate": 2}), accumulated)
    (one,) = run_worker(tmp_path, "one", accumulated, inputs, processes=1)

    assert [r["world_size"] for r in ddp] == [2.0, 2.0] and one["world_size"] == 1.0
    # The ranks drew different batches, yet hold the same parameters and memory banks.
    assert ddp[0]["loss"] != ddp[1]["loss"]
    assert largest_difference(ddp[0]["parameters"], ddp[1]["parameters"]) == 0.0
    assert set(ddp[0]["banks"]) == set(one["banks"]) >= {"visible", "infrared"}
    assert largest_difference(ddp[0]["banks"], ddp[1]["banks"]) == 0.0
    # One process over both batches: the same round, to float error ...
    initial = load_checkpoint(checkpoint).model
    moved = largest_difference(ddp[0]["parameters"], {k: initial[k] for k in ddp[0]["parameters"]})
    parameters = largest_difference(ddp[0]["parameters"], one["parameters"])
    banks = largest_difference(ddp[0]["banks"], one["banks"])
    print(f"moved {moved:.2e}, parameters {parameters:.2e}, banks {banks:.2e}")
    assert moved > 1e-4
    assert parameters < 1e-5 and banks < 1e-5
    # ... over both ranks' batches (their losses differ, and the one process's is their mean)
    assert one["loss"] == pytest.approx((ddp[0]["loss"] + ddp[1]["loss"]) / 2, rel=1e-5)
    # and the same parameters as the checkpoint the pipeline's path (launch) wrote
    launched = load_checkpoint(out).model
    assert largest_difference({k: launched[k] for k in one["parameters"]}, one["parameters"]) < 1e-5


def test_tracking_is_on_where_the_cluster_names_an_mlflow_server() -> None:
    """The pipeline's tracking_enabled left empty: on when MLFLOW_TRACKING_URI is set (the
    ConfigMap), else the config's; a value given is kept."""
    from mmm_core.steps.parameters import parameter_overrides, tracking_parameter

    cluster = {"MLFLOW_TRACKING_URI": "http://mmm-mlflow:5000"}
    assert tracking_parameter("", cluster) == "true"
    assert tracking_parameter("false", cluster) == "false"
    assert tracking_parameter("", {}) == ""
    overrides = parameter_overrides({"tracking_enabled": tracking_parameter("", cluster)}, (1, 1))
    assert "tracking.enabled=true" in overrides
    assert not any(o.startswith("tracking.") for o in parameter_overrides({}, (1, 1)))


def test_typed_parameters_keep_the_config_where_unset() -> None:
    """Each named parameter's default means "the config's"; any other value, 0 and 0.0 where
    they are valid settings included, becomes an override of its config key."""
    from mmm_core.config import load_config
    from mmm_core.steps.parameters import PARAMETERS, parameter_overrides, parameter_value

    unset = {name: p.unset for name, p in PARAMETERS.items()}
    assert parameter_overrides(unset, (2, 3)) == ["train.stage1_rounds=2", "train.stage2_rounds=3"]
    given = {"seed": 0, "lambda_sca": 0.0, "eval_every": 0, "lr": 1e-4, "match_cost": "centroid"}
    overrides = parameter_overrides({**unset, **given}, (1, 1))[2:]
    assert overrides == [
        "seed=0", "train.lr=0.0001", "match.cost=centroid", "loss.lambda_sca=0.0", "eval.every=0",
    ]  # fmt: skip
    cfg = load_config(CONFIGS / "synthetic-tiny.yaml", overrides)
    assert (cfg.seed, cfg.loss.lambda_sca, cfg.eval.every, cfg.train.lr) == (0, 0.0, 0, 1e-4)
    # every unset value is one the config rejects, so "unset" never hides a real setting
    for name, parameter in PARAMETERS.items():
        if parameter.type is not str and name != "seed":
            with pytest.raises(ConfigError):
                load_config(CONFIGS / "synthetic-tiny.yaml", [f"{parameter.key}={parameter.unset}"])
    assert parameter_value("num_memories", "4") == 4 and parameter_value("lr", "3.5e-4") == 3.5e-4
    assert parameter_value("lambda_sca", "1") == 1.0 and parameter_value("device", "cpu") == "cpu"
    with pytest.raises(ValueError, match="num_memories takes an int"):
        parameter_value("num_memories", "2.5")


@pytest.mark.slow
def test_a_retried_evaluate_logs_its_round_once(tmp_path: Path, micro_config, monkeypatch) -> None:
    """The evaluate step run twice for one round (a KFP retry): one entry per metric and
    round in the MLflow run, and the same history row (timings aside)."""
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)  # MLflow's default artifact folder ./mlruns lands here
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = micro_config.replace(
        **{"tracking.enabled": True, "tracking.uri": uri, "train.device": "cpu"}
    )
    dump_config(cfg, tmp_path / "base.yaml")
    paths = [tmp_path / n for n in ("c.yaml", "m.tsv", "k.pt", "h.jsonl")]
    start.run([tmp_path / "base.yaml"], [], *paths)
    step_metrics = tmp_path / "train.json"
    step_metrics.write_text('{"loss": 1.5}')
    histories = []
    for attempt in (1, 2):
        out = tmp_path / f"history-{attempt}.jsonl"
        evaluate.run_round(
            paths[0], paths[2], 0, paths[3], [step_metrics], out, tmp_path / f"r{attempt}.json"
        )
        (row,) = [json.loads(line) for line in out.read_text().splitlines()]
        histories.append({k: v for k, v in row.items() if not k.startswith("time_")})
    assert histories[0] == histories[1]
    client = MlflowClient(uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name(cfg.tracking.experiment).experiment_id]
    )
    for key in ("loss", "mAP", evaluate.ROUNDS_LOGGED):
        assert len(client.get_metric_history(run.info.run_id, key)) == 1, key
