"""Kubernetes settings of the pipeline's step pods, written into the compiled pipeline.

KFP puts these into the pipeline's platform spec (``platforms: kubernetes:``, the second YAML
document of a compiled file) through the ``kfp-kubernetes`` package; KFP's driver applies them
to each step pod. ``kfp.local`` runners ignore them.

Environment (every step): the keys of ConfigMap `CONFIG_MAP` and of Secrets `STORAGE_SECRET`
and `TRACKING_SECRET` (k8s/base/pipeline-env.yaml, k8s/secrets/storage-credentials.template.yaml,
k8s/secrets/tracking-credentials.template.yaml) become environment variables of the same names,
the ones `mmm_core.storage`, `mmm_core.tracking` and the MLflow client (basic auth) read. All
objects must exist in the namespace the pods run in, with every key listed here: a missing one
stops the pod at creation (``CreateContainerConfigError``) rather than failing later inside a
step.

GPU nodes (extract, train, evaluate): a node selector and tolerations, fixed when the pipeline
is compiled. The defaults fit nodes labelled by NVIDIA GPU feature discovery and tainted
``nvidia.com/gpu:NoSchedule``; two environment variables of the compiling process change them:

- ``MMM_GPU_NODE_SELECTOR``: ``key=value[,key=value...]``; ``none`` (or empty) for no selector.
  Default ``nvidia.com/gpu.present=true``.
- ``MMM_GPU_TOLERATIONS``: taints to tolerate, in ``kubectl taint`` syntax
  ``key[=value][:effect][,...]`` (without a value the toleration matches any value, without an
  effect any effect); ``none`` (or empty) for none. Default ``nvidia.com/gpu:NoSchedule``.
- ``MMM_TRAIN_GPUS``: GPUs of each train task, default 1. With N > 1 the train step runs
  under ``torchrun --nproc_per_node=N`` (data-parallel on one node).

Dataset cache (the run's workspace): steps that read the dataset (start, extract, train,
evaluate; ingest and promote in retraining) mirror an ``s3://`` data root into
``<workspace>/mmm-cache``, a volume KFP creates for the run and mounts in every step that
names it (``dsl.WorkspaceConfig``, KFP backend 2.15 or later), so each object is downloaded
once per run. Two variables of the compiling process set it:

- ``MMM_WORKSPACE_SIZE``: the volume's size, default ``100Gi``; ``none`` compiles without a
  workspace (for older backends): each step pod then mirrors into its own $MMM_CACHE_DIR.
- ``MMM_WORKSPACE_STORAGE_CLASS``: its storage class, default the backend's (``ReadWriteMany``
  is requested with it, so that GPU and CPU steps on different nodes share it).

Images: GPU steps run the image of the components (`components.BASE_IMAGE`, $MMM_BASE_IMAGE);
the CPU steps (start, cluster, match, finish; ingest when retraining) run the CPU image
(docker/Dockerfile.cpu, ``make image-cpu``: CPU PyTorch and faiss-cpu, a fraction of the
size). ``MMM_CPU_IMAGE`` names it; by default it is the base image's tag with ``-cpu``
appended (what ``make image-cpu`` builds), or the base image itself when that is pinned by
digest; ``none`` runs every step in the base image.

Shared memory: GPU steps get a memory-backed ``/dev/shm`` (an ``emptyDir`` with medium
``Memory``, `SHM_SIZE`), which DataLoader workers and NCCL use; a container's default is 64 MiB.
"""

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kfp import dsl, kubernetes

__all__ = [
    "CONFIG_MAP",
    "CONFIG_MAP_KEYS",
    "CPU_IMAGE_VARIABLE",
    "DEFAULT_GPU_NODE_SELECTOR",
    "DEFAULT_GPU_TOLERATIONS",
    "DEFAULT_WORKSPACE_SIZE",
    "GPU_NODE_SELECTOR_VARIABLE",
    "GPU_TOLERATIONS_VARIABLE",
    "SECRET_KEYS",
    "SHM_SIZE",
    "STORAGE_SECRET",
    "TRACKING_SECRET",
    "TRACKING_SECRET_KEYS",
    "TRAIN_GPUS_VARIABLE",
    "WORKSPACE_CACHE_DIR",
    "WORKSPACE_SIZE_VARIABLE",
    "WORKSPACE_STORAGE_CLASS_VARIABLE",
    "Toleration",
    "cpu_image",
    "dataset_cache_dir",
    "gpu_node_selector",
    "gpu_tolerations",
    "parse_node_selector",
    "parse_tolerations",
    "pipeline_config",
    "train_gpus",
    "use_cluster_env",
    "use_gpu_nodes",
    "use_shared_memory",
]

CONFIG_MAP = "mmm-pipeline-env"
STORAGE_SECRET = "mmm-storage-credentials"
# ConfigMap key -> environment variable of the step pods (the same names)
CONFIG_MAP_KEYS = {
    "MINIO_ENDPOINT": "MINIO_ENDPOINT",  # mmm_core.storage: s3:// datasets
    "MINIO_SECURE": "MINIO_SECURE",
    "MMM_CACHE_DIR": "MMM_CACHE_DIR",  # mmm_core.storage: local mirror of s3:// datasets
    "MLFLOW_TRACKING_URI": "MLFLOW_TRACKING_URI",  # mmm_core.tracking, when tracking.uri is empty
    "MLFLOW_S3_ENDPOINT_URL": "MLFLOW_S3_ENDPOINT_URL",  # MLflow client, s3:// artifact roots
}
# Secret key -> environment variable of the step pods (the same names)
SECRET_KEYS = {
    "MINIO_ACCESS_KEY": "MINIO_ACCESS_KEY",  # mmm_core.storage
    "MINIO_SECRET_KEY": "MINIO_SECRET_KEY",
    "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",  # MLflow client (boto3), s3:// artifact roots
    "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
}
# The pipeline's user on the MLflow server (basic auth); the MLflow client reads these names.
TRACKING_SECRET = "mmm-tracking-credentials"
TRACKING_SECRET_KEYS = {
    "MLFLOW_TRACKING_USERNAME": "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD": "MLFLOW_TRACKING_PASSWORD",
}

GPU_NODE_SELECTOR_VARIABLE = "MMM_GPU_NODE_SELECTOR"
GPU_TOLERATIONS_VARIABLE = "MMM_GPU_TOLERATIONS"
DEFAULT_GPU_NODE_SELECTOR = "nvidia.com/gpu.present=true"
DEFAULT_GPU_TOLERATIONS = "nvidia.com/gpu:NoSchedule"
TRAIN_GPUS_VARIABLE = "MMM_TRAIN_GPUS"
CPU_IMAGE_VARIABLE = "MMM_CPU_IMAGE"
WORKSPACE_SIZE_VARIABLE = "MMM_WORKSPACE_SIZE"
WORKSPACE_STORAGE_CLASS_VARIABLE = "MMM_WORKSPACE_STORAGE_CLASS"
DEFAULT_WORKSPACE_SIZE = "100Gi"
# Where the dataset-reading steps mirror remote datasets: inside the run's workspace.
WORKSPACE_CACHE_DIR = dsl.WORKSPACE_PATH_PLACEHOLDER + "/mmm-cache"
SHM_SIZE = "8Gi"
_NONE = ("", "none")
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


@dataclass(frozen=True)
class Toleration:
    """A pod toleration: ``operator`` is ``Exists`` (any value) or ``Equal`` (``value``);
    ``effect`` None matches every effect."""

    key: str
    operator: str = "Exists"
    value: str | None = None
    effect: str | None = None


def parse_node_selector(text: str) -> dict[str, str]:
    """``"k=v,k2=v2"`` -> ``{"k": "v", "k2": "v2"}``; ``"none"`` or ``""`` -> ``{}``."""
    if text.strip().lower() in _NONE:
        return {}
    selector = {}
    for item in text.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or not key.strip():
            raise ValueError(f"node selector entries are key=value, got {item.strip()!r}")
        selector[key.strip()] = value.strip()
    return selector


def parse_tolerations(text: str) -> list[Toleration]:
    """Taints in ``kubectl taint`` syntax, ``"key[=value][:effect][,...]"``, as tolerations.

    ``"nvidia.com/gpu:NoSchedule"`` -> Exists/NoSchedule; ``"pool=gpu"`` -> Equal ``gpu``, any
    effect; ``"none"`` or ``""`` -> ``[]``.
    """
    if text.strip().lower() in _NONE:
        return []
    tolerations = []
    for item in text.split(","):
        item = item.strip()
        taint, _, effect = item.partition(":")
        key, sep, value = taint.partition("=")
        if not key.strip():
            raise ValueError(f"toleration entries are key[=value][:effect], got {item!r}")
        if effect and effect not in _EFFECTS:
            raise ValueError(f"toleration effect must be one of {_EFFECTS}, got {effect!r}")
        tolerations.append(
            Toleration(
                key=key.strip(),
                operator="Equal" if sep else "Exists",
                value=value.strip() if sep else None,
                effect=effect or None,
            )
        )
    return tolerations


def gpu_node_selector(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The GPU steps' node selector: $MMM_GPU_NODE_SELECTOR if set, else the default."""
    environ = os.environ if environ is None else environ
    return parse_node_selector(environ.get(GPU_NODE_SELECTOR_VARIABLE, DEFAULT_GPU_NODE_SELECTOR))


def gpu_tolerations(environ: Mapping[str, str] | None = None) -> list[Toleration]:
    """The GPU steps' tolerations: $MMM_GPU_TOLERATIONS if set, else the default."""
    environ = os.environ if environ is None else environ
    return parse_tolerations(environ.get(GPU_TOLERATIONS_VARIABLE, DEFAULT_GPU_TOLERATIONS))


def cpu_image(base_image: str, environ: Mapping[str, str] | None = None) -> str:
    """The image of the CPU steps: $MMM_CPU_IMAGE, else `base_image` + ``-cpu`` (a tagged
    base) or `base_image` (a digest-pinned one, or $MMM_CPU_IMAGE=none)."""
    environ = os.environ if environ is None else environ
    chosen = environ.get(CPU_IMAGE_VARIABLE, "").strip()
    if chosen.lower() == "none" or (not chosen and "@" in base_image):
        return base_image
    return chosen or f"{base_image}-cpu"


def train_gpus(environ: Mapping[str, str] | None = None) -> int:
    """GPUs of each train task: $MMM_TRAIN_GPUS if set, else 1."""
    environ = os.environ if environ is None else environ
    raw = environ.get(TRAIN_GPUS_VARIABLE, "").strip() or "1"
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"${TRAIN_GPUS_VARIABLE}: expected a whole number >= 1, got {raw!r}")
    return int(raw)


def pipeline_config(environ: Mapping[str, str] | None = None) -> dsl.PipelineConfig | None:
    """The pipelines' workspace ($MMM_WORKSPACE_SIZE, $MMM_WORKSPACE_STORAGE_CLASS); None
    when $MMM_WORKSPACE_SIZE is ``none``."""
    environ = os.environ if environ is None else environ
    size = environ.get(WORKSPACE_SIZE_VARIABLE, "").strip() or DEFAULT_WORKSPACE_SIZE
    if size.lower() == "none":
        return None
    storage_class = environ.get(WORKSPACE_STORAGE_CLASS_VARIABLE, "").strip()
    patch = {"storageClassName": storage_class, "accessModes": ["ReadWriteMany"]}
    try:
        workspace = dsl.WorkspaceConfig(
            size=size, kubernetes=dsl.KubernetesWorkspaceConfig(patch if storage_class else {})
        )
    except ValueError as exc:
        raise ValueError(f"${WORKSPACE_SIZE_VARIABLE}: {exc}") from None
    return dsl.PipelineConfig(workspace=workspace)


def dataset_cache_dir(environ: Mapping[str, str] | None = None) -> str:
    """What the dataset-reading steps get as `cache_dir`: the workspace's cache folder, or ""
    (their $MMM_CACHE_DIR) when the pipelines are compiled without a workspace."""
    return WORKSPACE_CACHE_DIR if pipeline_config(environ) is not None else ""


def use_shared_memory(task: dsl.PipelineTask, size: str = SHM_SIZE) -> dsl.PipelineTask:
    """Mount a memory-backed emptyDir of `size` on /dev/shm (counts against the pod's memory
    limit where one is set)."""
    return kubernetes.empty_dir_mount(
        task, volume_name="shm", mount_path="/dev/shm", medium="Memory", size_limit=size
    )


def use_cluster_env(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Give the task's pod the keys of ConfigMap `CONFIG_MAP` and Secrets `STORAGE_SECRET` and
    `TRACKING_SECRET` as environment variables (`CONFIG_MAP_KEYS`, `SECRET_KEYS`,
    `TRACKING_SECRET_KEYS`)."""
    kubernetes.use_config_map_as_env(
        task, config_map_name=CONFIG_MAP, config_map_key_to_env=dict(CONFIG_MAP_KEYS)
    )
    kubernetes.use_secret_as_env(
        task, secret_name=STORAGE_SECRET, secret_key_to_env=dict(SECRET_KEYS)
    )
    kubernetes.use_secret_as_env(
        task, secret_name=TRACKING_SECRET, secret_key_to_env=dict(TRACKING_SECRET_KEYS)
    )
    return task


def use_gpu_nodes(
    task: dsl.PipelineTask,
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Toleration] | None = None,
) -> dsl.PipelineTask:
    """Place the task on GPU nodes: a node selector and tolerations.

    None takes the compile-time setting (`gpu_node_selector`, `gpu_tolerations`: the
    environment, else ``nvidia.com/gpu.present=true`` and ``nvidia.com/gpu:NoSchedule``); an
    empty mapping or sequence adds nothing.
    """
    node_selector = gpu_node_selector() if node_selector is None else node_selector
    tolerations = gpu_tolerations() if tolerations is None else tolerations
    for key, value in node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for toleration in tolerations:
        kubernetes.add_toleration(
            task,
            key=toleration.key,
            operator=toleration.operator,
            value=toleration.value,
            effect=toleration.effect,
        )
    return task
