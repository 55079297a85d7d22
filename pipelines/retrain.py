"""The retraining pipeline: new images -> warm start from the champion -> stage-2 rounds -> promote.

Tasks: ``ingest`` lists the dataset root (``s3://bucket/prefix`` in MinIO, or a path/PVC),
counts the images new since the last finished retraining and decides whether to train
(``min_new_images``); when it does, it mirrors the data and writes the config, the manifest
of all training images and a warm-start checkpoint holding the weights of the model that
alias ``champion`` points at in the MLflow registry (the config's initialisation when there
is no champion yet). Then `rounds` stage-2 rounds (extract, cluster, match, train, evaluate;
stage 1 is not repeated: the champion already has cross-modality structure), and
``promote``: evaluate the new model and the champion on the same protocol in one step,
register the new version (alias ``candidate``), move ``champion`` only when mAP improves by
more than ``min_improvement``, and commit the ingest snapshot as the state of what has been
consumed. Details: `mmm_core.steps.ingest`, `mmm_core.steps.promote`.

Skipping. When ingest decides not to train, every later task still runs but does nothing: the
round steps get ``active=False`` (the ingest task's ``train`` output) and write empty
outputs, promote only reports. ``dsl.If`` would skip the pods on a cluster, but the local
runner of kfp 2.16 never enters a ``dsl.If`` branch (its condition evaluator cannot read
``inputs.parameter_values[...]`` and takes the condition as false), so the same DAG could
not be tested locally; a no-op run costs a few seconds per task.

The number of rounds is fixed at compile time (`build_retrain_pipeline` calls the round
pipeline of `pipelines.training` once per round); everything else is a run-time parameter
described in the KFP UI.
Resources, retries and caching come from `pipelines.training.apply_resources`: ingest as
start (CPU), promote as evaluate (one GPU); neither is cached (they read a changing dataset
and registry). A recurring run is created by ``mmm schedule`` (`pipelines.schedule`).
"""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kfp import dsl

from components import ingest_op, promote_op
from pipelines.kube import dataset_cache_dir, pipeline_config
from pipelines.training import (
    apply_resources,
    build_round_pipeline,
    chain_rounds,
    named_parameters,
)

__all__ = ["DEFAULT_ROUNDS", "build_retrain_pipeline", "run_local"]

DEFAULT_ROUNDS = 3


def build_retrain_pipeline(
    rounds: int = DEFAULT_ROUNDS, name: str | None = None
) -> Callable[..., object]:
    """The retraining pipeline with `rounds` stage-2 rounds (one round definition, called
    `rounds` times)."""
    if rounds < 1:
        raise ValueError(f"retraining needs at least one round, got {rounds}")
    round_pipeline = build_round_pipeline()
    cache_dir = dataset_cache_dir()

    @dsl.pipeline(
        name=name or f"mmm-retrain-{rounds}",
        pipeline_config=pipeline_config(),
        description=(
            "Scheduled retraining of Multi-Memory Matching: count the images new under the "
            f"dataset root; when enough arrived, warm-start from the champion, run {rounds} "
            "MMLM + SCA rounds, and promote the new model to champion only when it beats the "
            "champion on the same protocol."
        ),
    )
    def retrain(
        config_file: str = "configs/sysu.yaml",
        data_root: str = "",
        min_new_images: int = 100,
        state_uri: str = "",
        min_improvement: float = 0.0,
        promote_without_champion: bool = False,
        model_name: str = "",
        mlflow_experiment: str = "",
        data_trial: int = 0,
        seed: int = -1,
        device: str = "",
        iters_per_round: int = 0,
        lr: float = 0.0,
        cluster_eps: float = 0.0,
        cluster_k1: int = 0,
        cluster_k2: int = 0,
        num_memories: int = 0,
        match_cost: str = "",
        match_assignment: str = "",
        lambda_cross: float = -1.0,
        lambda_sca: float = -1.0,
        eval_every: int = -1,
        overrides: list = [],  # noqa: B006 - KFP reads the default from the signature
    ) -> dsl.Artifact:
        """Retrain on new images when enough arrived; return the promote result (JSON).

        Args:
            config_file: YAML config inside the image (configs/sysu.yaml, ...); the other
                parameters override it. Stage-1 rounds are set to 0 and tracking is on.
            data_root: the camera data: s3://bucket/prefix (MinIO) or a path (PVC); empty =
                config's. New images are listed here.
            min_new_images: train only when at least this many images are new or changed
                since the last finished retraining; fewer: the run does nothing and they stay
                pending. 0 forces a run.
            state_uri: where the list of consumed images is kept; empty =
                <data_root>/.mmm/retrain-<model name>.json. Needs write access.
            min_improvement: promote to champion only when the new mAP exceeds the
                champion's (both evaluated now, same test set and trials) by more than this.
            promote_without_champion: with no champion yet, make this stage-2-only run (from
                the config's initial weights) the first champion; off: only a full training
                run founds the champion line.
            model_name: registered model whose champion is warm-started from and promoted;
                empty = config's.
            mlflow_experiment: MLflow experiment of the run; empty = config's.
            data_trial: RegDB trial 1..10; 0 = config's.
            seed: the one seed of the run; -1 = config's.
            device: auto, cpu, cuda or cuda:N; empty = config's.
            iters_per_round: training iterations per round; 0 = config's.
            lr: Adam learning rate of the retraining rounds; 0 = config's.
            cluster_eps: DBSCAN radius on the Jaccard distance, per modality; 0 = config's.
            cluster_k1: Jaccard k1 (neighbours) per modality; 0 = config's.
            cluster_k2: Jaccard k2 (query expansion) per modality; 0 = config's.
            num_memories: K sub-cluster memories per cluster; 0 = config's.
            match_cost: chamfer, one_sided or centroid; empty = config's.
            match_assignment: hungarian or greedy; empty = config's.
            lambda_cross: weight of the cross-modality loss; -1 = config's.
            lambda_sca: weight of soft cluster-level alignment; -1 = config's.
            eval_every: evaluate every N rounds (0 = last round only); -1 = config's.
            overrides: further key.path=value config overrides, e.g. ["memory.momentum=0.2"].
        """
        ingest = ingest_op(
            config_file=config_file,
            rounds=rounds,
            min_new_images=min_new_images,
            state_uri=state_uri,
            overrides=overrides,
            cache_dir=cache_dir,
            **named_parameters(locals()),
        )
        apply_resources(ingest, "start", "ingest new images")
        ingest.set_caching_options(False)
        config = ingest.outputs["config"]
        manifest = ingest.outputs["manifest"]
        checkpoint, history = chain_rounds(
            round_pipeline,
            rounds,
            lambda r: f"retrain round {r}",
            config,
            manifest,
            ingest.outputs["checkpoint"],
            ingest.outputs["history"],
            active=ingest.outputs["train"],
        )
        promote = promote_op(
            min_improvement=min_improvement,
            promote_without_champion=promote_without_champion,
            config=config,
            decision=ingest.outputs["decision"],
            snapshot=ingest.outputs["snapshot"],
            initial_checkpoint=ingest.outputs["checkpoint"],
            checkpoint=checkpoint,
            history=history,
            cache_dir=cache_dir,
        )
        apply_resources(promote, "evaluate", "evaluate and promote")
        promote.set_caching_options(False)
        return promote.outputs["result"]

    return retrain


def run_local(
    config_file: str | Path,
    pipeline_root: str | Path,
    rounds: int = 1,
    **parameters: Any,
) -> dict[str, Any]:
    """Run the retraining pipeline with `kfp.local.SubprocessRunner`; return promote's result.

    Every step is a subprocess of this Python environment (no cluster, no Docker). MLflow is
    ``tracking.uri`` of the config or $MLFLOW_TRACKING_URI; an ``s3://`` data root needs the
    MINIO_* variables. `parameters` are the pipeline's run-time parameters.
    """
    from pipelines.local import init_runner

    init_runner(Path(pipeline_root).resolve())
    task = build_retrain_pipeline(rounds)(config_file=str(config_file), **parameters)
    return json.loads(Path(task.output.path).read_text())
