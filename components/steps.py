"""One component per pipeline step. Each body imports its step and calls ``run`` on paths.

Lightweight components are serialised from source, so every import lives inside the body;
the image (`BASE_IMAGE`) has the ``mmm_core`` package installed.
"""

import os

from kfp import dsl
from kfp.dsl import Artifact, Input, Metrics, Output

BASE_IMAGE = os.environ.get("MMM_BASE_IMAGE", "ghcr.io/mmm-vi-reid/mmm-vi-reid:0.1.0")


@dsl.component(base_image=BASE_IMAGE)
def start_op(
    config_file: str,
    stage1_rounds: int,
    stage2_rounds: int,
    data_root: str,
    data_trial: str,
    seed: str,
    device: str,
    iters_per_round: str,
    lr: str,
    cluster_eps: str,
    cluster_k1: str,
    cluster_k2: str,
    joint_eps: str,
    num_memories: str,
    match_cost: str,
    match_assignment: str,
    lambda_cmc: str,
    lambda_cross: str,
    lambda_sca: str,
    eval_every: str,
    tracking_enabled: str,
    mlflow_experiment: str,
    model_name: str,
    overrides: list,
    config: Output[Artifact],
    manifest: Output[Artifact],
    checkpoint: Output[Artifact],
    history: Output[Artifact],
    metrics: Output[Metrics],
):
    """Resolve the config, read the dataset into a manifest, initialise the network."""
    from mmm_core.steps import start
    from mmm_core.steps.common import log_kfp_metrics

    parameters = {name: value for name, value in locals().items() if name in start.PARAMETER_KEYS}
    values = start.run(
        [config_file],
        start.parameter_overrides(parameters, (stage1_rounds, stage2_rounds)) + list(overrides),
        config.path,
        manifest.path,
        checkpoint.path,
        history.path,
    )
    log_kfp_metrics(metrics, values)


@dsl.component(base_image=BASE_IMAGE)
def extract_op(
    config: Input[Artifact],
    manifest: Input[Artifact],
    checkpoint: Input[Artifact],
    features: Output[Artifact],
    metrics: Output[Metrics],
):
    """Train features per modality (flip-averaged, L2-normalised), in manifest order."""
    from mmm_core.steps import extract
    from mmm_core.steps.common import log_kfp_metrics

    log_kfp_metrics(
        metrics, extract.run(config.path, manifest.path, checkpoint.path, features.path)
    )


@dsl.component(base_image=BASE_IMAGE)
def cluster_op(
    round_index: int,
    config: Input[Artifact],
    features: Input[Artifact],
    labels: Output[Artifact],
    metrics: Output[Metrics],
):
    """Jaccard + DBSCAN pseudo-labels per modality (+ CMC joint labels in stage 1)."""
    from mmm_core.steps import cluster
    from mmm_core.steps.common import log_kfp_metrics

    log_kfp_metrics(metrics, cluster.run(config.path, features.path, round_index, labels.path))


@dsl.component(base_image=BASE_IMAGE)
def match_op(
    round_index: int,
    config: Input[Artifact],
    manifest: Input[Artifact],
    features: Input[Artifact],
    labels: Input[Artifact],
    targets: Output[Artifact],
    metrics: Output[Metrics],
):
    """Memories, multi-memory Hungarian matching, SCA weights, pseudo-label diagnostics."""
    from mmm_core.steps import match
    from mmm_core.steps.common import log_kfp_metrics

    values = match.run(
        config.path, manifest.path, features.path, labels.path, round_index, targets.path
    )
    log_kfp_metrics(metrics, values)


@dsl.component(base_image=BASE_IMAGE)
def train_op(
    round_index: int,
    config: Input[Artifact],
    manifest: Input[Artifact],
    checkpoint: Input[Artifact],
    targets: Input[Artifact],
    new_checkpoint: Output[Artifact],
    metrics: Output[Metrics],
):
    """One round of training iterations; writes the next checkpoint."""
    from mmm_core.steps import train
    from mmm_core.steps.common import log_kfp_metrics

    values = train.run(
        config.path, manifest.path, checkpoint.path, targets.path, round_index, new_checkpoint.path
    )
    log_kfp_metrics(metrics, values)


@dsl.component(base_image=BASE_IMAGE)
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
):
    """Evaluate when due (eval.every, last round) and append the round's row to the history."""
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


@dsl.component(base_image=BASE_IMAGE)
def register_op(
    config: Input[Artifact],
    checkpoint: Input[Artifact],
    history: Input[Artifact],
    metrics: Output[Metrics],
):
    """Log the final model and history to the run's MLflow run; register it as "candidate"."""
    from mmm_core.steps import register
    from mmm_core.steps.common import log_kfp_metrics

    log_kfp_metrics(metrics, register.run(config.path, checkpoint.path, history.path))
