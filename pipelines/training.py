"""The training pipeline: stage-1 rounds then stage-2 rounds, each a nested round pipeline.

The number of rounds is fixed when the pipeline is compiled (`build_training_pipeline`); every
other setting is a run-time parameter, typed and described in the KFP UI. A parameter left at
its default keeps the config file's value (`mmm_core.steps.parameters`: "" for text, 0 or -1
for numbers); ``overrides`` takes any other ``key.path=value``.

After the last round, register logs the final model to MLflow as an MLflow Model, registers
it and applies the promotion rule (`mmm_core.engine.champion`).

Resources: extract, train and evaluate ask for one GPU and are placed on GPU nodes (node
selector and tolerations, `pipelines.kube`); cluster and match ask for CPU and memory. Every
step's pod gets the cluster environment (ConfigMap mmm-pipeline-env, Secrets
mmm-storage-credentials and mmm-tracking-credentials; `pipelines.kube.use_cluster_env`).
Caching: extract, cluster, match and evaluate are pure functions of their inputs and are
cached; start (reads a dataset that may change) and train (GPU kernels are not bit-exact)
are not. Every step retries transient failures.
"""

import contextlib
import inspect
import sys
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from kfp import dsl
from kfp.dsl import Input

from components import (
    BASE_IMAGE,
    cluster_op,
    evaluate_op,
    extract_op,
    finish_op,
    match_op,
    register_op,
    start_op,
    train_op,
)
from mmm_core.steps.parameters import PARAMETERS
from pipelines.kube import (
    cpu_image,
    dataset_cache_dir,
    pipeline_config,
    train_gpus,
    use_cluster_env,
    use_gpu_nodes,
    use_shared_memory,
)

__all__ = [
    "GPU_STEPS",
    "add_round",
    "apply_resources",
    "build_round_pipeline",
    "build_training_pipeline",
    "chain_rounds",
    "named_parameters",
]

GPU_STEPS = ("extract", "train", "evaluate", "register")
ACCELERATOR = "nvidia.com/gpu"
RESOURCES = {
    "start": {"cpu": "2", "memory": "8G"},
    "extract": {"cpu": "4", "memory": "16G"},
    "cluster": {"cpu": "8", "memory": "32G"},
    "match": {"cpu": "4", "memory": "16G"},
    "train": {"cpu": "8", "memory": "32G"},
    "evaluate": {"cpu": "4", "memory": "16G"},
    "register": {"cpu": "4", "memory": "16G"},  # it may evaluate two models (promotion)
    "finish": {"cpu": "1", "memory": "2G"},
}
CACHED = {"start": False, "extract": True, "cluster": True, "match": True, "train": False}
CACHED["evaluate"] = True
CACHED["register"] = False  # it writes to the model registry
CACHED["finish"] = False  # it reads the run's outcome


class _CallerNames:
    """`inspect` as kfp's task setters see it, with a `stack()` that skips the source files.

    Each ``PipelineTask.set_cpu_request`` (and the other container setters) calls
    ``inspect.stack()`` only to name its caller in an error message. That reads the source
    file of every frame on the stack: a third of the time of compiling the 50x50 pipeline,
    and more under a test runner's deep stack. This `stack()` gives the same frames, names and
    line numbers without touching the files.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(inspect, name)

    @staticmethod
    def stack(context: int = 1) -> list[tuple]:
        frames, frame = [], sys._getframe(1)
        while frame is not None:
            code = frame.f_code
            frames.append((frame, code.co_filename, frame.f_lineno, code.co_name, None, None))
            frame = frame.f_back
        return frames


@contextlib.contextmanager
def _cheap_caller_names() -> Iterator[None]:
    from kfp.dsl import pipeline_task

    if getattr(pipeline_task, "inspect", None) is not inspect:  # another kfp: leave it alone
        yield
        return
    pipeline_task.inspect = _CallerNames()
    try:
        yield
    finally:
        pipeline_task.inspect = inspect


def apply_resources(
    task: dsl.PipelineTask, step: str, display_name: str, gpus: int = 1
) -> dsl.PipelineTask:
    """Name, resources, accelerator, retries, caching and pod settings of one step's task.

    Every task gets the cluster environment (`use_cluster_env`); GPU steps also `gpus` GPUs,
    the GPU node selector and tolerations (`use_gpu_nodes`, set at compile time by
    $MMM_GPU_NODE_SELECTOR and $MMM_GPU_TOLERATIONS) and a memory-backed /dev/shm; the
    others run the CPU image (`pipelines.kube.cpu_image`, $MMM_CPU_IMAGE).
    """
    task.set_display_name(display_name)
    with _cheap_caller_names():
        task.set_cpu_request(RESOURCES[step]["cpu"]).set_memory_request(RESOURCES[step]["memory"])
        if step in GPU_STEPS:
            task.set_accelerator_type(ACCELERATOR).set_accelerator_limit(gpus)
            use_gpu_nodes(task)
            use_shared_memory(task)
        else:
            task.set_container_image(cpu_image(BASE_IMAGE))
    task.set_retry(num_retries=2, backoff_duration="30s", backoff_factor=2.0)
    task.set_caching_options(CACHED[step])
    use_cluster_env(task)
    return task


def add_round(
    round_index: Any,
    config: Any,
    manifest: Any,
    checkpoint: Any,
    history: Any,
    active: Any = True,
    gpus: int = 1,
    cache_dir: str = "",
) -> tuple[Any, Any]:
    """The five tasks of one round (extract, cluster, match, train, evaluate).

    Returns the round's (checkpoint, history) outputs. `round_index` and `active` (the
    retraining pipeline's no-op switch) are constants or channels; every task gets both.
    The train task asks for `gpus` GPUs and runs that many processes (torchrun). The steps
    that read images mirror an s3:// dataset into `cache_dir` ("" = their $MMM_CACHE_DIR).
    """
    switch = {"active": active}
    extract = extract_op(
        config=config, manifest=manifest, checkpoint=checkpoint, cache_dir=cache_dir, **switch
    )
    apply_resources(extract, "extract", "extract")
    cluster = cluster_op(
        round_index=round_index,
        config=config,
        manifest=manifest,
        features=extract.outputs["features"],
        **switch,
    )
    apply_resources(cluster, "cluster", "cluster")
    match = match_op(
        round_index=round_index,
        config=config,
        manifest=manifest,
        features=extract.outputs["features"],
        labels=cluster.outputs["labels"],
        **switch,
    )
    apply_resources(match, "match", "match")
    train = train_op(
        round_index=round_index,
        config=config,
        manifest=manifest,
        checkpoint=checkpoint,
        targets=match.outputs["targets"],
        processes=gpus,
        cache_dir=cache_dir,
        **switch,
    )
    apply_resources(train, "train", "train", gpus=gpus)
    evaluate = evaluate_op(
        round_index=round_index,
        config=config,
        checkpoint=train.outputs["new_checkpoint"],
        history=history,
        extract_metrics=extract.outputs["metrics"],
        cluster_metrics=cluster.outputs["metrics"],
        match_metrics=match.outputs["metrics"],
        train_metrics=train.outputs["metrics"],
        cache_dir=cache_dir,
        **switch,
    )
    apply_resources(evaluate, "evaluate", "evaluate")
    return train.outputs["new_checkpoint"], evaluate.outputs["new_history"]


class RoundOutputs(NamedTuple):
    checkpoint: dsl.Artifact
    history: dsl.Artifact


def build_round_pipeline() -> Callable[..., Any]:
    """One round as a pipeline of its own: a pipeline of R rounds calls it R times.

    Every call compiles to the same definition (`pipelines.compact` keeps one), so a compiled
    pipeline grows by one small task per round, and the KFP UI shows each round as a node
    that opens onto its five steps. Built per compile: the GPU node settings and the train
    task's GPUs ($MMM_TRAIN_GPUS) and the run's workspace ($MMM_WORKSPACE_SIZE) are read
    from the environment then (`pipelines.kube`).
    """
    gpus, cache_dir = train_gpus(), dataset_cache_dir()

    @dsl.pipeline(
        name="mmm-round",
        description="One round: extract, cluster, match, train, evaluate (the stage follows "
        "from round_index and the config).",
        pipeline_config=pipeline_config(),
    )
    def round_pipeline(
        round_index: int,
        config: Input[dsl.Artifact],
        manifest: Input[dsl.Artifact],
        checkpoint: Input[dsl.Artifact],
        history: Input[dsl.Artifact],
        active: bool = True,
    ) -> RoundOutputs:
        new_checkpoint, new_history = add_round(
            round_index, config, manifest, checkpoint, history, active, gpus, cache_dir
        )
        return RoundOutputs(checkpoint=new_checkpoint, history=new_history)

    return round_pipeline


def chain_rounds(
    round_pipeline: Callable[..., Any],
    rounds: int,
    label: Callable[[int], str],
    config: Any,
    manifest: Any,
    checkpoint: Any,
    history: Any,
    active: Any = True,
) -> tuple[Any, Any]:
    """`rounds` calls of `round_pipeline` (`build_round_pipeline`, built before the calling
    pipeline: kfp builds no pipeline inside another's body), each on the previous one's
    checkpoint and history; returns the last (checkpoint, history). `label(r)` is round r's
    display name."""
    for r in range(rounds):
        task = round_pipeline(
            round_index=r,
            config=config,
            manifest=manifest,
            checkpoint=checkpoint,
            history=history,
            active=active,
        )
        task.set_display_name(label(r))
        checkpoint, history = task.outputs["checkpoint"], task.outputs["history"]
    return checkpoint, history


def named_parameters(values: dict[str, Any]) -> dict[str, Any]:
    """The named run-time parameters (`mmm_core.steps.parameters.PARAMETERS`) among a pipeline
    function's `values` (its ``locals()``), to hand on to the step that resolves the config."""
    return {name: values[name] for name in PARAMETERS if name in values}


def build_training_pipeline(
    stage1_rounds: int, stage2_rounds: int, name: str = "mmm-training", exit_handler: bool = True
) -> Callable[..., object]:
    """The training pipeline: start, the round pipeline once per round, register.

    With `exit_handler` (compiled pipelines), every task runs inside a ``dsl.ExitHandler``
    whose exit task (`finish_op`) marks the MLflow run FAILED or KILLED when the run does not
    succeed; such a pipeline has no output (KFP returns none from inside an ExitHandler).
    kfp's local runner does not run exit handlers: `pipelines.local` builds the pipeline
    without one, returning the run's history.
    """
    if stage1_rounds < 0 or stage2_rounds < 0 or stage1_rounds + stage2_rounds < 1:
        raise ValueError(f"need at least one round, got {stage1_rounds} + {stage2_rounds}")
    round_pipeline = build_round_pipeline()
    cache_dir = dataset_cache_dir()

    def training(
        config_file: str = "configs/sysu.yaml",
        data_root: str = "",
        data_trial: int = 0,
        seed: int = -1,
        device: str = "",
        iters_per_round: int = 0,
        lr: float = 0.0,
        cluster_eps: float = 0.0,
        cluster_k1: int = 0,
        cluster_k2: int = 0,
        joint_eps: float = 0.0,
        num_memories: int = 0,
        match_cost: str = "",
        match_assignment: str = "",
        lambda_cmc: float = -1.0,
        lambda_cross: float = -1.0,
        lambda_sca: float = -1.0,
        eval_every: int = -1,
        tracking_enabled: str = "",
        mlflow_experiment: str = "",
        model_name: str = "",
        overrides: list = [],  # noqa: B006 - KFP reads the default from the signature
    ) -> dsl.Artifact:
        """Train MMM and return the per-round history (metrics.jsonl).

        Args:
            config_file: YAML config inside the image (configs/sysu.yaml, configs/regdb.yaml,
                configs/synthetic-tiny.yaml, ...); the other parameters override it.
            data_root: dataset root: a path (PVC) or s3://bucket/prefix; empty = config's.
            data_trial: RegDB trial 1..10; 0 = config's.
            seed: the one seed of the run; -1 = config's.
            device: auto, cpu, cuda or cuda:N; empty = config's.
            iters_per_round: training iterations per round; 0 = config's.
            lr: Adam learning rate (restarts each stage); 0 = config's.
            cluster_eps: DBSCAN radius on the Jaccard distance, per modality; 0 = config's.
            cluster_k1: Jaccard k1 (neighbours) per modality; 0 = config's.
            cluster_k2: Jaccard k2 (query expansion) per modality; 0 = config's.
            joint_eps: DBSCAN radius of the CMC joint clustering; 0 = config's.
            num_memories: K sub-cluster memories per cluster in stage 2; 0 = config's.
            match_cost: chamfer, one_sided or centroid; empty = config's.
            match_assignment: hungarian or greedy; empty = config's.
            lambda_cmc: weight of the CMC joint-memory loss (stage 1); -1 = config's.
            lambda_cross: weight of the cross-modality loss (stage 2); -1 = config's.
            lambda_sca: weight of soft cluster-level alignment (stage 2); -1 = config's.
            eval_every: evaluate every N rounds (0 = last round only); -1 = config's.
            tracking_enabled: true or false: log the run to MLflow; empty = on when the
                cluster names an MLflow server (MLFLOW_TRACKING_URI in the ConfigMap
                mmm-pipeline-env), else the config's.
            mlflow_experiment: MLflow experiment of the run; empty = config's.
            model_name: registered model name in the MLflow model registry; empty = config's.
            overrides: further key.path=value config overrides, e.g. ["memory.momentum=0.2"].
        """
        named = named_parameters(locals())  # (first: the parameters are the only locals)
        handler: Any = contextlib.nullcontext()
        if exit_handler:
            finish = finish_op(
                config_file=config_file,
                stage1_rounds=stage1_rounds,
                stage2_rounds=stage2_rounds,
                tracking_enabled=tracking_enabled,
                mlflow_experiment=mlflow_experiment,
                overrides=overrides,
                kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            )
            apply_resources(finish, "finish", "mark the MLflow run if the run failed")
            handler = dsl.ExitHandler(finish, name="training")
        with handler:
            start = start_op(
                config_file=config_file,
                stage1_rounds=stage1_rounds,
                stage2_rounds=stage2_rounds,
                overrides=overrides,
                kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                kfp_run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                kfp_pipeline=name,
                cache_dir=cache_dir,
                **named,
            )
            apply_resources(start, "start", "start")
            config = start.outputs["config"]
            manifest = start.outputs["manifest"]
            checkpoint, history = chain_rounds(
                round_pipeline,
                stage1_rounds + stage2_rounds,
                lambda r: f"round {r} (stage {1 if r < stage1_rounds else 2})",
                config,
                manifest,
                start.outputs["checkpoint"],
                start.outputs["history"],
            )
            register = register_op(
                config=config, checkpoint=checkpoint, history=history, cache_dir=cache_dir
            )
            apply_resources(register, "register", "register and promote")
        return None if exit_handler else history

    if exit_handler:  # (KFP's pipeline outputs come from the signature's return type)
        del training.__annotations__["return"]
    return dsl.pipeline(
        name=name,
        description=(
            f"Multi-Memory Matching for unsupervised visible-infrared re-ID: {stage1_rounds} "
            f"CMC rounds then {stage2_rounds} MMLM + SCA rounds (extract, cluster, match, "
            "train, evaluate per round)."
        ),
        pipeline_config=pipeline_config(),
    )(training)
