"""The retraining pipeline: its DAG, its parameters, and a local run with nothing new to train."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipelines.compact import compile_pipeline
from pipelines.retrain import build_retrain_pipeline

ROUND_STEPS = ("extract", "cluster", "match", "train", "evaluate")


@pytest.fixture(scope="module")
def two_rounds(tmp_path_factory) -> tuple[dict, dict, dict]:
    """(pipeline spec, {display name: task}, {display name: DAG task key}) of the root DAG,
    2 rounds; each round task runs the round component (comp-mmm-round)."""
    path = tmp_path_factory.mktemp("retrain") / "retrain-2.yaml"
    spec = next(yaml.safe_load_all(compile_pipeline(build_retrain_pipeline(2), path).read_text()))
    dag = spec["root"]["dag"]["tasks"]
    tasks = {t["taskInfo"]["name"]: t for t in dag.values()}
    keys = {t["taskInfo"]["name"]: key for key, t in dag.items()}
    return spec, tasks, keys


def _producer(task: dict, name: str) -> tuple[str, str]:
    artifact = task["inputs"]["artifacts"][name]["taskOutputArtifact"]
    return artifact["producerTask"], artifact["outputArtifactKey"]


def test_ingest_rounds_promote(two_rounds) -> None:
    spec, tasks, _ = two_rounds
    assert set(tasks) == {"ingest new images", "evaluate and promote"} | {
        f"retrain round {r}" for r in range(2)
    }
    for r in range(2):
        assert tasks[f"retrain round {r}"]["componentRef"]["name"] == "comp-mmm-round"
    inner = spec["components"]["comp-mmm-round"]["dag"]["tasks"]
    assert sorted(t["taskInfo"]["name"] for t in inner.values()) == sorted(ROUND_STEPS)


def test_every_round_step_gets_the_ingest_decision(two_rounds) -> None:
    spec, tasks, keys = two_rounds
    for r in range(2):
        active = tasks[f"retrain round {r}"]["inputs"]["parameters"]["active"]
        assert active["taskOutputParameter"] == {
            "outputParameterKey": "train",
            "producerTask": keys["ingest new images"],
        }
    for task in spec["components"]["comp-mmm-round"]["dag"]["tasks"].values():
        active = task["inputs"]["parameters"]["active"]
        assert active == {"componentInputParameter": "active"}, task["taskInfo"]["name"]


def test_checkpoints_chain_from_the_warm_start_to_promote(two_rounds) -> None:
    spec, tasks, keys = two_rounds
    ingest = keys["ingest new images"]
    first, second = tasks["retrain round 0"], tasks["retrain round 1"]
    assert _producer(first, "checkpoint") == (ingest, "checkpoint")
    assert _producer(second, "checkpoint") == (keys["retrain round 0"], "checkpoint")
    assert _producer(second, "history") == (keys["retrain round 0"], "history")
    # inside a round: extract and train read the round's checkpoint; the round returns
    # train's new checkpoint and evaluate's new history
    round_dag = spec["components"]["comp-mmm-round"]["dag"]
    inner = {t["taskInfo"]["name"]: t for t in round_dag["tasks"].values()}
    inner_keys = {t["taskInfo"]["name"]: key for key, t in round_dag["tasks"].items()}
    for step in ("extract", "train"):
        checkpoint = inner[step]["inputs"]["artifacts"]["checkpoint"]
        assert checkpoint == {"componentInputArtifact": "checkpoint"}
    returned = round_dag["outputs"]["artifacts"]
    selector = returned["checkpoint"]["artifactSelectors"][0]
    assert (selector["producerSubtask"], selector["outputArtifactKey"]) == (
        inner_keys["train"],
        "new_checkpoint",
    )
    selector = returned["history"]["artifactSelectors"][0]
    assert (selector["producerSubtask"], selector["outputArtifactKey"]) == (
        inner_keys["evaluate"],
        "new_history",
    )
    promote = tasks["evaluate and promote"]
    assert _producer(promote, "initial_checkpoint") == (ingest, "checkpoint")
    assert _producer(promote, "checkpoint") == (keys["retrain round 1"], "checkpoint")
    assert _producer(promote, "history") == (keys["retrain round 1"], "history")
    assert _producer(promote, "decision") == (ingest, "decision")
    assert _producer(promote, "snapshot") == (ingest, "snapshot")


def test_parameters_are_described_and_typed(two_rounds) -> None:
    spec, _, _ = two_rounds
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    for name, definition in parameters.items():
        assert definition.get("description"), f"{name} has no description"
    assert parameters["min_new_images"]["parameterType"] == "NUMBER_INTEGER"
    assert parameters["min_new_images"]["defaultValue"] == 100
    assert parameters["min_improvement"]["parameterType"] == "NUMBER_DOUBLE"
    assert parameters["overrides"]["parameterType"] == "LIST"
    assert {"data_root", "state_uri", "model_name", "config_file"} <= set(parameters)
    assert "joint_eps" not in parameters and "lambda_cmc" not in parameters  # stage 1 only


def _resources(spec: dict, task: dict) -> dict:
    label = spec["components"][task["componentRef"]["name"]]["executorLabel"]
    return spec["deploymentSpec"]["executors"][label]["container"]["resources"]


def test_resources_caching_and_retries(two_rounds) -> None:
    spec, tasks, _ = two_rounds
    ingest, promote = tasks["ingest new images"], tasks["evaluate and promote"]
    assert "accelerator" not in _resources(spec, ingest)
    assert _resources(spec, promote)["accelerator"]["resourceType"] == "nvidia.com/gpu"
    for task in (ingest, promote):
        assert task.get("cachingOptions", {}).get("enableCache", False) is False
    inner = spec["components"]["comp-mmm-round"]["dag"]["tasks"].values()
    steps = [t for n, t in tasks.items() if not n.startswith("retrain round")] + list(inner)
    assert len(steps) == 2 + len(ROUND_STEPS)
    for task in steps:  # (a round task itself is a DAG: its steps retry)
        assert task["retryPolicy"]["maxRetryCount"] == 2, task["taskInfo"]["name"]


def test_at_least_one_round() -> None:
    with pytest.raises(ValueError, match="at least one round"):
        build_retrain_pipeline(0)


@pytest.mark.slow
def test_local_run_with_nothing_new_does_nothing(tmp_path: Path, tiny_sysu: Path, monkeypatch):
    """Every image consumed already: every step runs as a no-op; no MLflow is needed at all."""
    from mmm_core.config import dump_config, load_config
    from mmm_core.steps.ingest import list_images, write_state
    from pipelines.retrain import run_local

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    state_uri = str(tmp_path / "state.json")
    write_state(state_uri, {"version": 1, "source": "", "images": list_images(tiny_sysu)})
    before = Path(state_uri).read_bytes()
    dump_config(load_config(None, [f"data.root={tiny_sysu}"]), tmp_path / "config.yaml")

    result = run_local(
        tmp_path / "config.yaml",
        tmp_path / "pipeline_root",
        rounds=1,
        min_new_images=1,
        state_uri=state_uri,
    )
    assert result["trained"] == 0 and result["promoted"] == 0 and result["new_images"] == 0
    (run,) = (tmp_path / "pipeline_root").iterdir()
    for step in ROUND_STEPS:
        assert json.loads((run / f"{step}-op" / "metrics").read_text()) == {"skipped": 1.0}
    assert (run / "train-op" / "new_checkpoint").read_bytes() == b""
    decision = json.loads((run / "ingest-op" / "decision").read_text())
    assert decision["train"] is False and decision["run_id"] == ""
    assert Path(state_uri).read_bytes() == before  # nothing consumed
    assert not (tmp_path / "mlruns").exists()
