"""`mmm sweep`: grid expansion and validation, names, leaderboard, KFP submission (fake client),
and one real local sweep of two micro pipelines (slow)."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from mmm_cli.main import main as cli_main
from mmm_core.config import ConfigError, apply_overrides, load_config
from mmm_core.steps.parameters import PARAMETER_KEYS, parameter_overrides
from mmm_core.sweep import (
    Point,
    PointResult,
    expand_grid,
    final_metrics,
    format_leaderboard,
    format_value,
    leaderboard_csv,
    load_sweep,
    point_names,
    rank_results,
)
from pipelines.sweep import (
    compile_packages,
    host_arguments,
    local_command,
    pipeline_parameters,
    run_host_sweep,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "synthetic-tiny.yaml")


def write_grid(folder: Path, data: dict, name: str = "grid.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def tiny_grid(**extra) -> dict:
    return {
        "base": {"config": TINY, "set": {"train.iters_per_round": 3}},
        "grid": {"memory.num_memories": [1, 2], "loss.lambda_sca": [0.0, 0.5]},
        **extra,
    }


def host_grid(**extra) -> dict:
    """`tiny_grid` with 1 + 1 rounds: a small pipeline to compile."""
    data = tiny_grid(**extra)
    data["base"]["set"] |= {"train.stage1_rounds": 1, "train.stage2_rounds": 1}
    return data


# --------------------------------------------------------------------------- the grid


def test_expand_grid_is_the_cartesian_product_first_key_slowest() -> None:
    grid = {"a": [1, 2, 3], "b": ["x", "y"], "c": [True]}
    expected = [{"a": a, "b": b, "c": c} for a in grid["a"] for b in grid["b"] for c in grid["c"]]
    assert expand_grid(grid) == expected
    assert len(expand_grid({"a": [1, 2], "b": [1, 2, 3], "c": [0, 1]})) == 12
    assert expand_grid({}) == [{}]


def test_point_names_use_short_keys_unless_ambiguous() -> None:
    points = expand_grid({"memory.num_memories": [1, 4], "loss.lambda_sca": [0.0, 0.5]})
    assert point_names(points) == [
        "num_memories=1,lambda_sca=0.0",
        "num_memories=1,lambda_sca=0.5",
        "num_memories=4,lambda_sca=0.0",
        "num_memories=4,lambda_sca=0.5",
    ]
    # `seed` and `data.synthetic.seed` share their last part: both keep the whole key.
    ambiguous = expand_grid({"seed": [1], "data.synthetic.seed": [0], "train.lr": [3.5e-4]})
    assert point_names(ambiguous) == ["seed=1,data.synthetic.seed=0,lr=0.00035"]
    assert point_names(expand_grid({"eval.sysu_modes": [["all"], ["all", "indoor"]]})) == [
        "sysu_modes=[all]",
        "sysu_modes=[all, indoor]",
    ]


@pytest.mark.parametrize(
    "value", [0.00035, 3.5e-9, 0, True, "chamfer", ["all", "indoor"], "s3://b/p", "0123456789"]
)
def test_format_value_parses_back_through_set(value) -> None:
    assert yaml.safe_load(format_value(value)) == value
    if value == "0123456789":  # an MLflow run id made of digits must stay a string
        cfg = apply_overrides(load_config(), [f"tracking.run_id={format_value(value)}"])
        assert cfg.tracking.run_id == value


def test_load_sweep_builds_every_point_config(tmp_path: Path) -> None:
    sweep = load_sweep(write_grid(tmp_path, tiny_grid()), ["seed=7"])
    assert sweep.experiment == "mmm-sweep-grid" and sweep.metric == "mAP"
    assert sweep.overrides == ("train.iters_per_round=3", "seed=7")
    assert [p.index for p in sweep.points] == [0, 1, 2, 3]
    combos = list(itertools.product([1, 2], [0.0, 0.5]))
    for point, cfg, (k, sca) in zip(sweep.points, sweep.point_configs, combos, strict=True):
        assert point.values == {"memory.num_memories": k, "loss.lambda_sca": sca}
        assert (cfg.memory.num_memories, cfg.loss.lambda_sca) == (k, sca)
        assert cfg.train.iters_per_round == 3 and cfg.seed == 7
        assert cfg.model.arch == "resnet18"  # from the base file
        assert point.folder == f"{point.index:02d}-{point.name}"
    named = load_sweep(
        write_grid(tmp_path, tiny_grid(experiment="exp-a", metric="rank1"), "b.yaml"),
        experiment="exp-b",
    )
    assert (named.experiment, named.metric) == ("exp-b", "rank1")


def test_the_example_grid_is_valid() -> None:
    sweep = load_sweep(ROOT / "configs" / "sweep-example.yaml")
    assert len(sweep.points) == 4 and sweep.experiment == "mmm-sweep-example"
    assert {cfg.memory.num_memories for cfg in sweep.point_configs} == {1, 2}


def test_nested_base_set_and_a_list_of_configs(tmp_path: Path) -> None:
    extra = write_grid(tmp_path, {"cluster": {"eps": 0.45}}, "extra.yaml")
    data = tiny_grid()
    data["base"] = {"config": [TINY, str(extra)], "set": {"sampler": {"visible_ids": 3}}}
    sweep = load_sweep(write_grid(tmp_path, data))
    assert all(c.cluster.eps == 0.45 and c.sampler.visible_ids == 3 for c in sweep.point_configs)


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        ({"grids": {}}, "'grids'", "unknown key"),
        ({"grid": {"memory.num_memory": [1]}}, "'grid.memory.num_memory'", "unknown key"),
        ({"grid": {"memory.num_memories": [0, 2]}}, "'grid.memory.num_memories'", ">= 1"),
        ({"grid": {"loss.lambda_sca": ["abc"]}}, "'grid.loss.lambda_sca'", "expected a number"),
        ({"grid": {"loss.lambda_sca": 0.5}}, "'grid.loss.lambda_sca'", "non-empty list"),
        ({"grid": {"loss.lambda_sca": [0.5, 0.5]}}, "'grid.loss.lambda_sca'", "repeated"),
        ({"grid": {}}, "'grid'", "non-empty mapping"),
        ({"grid": {"tracking.experiment": ["a"]}}, "'grid.tracking.experiment'", "by the sweep"),
        (
            {"base": {"config": TINY, "set": {"cluster.epsilon": 1}}},
            "'base.set.cluster.epsilon'",
            "unknown key",
        ),
        ({"base": {"config": "no/such.yaml"}}, "'base.config'", "not found"),
        ({"base": {"configs": TINY}}, "'base.configs'", "unknown key"),
        (
            {"base": {"config": TINY, "set": {"loss.lambda_sca": 1}}},
            "'grid.loss.lambda_sca'",
            "also fixed",
        ),
        (
            {"grid": {"train.stage1_rounds": [0, 1], "train.stage2_rounds": [0, 1]}},
            "'grid.train.stage1_rounds'",
            "(point 0: stage1_rounds=0,stage2_rounds=0)",
        ),
    ],
)
def test_grid_errors_name_the_file_and_the_key(tmp_path: Path, change, key, message) -> None:
    path = write_grid(tmp_path, {**tiny_grid(), **change})
    with pytest.raises(ConfigError) as caught:
        load_sweep(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: {key}: "), text
    assert message in text


def test_command_line_set_conflicts_and_errors_name_set(tmp_path: Path) -> None:
    path = write_grid(tmp_path, tiny_grid())
    with pytest.raises(ConfigError, match=r"^--set: 'memory.num_memories': swept by the grid"):
        load_sweep(path, ["memory.num_memories=3"])
    with pytest.raises(ConfigError, match=r"^--set: 'cluster.nope': unknown key"):
        load_sweep(path, ["cluster.nope=3"])


def test_cli_reports_a_bad_grid_and_dry_run_lists_points(tmp_path: Path, capsys) -> None:
    bad = write_grid(tmp_path, {**tiny_grid(), "grid": {"memory.k": [1]}}, "bad.yaml")
    assert cli_main(["sweep", "--grid", str(bad), "--dry-run"]) == 2
    assert f"error: {bad}: 'grid.memory.k': unknown key" in capsys.readouterr().err
    good = write_grid(tmp_path, tiny_grid())
    assert cli_main(["sweep", "--grid", str(good), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "4 points" in out and "[3] num_memories=2,lambda_sca=0.5" in out
    assert "--set memory.num_memories=2 --set loss.lambda_sca=0.5" in out
    assert cli_main(["sweep", "--grid", str(good)]) == 2  # neither --local nor --host


def test_local_command_runs_mmm_run_with_every_override(tmp_path: Path) -> None:
    sweep = load_sweep(write_grid(tmp_path, tiny_grid()))
    point = sweep.points[1]
    command = local_command(sweep, point, tmp_path / "p", ["tracking.run_id=abc"])
    assert command[1:4] == ["-m", "mmm_cli", "run"]
    assert command[command.index("--config") + 1] == TINY
    sets = [command[i + 1] for i, arg in enumerate(command) if arg == "--set"]
    assert sets == [
        "train.iters_per_round=3",
        "memory.num_memories=1",
        "loss.lambda_sca=0.5",
        "tracking.run_id=abc",
    ]
    assert command[-2:] == ["--out", str(tmp_path / "p")]


# --------------------------------------------------------------------------- leaderboard


def test_final_metrics_keep_the_latest_finite_value_of_each_key() -> None:
    rows = [
        {"round": 0, "rank1": 0.1, "mAP": 0.2, "ari_visible": 0.3, "note": "x"},
        {"round": 1, "rank1": None, "mAP": math.nan, "ari_visible": 0.4, "flag": True},
        {"round": 2, "rank1": 0.5, "loss": 1.5},
    ]
    assert final_metrics(rows) == {
        "round": 2.0,
        "rank1": 0.5,
        "mAP": 0.2,
        "ari_visible": 0.4,
        "loss": 1.5,
    }


def result(index: int, name: str, status: str = "FINISHED", **metrics) -> PointResult:
    return PointResult(Point(index, name, {"k": index}), status, f"run{index}", "", metrics)


def board() -> list[PointResult]:
    return [
        result(0, "k=0", mAP=0.30, rank1=0.40, mINP=0.10, ari_visible=0.5, ari_infrared=0.25),
        result(1, "k=1", "FAILED"),
        result(2, "k=2", mAP=0.45, rank1=0.3, mINP=0.2, ari_visible=0.6, ari_infrared=0.125),
        result(3, "k=3", mAP=0.30, rank1=0.5, mINP=0.3),
    ]


def test_rank_results_best_first_ties_in_grid_order_missing_last() -> None:
    assert [r.point.name for r in rank_results(board(), "mAP")] == ["k=2", "k=0", "k=3", "k=1"]
    assert [r.point.name for r in rank_results(board(), "rank1")] == ["k=3", "k=0", "k=2", "k=1"]
    assert [r.point.name for r in rank_results(board(), "absent")] == ["k=0", "k=1", "k=2", "k=3"]


def test_leaderboard_markdown_table() -> None:
    lines = format_leaderboard(rank_results(board(), "mAP"), "mAP").splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == [
        "#",
        "point",
        "R1",
        "mAP",
        "mINP",
        "ARI vis",
        "ARI ir",
        "status",
        "MLflow run",
    ]
    assert set(lines[1]) <= {"|", "-", ":"}
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert rows[0] == ["1", "k=2", "30.00", "45.00", "20.00", "0.600", "0.125", "FINISHED", "run2"]
    assert rows[2] == ["3", "k=3", "50.00", "30.00", "30.00", "-", "-", "FINISHED", "run3"]
    assert rows[3][1:] == ["k=1", "-", "-", "-", "-", "-", "FAILED", "run1"]
    assert len({len(line) for line in lines}) == 1  # aligned columns
    # a sort key outside the fixed columns gets its own column
    other = format_leaderboard(rank_results(board(), "loss"), "loss").splitlines()[0]
    assert other.rstrip(" |").split("|")[-3].strip() == "loss"


def test_leaderboard_csv_has_grid_values_and_raw_metrics() -> None:
    text = leaderboard_csv(rank_results(board(), "mAP"), ["k"], "mAP")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["point"] for r in rows] == ["k=2", "k=0", "k=3", "k=1"]
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4"]
    assert rows[0]["k"] == "2" and float(rows[0]["mAP"]) == 0.45
    assert rows[0]["mlflow_run_id"] == "run2" and rows[3]["mAP"] == ""
    assert rows[3]["status"] == "FAILED"


# --------------------------------------------------------------------------- KFP host (fake)


def test_host_arguments_use_named_parameters_then_overrides(tmp_path: Path) -> None:
    extra = write_grid(
        tmp_path, {"cluster": {"eps": 0.45}, "eval": {"sysu_modes": ["all"]}}, "extra.yaml"
    )
    data = tiny_grid()
    data["base"] = {
        "config": [TINY, str(extra)],
        "set": {"train.stage1_rounds": 1, "memory.momentum": 0.2, "train.lr": 0.001},
    }
    sweep = load_sweep(write_grid(tmp_path, data))
    arguments = host_arguments(sweep, sweep.points[3], ["tracking.run_id='0123'"])
    assert arguments == {
        "config_file": TINY,
        "cluster_eps": 0.45,  # typed as the pipeline's parameters are
        "lr": 0.001,
        "num_memories": 2,
        "lambda_sca": 0.5,
        "overrides": ["eval.sysu_modes=[all]", "memory.momentum=0.2", "tracking.run_id='0123'"],
    }  # train.stage1_rounds is compiled in, not passed


class FakeKfpClient:
    """Records what `kfp.Client` would have been asked; runs end in `states[point name]`."""

    def __init__(self, states: dict[str, str]):
        self.states = states
        self.lock = threading.Lock()
        self.experiments: list[tuple[str, str | None]] = []
        self.runs: dict[str, dict] = {}
        self.waited: list[str] = []

    def create_experiment(self, name, description=None, namespace=None):
        self.experiments.append((name, namespace))
        return SimpleNamespace(experiment_id=f"kfp-exp-{name}")

    def create_run_from_pipeline_package(
        self,
        pipeline_file,
        arguments=None,
        run_name=None,
        experiment_name=None,
        namespace=None,
        **kwargs,
    ):
        assert experiment_name is None
        with self.lock:
            run_id = f"kfp-run-{len(self.runs)}"
            self.runs[run_id] = {
                "package": pipeline_file,
                "arguments": arguments,
                "run_name": run_name,
                "namespace": namespace,
                **kwargs,
            }
        return SimpleNamespace(run_id=run_id, run_info=None)

    def wait_for_run_completion(self, run_id, timeout):
        with self.lock:
            self.waited.append(run_id)
        point = self.runs[run_id]["run_name"].split(" (")[0]
        return SimpleNamespace(state=self.states[point].lower())


class FakeTracking:
    """The sweep's MLflow side: metrics per MLflow run id, runs marked failed."""

    def __init__(self, metrics: dict[str, dict[str, float]]):
        self.metrics = metrics
        self.failed: list[str] = []

    def run_state(self, run_id):
        return ("FINISHED", self.metrics.get(run_id, {}))

    def end_if_running(self, run_id, status="FAILED"):
        self.failed.append(run_id)


@pytest.fixture(scope="module")
def tiny_packages(tmp_path_factory) -> dict:
    """The training pipeline compiled for the tiny grid's rounds (once for the module)."""
    folder = tmp_path_factory.mktemp("compiled")
    return compile_packages(load_sweep(write_grid(folder, host_grid())), folder)


def test_host_sweep_submits_one_run_per_point_and_ranks_on_wait(tmp_path, tiny_packages) -> None:
    sweep = load_sweep(write_grid(tmp_path, host_grid(experiment="mmm-sweep-x")))
    names = [p.name for p in sweep.points]
    states = dict.fromkeys(names, "SUCCEEDED") | {names[1]: "FAILED"}
    client = FakeKfpClient(states)
    run_ids = [f"mlflow{i}" for i in range(4)]
    tracking = FakeTracking({f"mlflow{i}": {"mAP": 0.1 * i, "rank1": 0.2} for i in (0, 2, 3)})
    printed: list[str] = []
    results = run_host_sweep(
        client, sweep, tmp_path, sweep_name="sw", tracking=tracking, run_ids=run_ids,
        host="http://kfp:8080/", namespace="team", wait=True, jobs=3, packages=tiny_packages,
        echo=printed.append,
    )  # fmt: skip

    assert client.experiments == [("mmm-sweep-x", "team")]  # resolved once, not per thread
    assert len(client.runs) == 4 and sorted(client.waited) == sorted(client.runs)
    by_name = {run["run_name"]: run for run in client.runs.values()}
    assert sorted(by_name) == sorted(f"{name} (sw)" for name in names)
    (package,) = tiny_packages.values()
    assert list(tiny_packages) == [(1, 1)] and package.name == "pipeline-1x1.yaml"
    parameters = pipeline_parameters(package)
    assert {"config_file", "overrides", "num_memories", "mlflow_experiment"} <= parameters
    for point, run_id in zip(sweep.points, run_ids, strict=True):
        run = by_name[f"{point.name} (sw)"]
        assert run["package"] == str(package) and run["namespace"] == "team"
        assert run["experiment_id"] == "kfp-exp-mmm-sweep-x"
        arguments = run["arguments"]
        assert set(arguments) <= parameters
        assert arguments["config_file"] == TINY
        assert arguments["num_memories"] == point.values["memory.num_memories"]
        assert arguments["lambda_sca"] == point.values["loss.lambda_sca"]
        assert arguments["tracking_enabled"] == "true"
        assert arguments["mlflow_experiment"] == "mmm-sweep-x"
        assert arguments["iters_per_round"] == 3
        assert arguments["overrides"] == ["tracking.promote=false", f"tracking.run_id={run_id}"]
        # what the start step resolves from these arguments (as components/steps.py does)
        named = {k: v for k, v in arguments.items() if k in PARAMETER_KEYS}
        items = parameter_overrides(named, (1, 1)) + arguments["overrides"]
        resolved = load_config(arguments["config_file"], items)
        assert resolved == sweep.point_configs[point.index].replace(
            **{"tracking.enabled": True, "tracking.experiment": "mmm-sweep-x",
               "tracking.run_id": run_id, "tracking.promote": False}
        )  # fmt: skip

    submitted = json.loads((tmp_path / "submissions.json").read_text())
    assert [s["point"] for s in submitted] == names
    first = submitted[0]
    assert first["url"] == f"http://kfp:8080/#/runs/details/{first['kfp_run_id']}"
    assert [r.status for r in results] == ["SUCCEEDED", "FAILED", "SUCCEEDED", "SUCCEEDED"]
    assert tracking.failed == ["mlflow1"]
    ranked = rank_results(results, "mAP")
    assert [r.mlflow_run_id for r in ranked] == ["mlflow3", "mlflow2", "mlflow0", "mlflow1"]
    id_of = {run["run_name"]: run_id for run_id, run in client.runs.items()}
    assert ranked[0].kfp_run_id == id_of[f"{names[3]} (sw)"]


def test_host_sweep_without_tracking_or_wait_only_submits(tmp_path, tiny_packages) -> None:
    sweep = load_sweep(write_grid(tmp_path, host_grid()))
    client = FakeKfpClient({})
    assert run_host_sweep(client, sweep, tmp_path, sweep_name="s", tracking=None,
                          packages=tiny_packages, echo=lambda _line: None) is None  # fmt: skip
    assert client.waited == [] and len(client.runs) == 4
    for run in client.runs.values():
        assert run["arguments"]["overrides"] == ["tracking.promote=false"]  # points never promote
        assert run["arguments"]["iters_per_round"] == 3
        assert run["arguments"]["mlflow_experiment"] == "mmm-sweep-grid"


# --------------------------------------------------------------------------- local (fake runs)

FAKE_RUN = """
import json, pathlib, sys, time
out, index, others = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
(out / "started").write_text("")
deadline = time.monotonic() + 60
while not all(pathlib.Path(o, "started").exists() for o in others):  # the jobs overlap
    if time.monotonic() > deadline:
        sys.exit(3)
    time.sleep(0.05)
if index == 1:
    sys.exit(1)
rows = [{"round": 0, "mAP": 0.1, "rank1": 0.2}, {"round": 1, "mAP": 0.1 * index, "rank1": 0.3}]
(out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\\n" for r in rows))
"""


def test_local_sweep_runs_points_in_parallel_and_reads_their_history(tmp_path, monkeypatch):
    from pipelines import sweep as module

    data = tiny_grid()
    data["base"]["set"]["data.synthetic.enabled"] = False
    data["grid"] = {"loss.lambda_sca": [0.0, 0.5, 1.0]}
    sweep = load_sweep(write_grid(tmp_path, data))
    folders = [tmp_path / "out" / p.folder for p in sweep.points]
    settings: dict[int, list[str]] = {}

    def fake_command(sweep, point, out, tracking):
        settings[point.index] = list(tracking)
        others = [str(f) for f in folders if f != out]
        return [sys.executable, "-c", FAKE_RUN, str(out), str(point.index), *others]

    monkeypatch.setattr(module, "local_command", fake_command)
    tracking = FakeTracking({})
    tracking.uri, tracking.experiment = "sqlite:////x/mlflow.db", "exp"
    printed: list[str] = []
    results = module.run_local_sweep(
        sweep, tmp_path / "out", 3, tracking, ["r0", "r1", "r2"], echo=printed.append
    )
    assert [r.status for r in results] == ["FINISHED", "FAILED", "FINISHED"]
    assert [r.metrics.get("mAP") for r in results] == [0.0, None, 0.2]
    assert results[2].metrics["rank1"] == 0.3 and results[2].folder == str(folders[2])
    assert tracking.failed == ["r1"]
    assert settings[2] == [
        "tracking.enabled=true",
        "tracking.promote=false",
        "tracking.uri=sqlite:////x/mlflow.db",
        "tracking.experiment=exp",
        "tracking.run_id=r2",
    ]
    assert sorted(line.split("] ")[1].split(":")[0] for line in printed) == [
        p.name for p in sweep.points
    ]
    assert any("FAILED" in line and "sweep.log" in line for line in printed)
    assert [r.point.name for r in rank_results(results, "mAP")] == [
        "lambda_sca=1.0",
        "lambda_sca=0.0",
        "lambda_sca=0.5",
    ]


# --------------------------------------------------------------------------- a real sweep


@pytest.mark.slow
def test_local_sweep_two_jobs_one_experiment(tmp_path, micro_dataset, micro_overrides, monkeypatch,
                                             capsys) -> None:  # fmt: skip
    """Two micro pipelines (1 round each) in parallel, one shared SQLite MLflow store."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    fixed = dict(item.split("=", 1) for item in micro_overrides)
    fixed |= {"train.stage2_rounds": "0", "data.root": str(micro_dataset)}
    grid = write_grid(
        tmp_path,
        {
            "base": {"config": TINY, "set": {k: yaml.safe_load(v) for k, v in fixed.items()}},
            "grid": {"cluster.eps": [0.5, 0.6]},
            "experiment": "sweep-test",
        },
    )
    out = tmp_path / "sweep"
    code = cli_main(["sweep", "--grid", str(grid), "--local", "--jobs", "2", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed

    rows = list(csv.DictReader((out / "leaderboard.csv").open()))
    assert sorted(r["point"] for r in rows) == ["eps=0.5", "eps=0.6"]
    maps = [float(r["mAP"]) for r in rows]
    assert maps == sorted(maps, reverse=True) and all(r["status"] == "FINISHED" for r in rows)
    for row in rows:
        history = [json.loads(x) for x in (Path(row["folder"]) / "metrics.jsonl").open()]
        assert len(history) == 1 and float(row["mAP"]) == history[-1]["mAP"]
        assert float(row["rank1"]) == history[-1]["rank1"]
    assert "| 1 | eps=" in (out / "leaderboard.md").read_text()
    assert (out / "leaderboard.md").read_text().split("\n\n", 1)[1] in printed

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("sweep-test")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3
    (parent,) = [r for r in runs if r.data.tags["mmm.sweep.role"] == "parent"]
    children = {r.info.run_id: r for r in runs if r.data.tags["mmm.sweep.role"] == "point"}
    assert set(children) == {r["mlflow_run_id"] for r in rows}
    for row in rows:
        child = children[row["mlflow_run_id"]]
        assert child.info.status == "FINISHED" and child.info.run_name == row["point"]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.params["cluster.eps"] == row["cluster.eps"]
        assert child.data.metrics["mAP"] == pytest.approx(float(row["mAP"]))
        assert [m.step for m in client.get_metric_history(child.info.run_id, "mAP")] == [0]
    assert parent.info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {
        "leaderboard.md",
        "leaderboard.csv",
    }
    assert parent.data.metrics["best_mAP"] == pytest.approx(maps[0])


def test_read_history_missing_empty_and_bad_lines(tmp_path) -> None:
    from mmm_core.sweep import read_history

    path = tmp_path / "metrics.jsonl"
    assert read_history(path) == []
    path.write_text("")
    assert read_history(path) == []
    path.write_text('{"round": 0, "mAP": 0.5}\n\n{"round": 1}\n')
    assert read_history(path) == [{"round": 0, "mAP": 0.5}, {"round": 1}]
    path.write_text('{"round": 0}\n{"round": 1\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not a JSON object"):
        read_history(path)
