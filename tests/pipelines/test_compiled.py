"""The compiled pipelines: fresh, complete, with resources and described parameters."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
import yaml

from mmm_core.steps.parameters import PARAMETER_KEYS, PARAMETERS

ROOT = Path(__file__).resolve().parents[2]
COMPILED = ROOT / "pipelines" / "compiled"
STEPS = ("extract", "cluster", "match", "train", "evaluate")


@functools.cache
def load_documents(name: str) -> tuple[dict, ...]:
    """A compiled file: the pipeline spec, then the platform spec (kfp-kubernetes settings).

    Parsed once per file (libyaml when present: the 50x50 file is a few MB); do not mutate.
    """
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return tuple(yaml.load_all((COMPILED / name).read_text(), Loader=loader))


def load(name: str) -> dict:
    """The pipeline spec of a compiled file."""
    return load_documents(name)[0]


def header_comments(text: str) -> str:
    """The leading comment lines kfp writes above the documents (parameter descriptions)."""
    lines = text.splitlines(keepends=True)
    end = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    return "".join(lines[:end])


@pytest.mark.slow
def test_committed_yaml_equals_fresh_compile(monkeypatch, tmp_path: Path) -> None:
    """Every committed file holds what a fresh compile holds: the same header comments and the
    same documents. kfp's own YAML emitting (pure-Python yaml.dump_all, most of the time of a
    50x50 compile) is replaced by capturing the documents it would write, which are compared
    with the committed files parsed; the text layout is kfp's and not checked here."""
    for variable in ("MMM_BASE_IMAGE", "MMM_GPU_NODE_SELECTOR", "MMM_GPU_TOLERATIONS"):
        monkeypatch.delenv(variable, raising=False)
    from pipelines.compile import TRAINING_VARIANTS, compile_all

    emitted: dict[str, list] = {}

    def capture(documents, stream, **_options) -> None:
        emitted[Path(stream.name).name] = list(documents)

    monkeypatch.setattr(yaml, "dump_all", capture)
    written = compile_all(tmp_path)
    monkeypatch.undo()
    fresh = {path.name: path for path in written}
    assert set(TRAINING_VARIANTS) <= set(fresh) and set(emitted) == set(fresh)
    # every compiled pipeline is committed, and no committed file is a leftover
    assert sorted(fresh) == sorted(p.name for p in COMPILED.glob("*.yaml"))
    for name, path in fresh.items():
        stale = f"{name} is stale: run `make compile` and commit"
        assert header_comments((COMPILED / name).read_text()) == path.read_text(), stale
        assert list(load_documents(name)) == emitted[name], stale


def training_tasks(spec: dict) -> dict[str, dict]:
    """The DAG tasks of the training itself: inside the exit handler (the root holds only the
    exit handler's group and its exit task, `finish`)."""
    return spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]


def steps(spec: dict) -> list[tuple[str, dict]]:
    """(step, task) of every step: the exit task, the training's own tasks (start, register),
    and the five tasks of the one round definition that every round task runs."""
    names = {"register and promote": "register", "mark the MLflow run if the run failed": "finish"}
    out = []
    dags = [spec["root"]["dag"]["tasks"], training_tasks(spec)]
    dags.append(spec["components"]["comp-mmm-round"]["dag"]["tasks"])
    for tasks in dags:
        for task in tasks.values():
            if "dag" not in spec["components"][task["componentRef"]["name"]]:
                name = task["taskInfo"]["name"]
                out.append((names.get(name, name), task))
    return out


@pytest.mark.parametrize("name,rounds", [("training-3x3.yaml", 6), ("training-50x50.yaml", 100)])
def test_every_round_runs_the_one_round_definition(name: str, rounds: int) -> None:
    spec = load(name)
    tasks = training_tasks(spec)
    names = [t["taskInfo"]["name"] for t in tasks.values()]
    assert names.count("start") == 1 and names.count("register and promote") == 1
    assert len(tasks) == 2 + rounds
    round_tasks = [t for t in tasks.values() if t["taskInfo"]["name"].startswith("round ")]
    assert {t["componentRef"]["name"] for t in round_tasks} == {"comp-mmm-round"}

    def index(task: dict) -> int:  # (a protobuf Struct number: a float in the YAML)
        value = task["inputs"]["parameters"]["round_index"]["runtimeValue"]["constant"]
        assert value == int(value)
        return int(value)

    assert sorted(index(t) for t in round_tasks) == list(range(rounds))
    for task in round_tasks:
        r = index(task)
        stage = 1 if r < rounds // 2 else 2
        assert task["taskInfo"]["name"] == f"round {r} (stage {stage})"
    inner = spec["components"]["comp-mmm-round"]["dag"]["tasks"]
    assert sorted(t["taskInfo"]["name"] for t in inner.values()) == sorted(STEPS)
    # one component and one executor per step, however many rounds
    # + start, register, finish, the round, the exit handler's group
    assert len(spec["components"]) == len(STEPS) + 5
    assert len(spec["deploymentSpec"]["executors"]) == len(STEPS) + 3


def test_a_failed_run_reaches_the_exit_task() -> None:
    """finish runs after the training group whatever its outcome, with its final status and
    the KFP run id that start tagged the MLflow run with."""
    spec = load("training-3x3.yaml")
    root = spec["root"]["dag"]["tasks"]
    assert set(root) == {"exit-handler-1", "finish-op"}
    finish = root["finish-op"]
    assert finish["triggerPolicy"] == {"strategy": "ALL_UPSTREAM_TASKS_COMPLETED"}
    assert finish["dependentTasks"] == ["exit-handler-1"]
    parameters = finish["inputs"]["parameters"]
    assert parameters["status"] == {"taskFinalStatus": {"producerTask": "exit-handler-1"}}
    assert parameters["kfp_run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
    (start,) = [t for t in training_tasks(spec).values() if t["taskInfo"]["name"] == "start"]
    assert start["inputs"]["parameters"]["kfp_run_id"] == parameters["kfp_run_id"]
    for name in ("config_file", "tracking_enabled", "mlflow_experiment", "overrides"):
        assert parameters[name] == {"componentInputParameter": name}


def test_the_50x50_pipeline_is_compact() -> None:
    """kfp alone wrote 2.9 MB for 50 + 50 rounds (502 tasks unrolled); docs/deploy.md gives
    the Argo Workflow estimate."""
    assert (COMPILED / "training-50x50.yaml").stat().st_size < 300_000


def _executor_of(spec: dict, task: dict) -> dict:
    component = spec["components"][task["componentRef"]["name"]]
    executor = component["executorLabel"]
    return spec["deploymentSpec"]["executors"][executor]


def test_gpu_steps_ask_for_an_accelerator_and_cpu_steps_do_not() -> None:
    spec = load("training-3x3.yaml")
    found = set()
    for step, task in steps(spec):
        name = step
        resources = _executor_of(spec, task)["container"]["resources"]
        found.add(step)
        if step in ("extract", "train", "evaluate", "register"):
            assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu", name
            assert int(resources["accelerator"]["resourceCount"]) == 1, name
        else:
            assert "accelerator" not in resources, name
        assert resources["resourceCpuRequest"] and resources["resourceMemoryRequest"], name
        assert task["retryPolicy"]["maxRetryCount"] == 2, name
    assert found == {"start", *STEPS, "register", "finish"}


def test_caching_choices() -> None:
    spec = load("training-3x3.yaml")
    for name, task in steps(spec):
        enabled = task.get("cachingOptions", {}).get("enableCache", False)
        assert enabled == (name in ("extract", "cluster", "match", "evaluate")), name


def test_parameters_are_described_and_complete() -> None:
    spec = load("training-3x3.yaml")
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert set(parameters) == set(PARAMETER_KEYS) | {"config_file", "overrides"}
    for name, definition in parameters.items():
        assert definition.get("description"), f"{name} has no description"
    # typed, with the default that keeps the config's value (mmm_core.steps.parameters)
    kinds = {int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE", str: "STRING"}
    for name, parameter in PARAMETERS.items():
        assert parameters[name]["parameterType"] == kinds[parameter.type], name
        assert parameters[name]["defaultValue"] == parameter.unset, name
        assert parameters[name]["isOptional"] is True, name


@pytest.mark.parametrize("name", sorted(p.name for p in COMPILED.glob("*.yaml")))
def test_every_executor_has_kubernetes_settings(name: str) -> None:
    """Cluster env on every step; GPU nodes for exactly the steps that ask for a GPU
    (tests/pipelines/test_kube.py checks the values on a fresh compile)."""
    spec, platform = load_documents(name)
    kubernetes = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    executors = spec["deploymentSpec"]["executors"]
    assert set(kubernetes) == set(executors)
    gpu_executors = 0
    for label, executor in executors.items():
        settings = kubernetes[label]
        assert [c["configMapName"] for c in settings["configMapAsEnv"]] == ["mmm-pipeline-env"]
        assert [s["secretName"] for s in settings["secretAsEnv"]] == [
            "mmm-storage-credentials",
            "mmm-tracking-credentials",
        ]
        gpu = "accelerator" in executor["container"].get("resources", {})
        assert ("nodeSelector" in settings) == gpu, label
        assert ("tolerations" in settings) == gpu, label
        gpu_executors += gpu
    assert gpu_executors > 0


def test_base_image_is_one_value(monkeypatch) -> None:
    """The committed files use the default base image, and its CPU sibling for CPU steps."""
    from components.steps import BASE_IMAGE

    spec = load("training-3x3.yaml")
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {BASE_IMAGE, f"{BASE_IMAGE}-cpu"}
    assert "MMM_BASE_IMAGE" not in os.environ or os.environ["MMM_BASE_IMAGE"] == BASE_IMAGE


def test_the_cheap_caller_lookup_sees_the_stack_inspect_sees() -> None:
    """kfp's task setters name their caller through `inspect.stack()`; while the pipelines are
    built, a stack that skips the source files stands in for it (pipelines.training)."""
    import inspect

    from pipelines.training import _CallerNames

    def both():
        return _CallerNames.stack(), inspect.stack()

    cheap, real = both()
    assert [(f[1], f[3]) for f in cheap] == [(f.filename, f.function) for f in real]
    assert [f[2] for f in cheap[1:]] == [f.lineno for f in real[1:]]
    assert cheap[1][3] == "test_the_cheap_caller_lookup_sees_the_stack_inspect_sees"
    assert _CallerNames().getframeinfo is inspect.getframeinfo  # the rest is inspect's


def test_the_cheap_caller_lookup_leaves_another_kfp_alone(monkeypatch) -> None:
    """A kfp whose task module no longer holds `inspect` itself is not touched."""
    import inspect
    import types

    from kfp.dsl import pipeline_task

    from pipelines.training import _cheap_caller_names

    with _cheap_caller_names():
        assert pipeline_task.inspect is not inspect  # the stand-in, while pipelines are built
    assert pipeline_task.inspect is inspect
    other = types.SimpleNamespace(stack=inspect.stack)
    monkeypatch.setattr(pipeline_task, "inspect", other)
    with _cheap_caller_names():
        assert pipeline_task.inspect is other
    assert pipeline_task.inspect is other


@pytest.mark.parametrize("inline", [False, True], ids=["shared-specs", "inline-specs"])
def test_the_argo_workflow_estimate_fits_etcd(inline: bool) -> None:
    """pipelines.argo_size: 50 + 50 rounds stay far below etcd's 1.5 MiB request limit, with
    the backend's shared component specs (KFP >= 2.3) and without them."""
    from pipelines.argo_size import estimate

    spec, platform = load_documents("training-50x50.yaml")
    found = estimate(spec, platform, inline=inline)
    assert found["bytes"] < (0.25 if not inline else 1.0) * 2**20
    # DAG tasks: a driver + executor per step of the root (start, register), a driver + DAG
    # task per round, and the one round template's 5 steps; pods per run: every round's
    # (+ the exit handler's group: a driver and a DAG task; its exit task finish: two more)
    assert found["dag_tasks"] == 2 + 2 + 2 * 2 + 2 * 100 + 2 * len(STEPS)
    assert found["pods"] == 1 + 2 + 2 * 2 + 100 * (1 + 2 * len(STEPS))
    small = estimate(*load_documents("training-3x3.yaml"), inline=inline)
    assert small["bytes"] < found["bytes"] and small["pods"] == 1 + 2 + 2 * 2 + 6 * 11


def test_the_exit_component_reads_the_final_state() -> None:
    """finish_op's body (kfp's local runner does not run exit handlers): the final state and
    the pipeline's parameters reach mmm_core.steps.finish."""
    import types

    from components import finish_op

    def call(state: str, tracking: str) -> str:
        return finish_op.python_func(
            config_file=str(ROOT / "configs" / "synthetic-tiny.yaml"),
            stage1_rounds=1,
            stage2_rounds=1,
            tracking_enabled=tracking,
            mlflow_experiment="",
            overrides=[],
            kfp_run_id="run-1",
            status=types.SimpleNamespace(state=state),
        )

    assert call("COMPLETE", "true") == "pipeline complete: nothing to mark"
    assert call("FAILED", "false") == "tracking off"
