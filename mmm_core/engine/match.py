"""The match step's half of a round's labels: memories, matching and the SCA weights.

`match_round` takes the cluster step's `ClusterOutput`: in stage 1 the memory
initialisations (cluster centres, and the CMC joint centres); in stage 2 the multi-memory
sub-clusters, the matching cost, Hungarian (or greedy) matching and the SCA weights. All of
it in numpy and scipy: like the cluster step, the match step imports no torch.
"""

from __future__ import annotations

import numpy as np

from mmm_core.clustering import JointClustering, joint_centres
from mmm_core.clustering.subcluster import subcluster
from mmm_core.config import Config
from mmm_core.engine.labels import ClusterOutput, cluster_centres
from mmm_core.engine.targets import RoundTargets, Stage1Targets, Stage2Targets
from mmm_core.matching import match_clusters, match_clusters_greedy, memory_cost, sca_weights

__all__ = ["match_round"]


def _joint_targets(
    features_v: np.ndarray, features_r: np.ndarray, clusters: ClusterOutput
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Joint labels renumbered over clusters holding both modalities, and their centres."""
    assert clusters.joint_both is not None
    joint = JointClustering(clusters.joint_visible, clusters.joint_infrared, clusters.joint_both)
    joint_v, joint_r = joint.memory_labels()
    centres = joint_centres(features_v, features_r, joint_v, joint_r, joint.num_cross_modality)
    return joint_v, joint_r, centres


def match_round(
    cfg: Config,
    stage: int,
    features_v: np.ndarray,
    features_r: np.ndarray,
    clusters: ClusterOutput,
    *,
    seed: int,
) -> RoundTargets:
    """Memory initialisations and cross-modality matching for the train step."""
    labels_v, labels_r = clusters.labels_visible, clusters.labels_infrared
    if stage == 1:
        targets = Stage1Targets(
            labels_visible=labels_v,
            labels_infrared=labels_r,
            centres_visible=cluster_centres(features_v, labels_v),
            centres_infrared=cluster_centres(features_r, labels_r),
        )
        if clusters.joint_both is not None:
            joint_v, joint_r, centres = _joint_targets(features_v, features_r, clusters)
            targets.joint_visible, targets.joint_infrared = joint_v, joint_r
            targets.centres_joint = centres
        return targets
    rng = np.random.default_rng(seed)
    k, iters = cfg.memory.num_memories, cfg.memory.kmeans_iters
    memory_v = subcluster(features_v, labels_v, k, iters=iters, rng=rng)
    memory_r = subcluster(features_r, labels_r, k, iters=iters, rng=rng)
    cost = memory_cost(
        memory_v.centres, memory_v.mask, memory_r.centres, memory_r.mask, variant=cfg.match.cost
    )
    if cfg.match.assignment == "hungarian":
        v2r, r2v = match_clusters(cost)
    else:
        v2r, r2v = match_clusters_greedy(cost)
    if clusters.oracle_v2r is not None and clusters.oracle_r2v is not None:
        # The supervised upper bound: the true partner wherever the identity has one.
        v2r = np.where(clusters.oracle_v2r >= 0, clusters.oracle_v2r, v2r)
        r2v = np.where(clusters.oracle_r2v >= 0, clusters.oracle_r2v, r2v)
    weights_v2r, weights_r2v = sca_weights(cost, cfg.match.sca_topk, cfg.match.sca_temperature)
    return Stage2Targets(
        labels_visible=labels_v,
        labels_infrared=labels_r,
        centres_visible=memory_v.centres,
        centres_infrared=memory_r.centres,
        mask_visible=memory_v.mask,
        mask_infrared=memory_r.mask,
        v2r=v2r,
        r2v=r2v,
        weights_v2r=weights_v2r,
        weights_r2v=weights_r2v,
        cost=cost,
    )
