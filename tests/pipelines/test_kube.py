"""Kubernetes settings of the step pods in a compiled pipeline (kfp-kubernetes platform spec)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines import kube
from pipelines.compact import compile_pipeline
from pipelines.training import build_training_pipeline

GPU = ("extract", "train", "evaluate", "register")
CPU = ("start", "cluster", "match", "finish")
DEFAULT_SELECTOR = {"nvidia.com/gpu.present": "true"}
DEFAULT_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
CONFIG_MAP_ENV = [
    "MINIO_ENDPOINT",
    "MINIO_SECURE",
    "MMM_CACHE_DIR",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_S3_ENDPOINT_URL",
]
SECRET_ENV = ["MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
TRACKING_ENV = ["MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"]


def compile_tiny(tmp_path: Path) -> tuple[dict, dict[str, dict]]:
    """The pipeline spec of a 1 + 1 round pipeline and {step: [platform executor, ...]}, one
    entry per step task (the rounds' tasks are inside the round component)."""
    path = compile_pipeline(build_training_pipeline(1, 1, "tiny"), tmp_path / "tiny.yaml")
    spec, platform = yaml.safe_load_all(path.read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    by_step: dict[str, list[dict]] = {}

    def visit(dag: dict) -> None:
        for task in dag["tasks"].values():
            component = spec["components"][task["componentRef"]["name"]]
            if "dag" in component:
                visit(component["dag"])
                continue
            step = task["componentRef"]["name"].removeprefix("comp-").split("-op")[0]
            by_step.setdefault(step, []).append(executors[component["executorLabel"]])

    visit(spec["root"]["dag"])
    return spec, by_step


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv(kube.GPU_NODE_SELECTOR_VARIABLE, raising=False)
    monkeypatch.delenv(kube.GPU_TOLERATIONS_VARIABLE, raising=False)
    monkeypatch.delenv(kube.TRAIN_GPUS_VARIABLE, raising=False)
    monkeypatch.delenv(kube.CPU_IMAGE_VARIABLE, raising=False)
    monkeypatch.delenv(kube.WORKSPACE_SIZE_VARIABLE, raising=False)
    monkeypatch.delenv(kube.WORKSPACE_STORAGE_CLASS_VARIABLE, raising=False)
    return monkeypatch


def test_every_task_gets_the_configmap_and_secret_env(tmp_path, clean_env) -> None:
    _, by_step = compile_tiny(tmp_path)
    assert sorted(by_step) == sorted(GPU + CPU)
    assert sum(len(v) for v in by_step.values()) == 13  # start, 2 x 5 steps, register, finish
    for step, executors in by_step.items():
        for executor in executors:
            (config_map,) = executor["configMapAsEnv"]
            assert config_map["configMapName"] == "mmm-pipeline-env", step
            assert config_map.get("optional", False) is False
            pairs = [(e["configMapKey"], e["envVar"]) for e in config_map["keyToEnv"]]
            assert pairs == [(k, k) for k in CONFIG_MAP_ENV], step
            secret, tracking = executor["secretAsEnv"]
            assert secret["secretName"] == "mmm-storage-credentials", step
            assert secret.get("optional", False) is False
            pairs = [(e["secretKey"], e["envVar"]) for e in secret["keyToEnv"]]
            assert pairs == [(k, k) for k in SECRET_ENV], step
            assert tracking["secretName"] == "mmm-tracking-credentials", step
            assert tracking.get("optional", False) is False
            pairs = [(e["secretKey"], e["envVar"]) for e in tracking["keyToEnv"]]
            assert pairs == [(k, k) for k in TRACKING_ENV], step


def test_gpu_steps_go_to_gpu_nodes_and_cpu_steps_do_not(tmp_path, clean_env) -> None:
    _, by_step = compile_tiny(tmp_path)
    for step in GPU:
        assert len(by_step[step]) == (1 if step == "register" else 2)  # one per round
        for executor in by_step[step]:
            assert executor["nodeSelector"] == {"labels": DEFAULT_SELECTOR}, step
            assert executor["tolerations"] == DEFAULT_TOLERATIONS, step
    for step in CPU:
        for executor in by_step[step]:
            assert "nodeSelector" not in executor and "tolerations" not in executor, step


def test_gpu_placement_is_set_at_compile_time(tmp_path, clean_env) -> None:
    clean_env.setenv(kube.GPU_NODE_SELECTOR_VARIABLE, "pool=gpu, zone=a")
    clean_env.setenv(kube.GPU_TOLERATIONS_VARIABLE, "dedicated=ml:NoExecute,nvidia.com/gpu")
    _, by_step = compile_tiny(tmp_path)
    for executor in by_step["train"]:
        assert executor["nodeSelector"] == {"labels": {"pool": "gpu", "zone": "a"}}
        assert executor["tolerations"] == [
            {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoExecute"},
            {"key": "nvidia.com/gpu", "operator": "Exists"},
        ]
    for executor in by_step["cluster"]:
        assert "nodeSelector" not in executor and "tolerations" not in executor

    clean_env.setenv(kube.GPU_NODE_SELECTOR_VARIABLE, "none")
    clean_env.setenv(kube.GPU_TOLERATIONS_VARIABLE, "")
    _, by_step = compile_tiny(tmp_path)
    for executor in by_step["extract"]:
        assert "nodeSelector" not in executor and "tolerations" not in executor
        assert executor["configMapAsEnv"] and executor["secretAsEnv"]  # env stays


def _train_tasks(spec: dict) -> list[tuple[dict, dict]]:
    """(task, container resources) of every train task, inside the round component."""
    found = []
    for component in spec["components"].values():
        for task in component.get("dag", {}).get("tasks", {}).values():
            if task["componentRef"]["name"].startswith("comp-train-op"):
                step = spec["components"][task["componentRef"]["name"]]
                executor = spec["deploymentSpec"]["executors"][step["executorLabel"]]
                found.append((task, executor["container"]["resources"]))
    return found


def test_train_gpus_are_set_at_compile_time(tmp_path, clean_env) -> None:
    """$MMM_TRAIN_GPUS=N: the train task asks for N GPUs and runs N processes (torchrun);
    the other GPU steps keep one. Every GPU step gets a memory-backed /dev/shm."""
    spec, by_step = compile_tiny(tmp_path)
    ((task, resources),) = _train_tasks(spec)
    assert int(resources["accelerator"]["resourceCount"]) == 1
    assert task["inputs"]["parameters"]["processes"]["runtimeValue"]["constant"] == 1
    for step in GPU:
        for executor in by_step[step]:
            assert executor["emptyDirMounts"] == [
                {"volumeName": "shm", "mountPath": "/dev/shm", "medium": "Memory",
                 "sizeLimit": kube.SHM_SIZE}
            ], step  # fmt: skip
    for step in CPU:
        for executor in by_step[step]:
            assert "emptyDirMounts" not in executor, step

    clean_env.setenv(kube.TRAIN_GPUS_VARIABLE, "4")
    spec, _ = compile_tiny(tmp_path)
    ((task, resources),) = _train_tasks(spec)
    assert int(resources["accelerator"]["resourceCount"]) == 4
    assert task["inputs"]["parameters"]["processes"]["runtimeValue"]["constant"] == 4
    for bad in ("0", "two", "-1"):
        clean_env.setenv(kube.TRAIN_GPUS_VARIABLE, bad)
        with pytest.raises(ValueError, match="MMM_TRAIN_GPUS"):
            compile_tiny(tmp_path)


def _cache_dirs(spec: dict) -> dict[str, set]:
    """{step: the cache_dir values its tasks get} over the root and every nested DAG."""
    found: dict[str, set] = {}
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    for dag in dags:
        for task in dag["tasks"].values():
            step = task["componentRef"]["name"].removeprefix("comp-").split("-op")[0]
            value = task.get("inputs", {}).get("parameters", {}).get("cache_dir")
            if value is not None:
                found.setdefault(step, set()).add(value["runtimeValue"]["constant"])
    return found


def test_the_dataset_is_mirrored_into_the_runs_workspace(tmp_path, clean_env) -> None:
    """Every step that reads images mirrors an s3:// dataset into the run's workspace (one
    download per object per run); $MMM_WORKSPACE_SIZE=none compiles without a workspace."""
    from pipelines.retrain import build_retrain_pipeline

    spec, _ = compile_tiny(tmp_path)
    platform = yaml.safe_load_all((tmp_path / "tiny.yaml").read_text())
    workspace = list(platform)[1]["platforms"]["kubernetes"]["pipelineConfig"]["workspace"]
    assert workspace == {"size": kube.DEFAULT_WORKSPACE_SIZE, "kubernetes": {"pvcSpecPatch": {}}}
    cache = "{{$.workspace_path}}/mmm-cache"
    assert _cache_dirs(spec) == {
        s: {cache} for s in ("start", "extract", "train", "evaluate", "register")
    }
    path = compile_pipeline(build_retrain_pipeline(1), tmp_path / "retrain.yaml")
    retrain, _ = yaml.safe_load_all(path.read_text())
    steps = ("ingest", "promote", "extract", "train", "evaluate")
    assert _cache_dirs(retrain) == {s: {cache} for s in steps}

    clean_env.setenv(kube.WORKSPACE_SIZE_VARIABLE, "20Gi")
    clean_env.setenv(kube.WORKSPACE_STORAGE_CLASS_VARIABLE, "nfs-client")
    compile_tiny(tmp_path)
    platform = list(yaml.safe_load_all((tmp_path / "tiny.yaml").read_text()))[1]
    assert platform["platforms"]["kubernetes"]["pipelineConfig"]["workspace"] == {
        "size": "20Gi",
        "kubernetes": {
            "pvcSpecPatch": {"storageClassName": "nfs-client", "accessModes": ["ReadWriteMany"]}
        },
    }
    clean_env.setenv(kube.WORKSPACE_SIZE_VARIABLE, "none")
    spec, _ = compile_tiny(tmp_path)
    platform = list(yaml.safe_load_all((tmp_path / "tiny.yaml").read_text()))[1]
    assert "pipelineConfig" not in platform["platforms"]["kubernetes"]
    assert _cache_dirs(spec) == {
        s: {""} for s in ("start", "extract", "train", "evaluate", "register")
    }
    clean_env.setenv(kube.WORKSPACE_SIZE_VARIABLE, "plenty")
    with pytest.raises(ValueError, match="MMM_WORKSPACE_SIZE"):
        compile_tiny(tmp_path)


def _images(spec: dict) -> dict[str, set]:
    """{step: the images its executors run}."""
    found: dict[str, set] = {}
    for label, executor in spec["deploymentSpec"]["executors"].items():
        step = label.removeprefix("exec-").split("-op")[0]
        found.setdefault(step, set()).add(executor["container"]["image"])
    return found


def test_cpu_steps_run_the_cpu_image(tmp_path, clean_env) -> None:
    """The CPU steps run the slim CPU image (`make image-cpu`'s tag by default,
    $MMM_CPU_IMAGE when set); the GPU steps the base image."""
    from components import BASE_IMAGE

    spec, _ = compile_tiny(tmp_path)
    images = _images(spec)
    assert {step: images[step] for step in GPU} == {step: {BASE_IMAGE} for step in GPU}
    assert {step: images[step] for step in CPU} == {step: {f"{BASE_IMAGE}-cpu"} for step in CPU}
    clean_env.setenv(kube.CPU_IMAGE_VARIABLE, "registry.example.org/mmm-cpu@sha256:" + "0" * 64)
    spec, _ = compile_tiny(tmp_path)
    assert _images(spec)["cluster"] == {"registry.example.org/mmm-cpu@sha256:" + "0" * 64}
    clean_env.setenv(kube.CPU_IMAGE_VARIABLE, "none")
    spec, _ = compile_tiny(tmp_path)
    assert set().union(*_images(spec).values()) == {BASE_IMAGE}
    # a base image pinned by digest has no "-cpu" sibling to guess: it runs everywhere
    digest = "registry.example.org/mmm@sha256:" + "1" * 64
    assert kube.cpu_image(digest, {}) == digest
    assert kube.cpu_image("r.example.org/mmm:1.0", {}) == "r.example.org/mmm:1.0-cpu"


def test_parse_node_selector() -> None:
    assert kube.parse_node_selector("nvidia.com/gpu.present=true") == DEFAULT_SELECTOR
    assert kube.parse_node_selector(" a=1 , b = 2") == {"a": "1", "b": "2"}
    assert kube.parse_node_selector("a=") == {"a": ""}
    assert kube.parse_node_selector("None") == {} == kube.parse_node_selector("  ")
    for bad in ("a", "=b", "a=1,,b=2"):
        with pytest.raises(ValueError, match="key=value"):
            kube.parse_node_selector(bad)


def test_parse_tolerations() -> None:
    T = kube.Toleration
    assert kube.parse_tolerations("nvidia.com/gpu:NoSchedule") == [
        T("nvidia.com/gpu", "Exists", None, "NoSchedule")
    ]
    assert kube.parse_tolerations("pool=gpu, x") == [
        T("pool", "Equal", "gpu", None),
        T("x", "Exists", None, None),
    ]
    assert kube.parse_tolerations("none") == [] == kube.parse_tolerations("")
    with pytest.raises(ValueError, match="effect"):
        kube.parse_tolerations("a:NoSchedul")
    with pytest.raises(ValueError, match="key"):
        kube.parse_tolerations(":NoSchedule")


def test_defaults_and_explicit_arguments(clean_env) -> None:
    assert kube.gpu_node_selector() == DEFAULT_SELECTOR
    assert kube.gpu_tolerations() == [kube.Toleration("nvidia.com/gpu", effect="NoSchedule")]
    assert kube.gpu_node_selector({kube.GPU_NODE_SELECTOR_VARIABLE: "a=b"}) == {"a": "b"}
    assert kube.gpu_tolerations({kube.GPU_TOLERATIONS_VARIABLE: "none"}) == []


@pytest.mark.parametrize(
    "variable,value",
    [
        (kube.TRAIN_GPUS_VARIABLE, "two"),
        (kube.WORKSPACE_SIZE_VARIABLE, "plenty"),
        (kube.GPU_NODE_SELECTOR_VARIABLE, "bad"),
    ],
)
def test_a_bad_compile_setting_is_one_error_line(tmp_path, clean_env, capsys, variable, value):
    from pipelines.compile import main

    clean_env.setenv(variable, value)
    assert main(["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # nothing written
