"""One component per pipeline step. Each body imports its step and calls ``run`` on paths.

Lightweight components are serialised from source, so every import lives inside the body;
the image (`BASE_IMAGE`) has the ``mmm_core`` package and kfp installed, so no step runs
``pip install kfp`` before its work (``install_kfp_package=False``: 1-2 s saved per task).

The round steps (extract, cluster, match, train, evaluate) take ``active`` (default true):
the retraining pipeline passes the ingest step's ``train`` decision, and an inactive step
writes empty outputs and returns at once (`mmm_core.steps.ingest.skip_outputs`). This stands
in for ``dsl.If``, which the local runner of kfp 2.16 never enters (its condition evaluator
fails on ``inputs.parameter_values[...]`` and treats the condition as false), so that the
pipeline tested locally is the pipeline a cluster runs.
"""

import os
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Metrics, Output

BASE_IMAGE = os.environ.get("MMM_BASE_IMAGE", "ghcr.io/mmm-vi-reid/mmm-vi-reid:0.1.0")


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def start_op(
    config_file: str,
    stage1_rounds: int,
    stage2_rounds: int,
    data_root: str,
    data_trial: int,
    seed: int,
    device: str,
    iters_per_round: int,
    lr: float,
    cluster_eps: float,
    cluster_k1: int,
    cluster_k2: int,
    joint_eps: float,
    num_memories: int,
    match_cost: str,
    match_assignment: str,
    lambda_cmc: float,
    lambda_cross: float,
    lambda_sca: float,
    eval_every: int,
    tracking_enabled: str,
    mlflow_experiment: str,
    model_name: str,
    overrides: list,
    config: Output[Artifact],
    manifest: Output[Artifact],
    checkpoint: Output[Artifact],
    history: Output[Artifact],
    metrics: Output[Metrics],
    kfp_run_id: str = "",
    kfp_run_name: str = "",
    kfp_pipeline: str = "",
    cache_dir: str = "",
):
    """Resolve the config, read the dataset into a manifest, initialise the network.

    The MLflow run is tagged with the KFP run (id, name, pipeline); a retried start finds
    the run its first attempt made and goes on with it.
    """
    from mmm_core.steps.cache import use_cache_dir

    use_cache_dir(cache_dir)  # the run's workspace: one mirror of an s3:// dataset per run
    from mmm_core.steps import parameters as named
    from mmm_core.steps import start
    from mmm_core.steps.common import log_kfp_metrics

    parameters = {name: value for name, value in locals().items() if name in named.PARAMETERS}
    parameters["tracking_enabled"] = named.tracking_parameter(tracking_enabled)
    values = start.run(
        [config_file],
        named.parameter_overrides(parameters, (stage1_rounds, stage2_rounds)) + list(overrides),
        config.path,
        manifest.path,
        checkpoint.path,
        history.path,
        tags=named.kfp_tags(kfp_run_id, kfp_run_name, kfp_pipeline),
    )
    log_kfp_metrics(metrics, values)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def finish_op(
    config_file: str,
    stage1_rounds: int,
    stage2_rounds: int,
    tracking_enabled: str,
    mlflow_experiment: str,
    overrides: list,
    kfp_run_id: str,
    status: dsl.PipelineTaskFinalStatus,
) -> str:
    """Exit handler: a run that failed or was cancelled marks its MLflow run FAILED / KILLED."""
    from mmm_core.steps import finish
    from mmm_core.steps import parameters as named

    parameters = {
        "tracking_enabled": named.tracking_parameter(tracking_enabled),
        "mlflow_experiment": mlflow_experiment,
    }
    done = finish.run(
        [config_file],
        named.parameter_overrides(parameters, (stage1_rounds, stage2_rounds)) + list(overrides),
        kfp_run_id,
        status.state,
    )
    print(done["finish"])
    return done["finish"]


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def extract_op(
    config: Input[Artifact],
    manifest: Input[Artifact],
    checkpoint: Input[Artifact],
    features: Output[Artifact],
    metrics: Output[Metrics],
    active: bool = True,
    cache_dir: str = "",
):
    """Train features per modality (flip-averaged, L2-normalised), in manifest order."""
    if not active:
        from mmm_core.steps.ingest import skip_outputs

        return skip_outputs("extract", [features.path], metrics)
    from mmm_core.steps.cache import use_cache_dir

    use_cache_dir(cache_dir)  # the run's workspace: one mirror of an s3:// dataset per run
    from mmm_core.steps import extract
    from mmm_core.steps.common import log_kfp_metrics

    log_kfp_metrics(
        metrics, extract.run(config.path, manifest.path, checkpoint.path, features.path)
    )


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def cluster_op(
    round_index: int,
    config: Input[Artifact],
    manifest: Input[Artifact],
    features: Input[Artifact],
    labels: Output[Artifact],
    metrics: Output[Metrics],
    active: bool = True,
):
    """Jaccard + DBSCAN pseudo-labels per modality (+ CMC joint labels in stage 1)."""
    if not active:
        from mmm_core.steps.ingest import skip_outputs

        return skip_outputs("cluster", [labels.path], metrics)
    from mmm_core.steps import cluster
    from mmm_core.steps.common import log_kfp_metrics

    log_kfp_metrics(
        metrics, cluster.run(config.path, manifest.path, features.path, round_index, labels.path)
    )


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def match_op(
    round_index: int,
    config: Input[Artifact],
    manifest: Input[Artifact],
    features: Input[Artifact],
    labels: Input[Artifact],
    targets: Output[Artifact],
    metrics: Output[Metrics],
    active: bool = True,
):
    """Memories, multi-memory Hungarian matching, SCA weights, pseudo-label diagnostics."""
    if not active:
        from mmm_core.steps.ingest import skip_outputs

        return skip_outputs("match", [targets.path], metrics)
    from mmm_core.steps import match
    from mmm_core.steps.common import log_kfp_metrics

    values = match.run(
        config.path, manifest.path, features.path, labels.path, round_index, targets.path
    )
    log_kfp_metrics(metrics, values)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def train_op(
    round_index: int,
    config: Input[Artifact],
    manifest: Input[Artifact],
    checkpoint: Input[Artifact],
    targets: Input[Artifact],
    new_checkpoint: Output[Artifact],
    metrics: Output[Metrics],
    active: bool = True,
    processes: int = 1,
    cache_dir: str = "",
):
    """One round of training iterations; writes the next checkpoint. With ``processes > 1``
    (the task's GPUs, fixed at compile time) it runs under torchrun, one process per GPU."""
    if not active:
        from mmm_core.steps.ingest import skip_outputs

        return skip_outputs("train", [new_checkpoint.path], metrics)
    from mmm_core.steps.cache import use_cache_dir

    use_cache_dir(cache_dir)  # the run's workspace: one mirror of an s3:// dataset per run
    from mmm_core.steps import train
    from mmm_core.steps.common import log_kfp_metrics

    values = train.launch(
        config.path,
        manifest.path,
        checkpoint.path,
        targets.path,
        round_index,
        new_checkpoint.path,
        processes=processes,
    )
    log_kfp_metrics(metrics, values)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate_op(
    round_index: int,
    config: Input[Artifact],
    checkpoint: Input[Artifact],
    history: Input[Artifact],
    extract_metrics: Input[Metrics],
    cluster_metrics: Input[Metrics],
    match_metrics: Input[Metrics],
    train_metrics: Input[Metrics],
    new_history: Output[Artifact],
    result: Output[Artifact],
    metrics: Output[Metrics],
    active: bool = True,
    cache_dir: str = "",
):
    """Evaluate when due (eval.every, last round) and append the round's row to the history."""
    if not active:
        from mmm_core.steps.ingest import skip_outputs

        return skip_outputs("evaluate", [new_history.path, result.path], metrics)
    from mmm_core.steps.cache import use_cache_dir

    use_cache_dir(cache_dir)  # the run's workspace: one mirror of an s3:// dataset per run
    from mmm_core.steps import evaluate
    from mmm_core.steps.common import log_kfp_metrics

    step_metrics = [extract_metrics, cluster_metrics, match_metrics, train_metrics]
    values = evaluate.run_round(
        config.path,
        checkpoint.path,
        round_index,
        history.path,
        [m.path for m in step_metrics],
        new_history.path,
        result.path,
    )
    log_kfp_metrics(metrics, values)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def register_op(
    config: Input[Artifact],
    checkpoint: Input[Artifact],
    history: Input[Artifact],
    metrics: Output[Metrics],
    cache_dir: str = "",
):
    """Log the final model (an MLflow Model) and the history to the run's MLflow run; register
    it as "candidate"; make it "champion" when the promotion rule says so (evaluating it and
    the champion when there is one)."""
    from mmm_core.steps.cache import use_cache_dir

    use_cache_dir(cache_dir)  # the run's workspace: one mirror of an s3:// dataset per run
    from mmm_core.steps import register
    from mmm_core.steps.common import log_kfp_metrics

    log_kfp_metrics(metrics, register.run(config.path, checkpoint.path, history.path))


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def ingest_op(
    config_file: str,
    rounds: int,
    min_new_images: int,
    state_uri: str,
    data_root: str,
    data_trial: int,
    seed: int,
    device: str,
    iters_per_round: int,
    lr: float,
    cluster_eps: float,
    cluster_k1: int,
    cluster_k2: int,
    num_memories: int,
    match_cost: str,
    match_assignment: str,
    lambda_cross: float,
    lambda_sca: float,
    eval_every: int,
    mlflow_experiment: str,
    model_name: str,
    overrides: list,
    decision: Output[Artifact],
    snapshot: Output[Artifact],
    config: Output[Artifact],
    manifest: Output[Artifact],
    checkpoint: Output[Artifact],
    history: Output[Artifact],
    metrics: Output[Metrics],
    cache_dir: str = "",
) -> NamedTuple("IngestOutputs", [("train", bool), ("new_images", int)]):
    """Count the images new since the last retraining; when enough, set up a warm start."""
    from collections import namedtuple

    from mmm_core.steps.cache import use_cache_dir

    use_cache_dir(cache_dir)  # the run's workspace: one mirror of an s3:// dataset per run

    from mmm_core.steps import ingest
    from mmm_core.steps import parameters as named
    from mmm_core.steps.common import log_kfp_metrics

    parameters = {name: value for name, value in locals().items() if name in named.PARAMETERS}
    values = ingest.run(
        [config_file],
        named.parameter_overrides(parameters, (0, rounds)) + list(overrides),
        rounds,
        min_new_images,
        state_uri,
        decision.path,
        snapshot.path,
        config.path,
        manifest.path,
        checkpoint.path,
        history.path,
    )
    log_kfp_metrics(metrics, values)
    outputs = namedtuple("IngestOutputs", ["train", "new_images"])
    return outputs(bool(values["train"]), int(values["new_images"]))


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def promote_op(
    min_improvement: float,
    promote_without_champion: bool,
    config: Input[Artifact],
    decision: Input[Artifact],
    snapshot: Input[Artifact],
    initial_checkpoint: Input[Artifact],
    checkpoint: Input[Artifact],
    history: Input[Artifact],
    result: Output[Artifact],
    metrics: Output[Metrics],
    cache_dir: str = "",
):
    """Evaluate new model and champion alike; register; promote if better; commit the state."""
    from mmm_core.steps.cache import use_cache_dir

    use_cache_dir(cache_dir)  # the run's workspace: one mirror of an s3:// dataset per run
    from mmm_core.steps import promote
    from mmm_core.steps.common import log_kfp_metrics

    values = promote.run(
        config.path,
        decision.path,
        snapshot.path,
        initial_checkpoint.path,
        checkpoint.path,
        history.path,
        result.path,
        min_improvement=min_improvement,
        allow_first=promote_without_champion,
    )
    log_kfp_metrics(metrics, values)
