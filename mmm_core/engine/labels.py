"""The per-round pseudo-labels: the cluster step's work, and the diagnostics of labels.

`cluster_round` is the pipeline's cluster step (Jaccard + DBSCAN per modality, plus the CMC
joint clustering in stage 1); it takes the config and hands plain numbers to the kernels.
Nothing here imports torch: the cluster step runs without it (as does the match step's half
of the phase, `mmm_core.engine.match`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmm_core.clustering import cmc_joint_labels, dbscan_labels, jaccard_distance
from mmm_core.config import Config
from mmm_core.engine.targets import RoundTargets, Stage2Targets
from mmm_core.evaluation.diagnostics import (
    correspondence_diagnostics,
    cross_camera_information,
    cross_modality_information,
    pseudo_label_diagnostics,
)

__all__ = [
    "ClusterOutput",
    "NoClustersError",
    "cluster_centres",
    "cluster_round",
    "label_diagnostics",
    "oracle_clusters",
]

log = logging.getLogger(__name__)


class NoClustersError(RuntimeError):
    """DBSCAN found no cluster in a modality: nothing to train on."""


@dataclass
class ClusterOutput:
    """Pseudo-labels of one round (int64, -1 = noise), aligned with the feature rows.

    ``joint_visible`` / ``joint_infrared`` are the CMC joint labels (stage 1 with CMC only),
    numbered over all joint clusters; ``joint_both[c]`` tells whether joint cluster c holds
    both modalities. ``oracle_v2r`` / ``oracle_r2v`` exist only under
    ``train.supervision: oracle`` (stage 2): the true partner cluster, -1 where the identity
    has no image in the other modality.
    """

    labels_visible: np.ndarray
    labels_infrared: np.ndarray
    joint_visible: np.ndarray | None = None
    joint_infrared: np.ndarray | None = None
    joint_both: np.ndarray | None = None
    oracle_v2r: np.ndarray | None = None
    oracle_r2v: np.ndarray | None = None

    def save(self, path: str | Path) -> None:
        arrays = {k: v for k, v in self.__dict__.items() if v is not None}
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> ClusterOutput:
        with np.load(path, allow_pickle=False) as data:
            return cls(**{name: data[name] for name in data.files})


def _intra_labels(features: np.ndarray, cfg: Config, name: str) -> np.ndarray:
    c = cfg.cluster
    # Pairs farther than eps never matter to DBSCAN: not storing them saves memory.
    distances = jaccard_distance(features, c.k1, c.k2, backend=c.knn, max_distance=c.eps)
    labels = dbscan_labels(distances, c.eps, c.min_samples)
    if labels.max(initial=-1) < 0:
        raise NoClustersError(
            f"DBSCAN found no {name} cluster among {len(features)} samples "
            f"(eps={c.eps}, min_samples={c.min_samples}); raise cluster.eps or lower "
            "cluster.min_samples"
        )
    return labels


def oracle_clusters(
    stage: int, true_visible: np.ndarray, true_infrared: np.ndarray, joint: bool
) -> ClusterOutput:
    """The supervised upper bound's "clusters": the true identities.

    Per modality, the sorted distinct ids numbered ``0..C-1``; in stage 1 (with ``joint``)
    joint labels over the sorted union of ids, every identity present in both modalities a
    joint cluster; in stage 2 the true correspondence (``oracle_v2r`` / ``oracle_r2v``).
    """
    true_visible = np.asarray(true_visible)
    true_infrared = np.asarray(true_infrared)
    ids_v, labels_v = np.unique(true_visible, return_inverse=True)
    ids_r, labels_r = np.unique(true_infrared, return_inverse=True)
    out = ClusterOutput(labels_v.astype(np.int64), labels_r.astype(np.int64))
    if stage == 1 and joint:
        ids = np.union1d(ids_v, ids_r)
        out.joint_visible = np.searchsorted(ids, true_visible).astype(np.int64)
        out.joint_infrared = np.searchsorted(ids, true_infrared).astype(np.int64)
        out.joint_both = np.isin(ids, ids_v) & np.isin(ids, ids_r)
    if stage == 2:
        out.oracle_v2r = _partners(ids_v, ids_r)
        out.oracle_r2v = _partners(ids_r, ids_v)
    return out


def _partners(ids: np.ndarray, other: np.ndarray) -> np.ndarray:
    """For each id (sorted), its index in the sorted `other`, -1 when absent."""
    position = np.searchsorted(other, ids).clip(max=max(len(other) - 1, 0))
    found = (len(other) > 0) & (other[position] == ids) if len(other) else np.zeros(len(ids), bool)
    return np.where(found, position, -1).astype(np.int64)


def cluster_round(
    cfg: Config,
    stage: int,
    features_v: np.ndarray,
    features_r: np.ndarray,
    truth: tuple[np.ndarray, np.ndarray] | None = None,
) -> ClusterOutput:
    """Intra-modality pseudo-labels, plus CMC joint labels in stage 1 when enabled.

    Under ``train.supervision: oracle`` the labels are the true identities `truth` (visible,
    infrared ids aligned with the feature rows; `oracle_clusters`). The unsupervised path
    never reads `truth`: callers pass it only for the oracle.
    """
    joint_on = cfg.cluster.joint and cfg.loss.lambda_cmc > 0
    if cfg.train.supervision == "oracle":
        if truth is None:
            raise ValueError("train.supervision=oracle needs the true identities")
        return oracle_clusters(stage, truth[0], truth[1], joint=joint_on)
    out = ClusterOutput(
        _intra_labels(features_v, cfg, "visible"), _intra_labels(features_r, cfg, "infrared")
    )
    if stage == 1 and joint_on:
        c = cfg.cluster
        joint = cmc_joint_labels(
            features_v,
            features_r,
            k1=c.joint_k1,
            k2=c.joint_k2,
            eps=c.joint_eps,
            min_samples=c.min_samples,
            expansion=c.joint_expansion,
            backend=c.knn,
        )
        out.joint_visible = joint.visible_labels
        out.joint_infrared = joint.infrared_labels
        out.joint_both = joint.has_both
    return out


def cluster_centres(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Normalised mean feature of each cluster ``0..C-1``: ``(C, d)`` float32."""
    num = int(labels.max(initial=-1)) + 1
    keep = labels >= 0
    sums = np.zeros((num, features.shape[1]), dtype=np.float64)
    np.add.at(sums, labels[keep], features[keep])
    counts = np.bincount(labels[keep], minlength=num)[:, None]
    means = sums / np.maximum(counts, 1)
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    return (means / np.maximum(norms, 1e-12)).astype(np.float32)


def label_diagnostics(
    targets: RoundTargets,
    clusters: ClusterOutput,
    true_visible: np.ndarray,
    true_infrared: np.ndarray,
    features_visible: np.ndarray | None = None,
    features_infrared: np.ndarray | None = None,
    cameras: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, float]:
    """The round's pseudo-label metrics (SPEC section 4) under the metrics.jsonl names.

    With the round's features also ``oracle_match_accuracy`` and ``cross_nn_accuracy`` (and
    their ``cross_chance`` level): how much cross-modality identity information the features
    carry, whatever the clustering found (`cross_modality_information`). With the
    (visible, infrared) `cameras` too, per modality ``xcam_nn_*`` (a sample's nearest sample
    from another camera is the same person) and ``camera_split_*`` (people seen by several
    cameras whose samples the clustering split; `cross_camera_information`).
    """
    v = pseudo_label_diagnostics(clusters.labels_visible, true_visible, prefix="visible")
    r = pseudo_label_diagnostics(clusters.labels_infrared, true_infrared, prefix="infrared")
    out = {
        "n_clusters_visible": int(v["visible/clusters"]),
        "n_clusters_infrared": int(r["infrared/clusters"]),
        "noise_visible": v["visible/noise_ratio"],
        "noise_infrared": r["infrared/noise_ratio"],
        "ari_visible": v["visible/ari"],
        "ari_infrared": r["infrared/ari"],
        "ari_noise_as_class_visible": v["visible/ari_noise_as_class"],
        "ari_noise_as_class_infrared": r["infrared/ari_noise_as_class"],
        "nmi_visible": v["visible/nmi"],
        "nmi_infrared": r["infrared/nmi"],
        "correspondence_accuracy": None,
    }
    if isinstance(targets, Stage2Targets):
        c = correspondence_diagnostics(
            clusters.labels_visible,
            clusters.labels_infrared,
            true_visible,
            true_infrared,
            targets.v2r,
            targets.r2v,
        )
        out["correspondence_accuracy"] = c["correspondence/v2r_accuracy"]
        out["correspondence_accuracy_r2v"] = c["correspondence/r2v_accuracy"]
        out["unified_ari"] = c["correspondence/unified_ari"]
    elif clusters.joint_visible is not None and targets.joint_visible is not None:
        # Stage 1: the CMC joint clusters are the correspondences (a joint cluster with both
        # modalities pairs its visible and infrared members).
        joint_v = np.asarray(targets.joint_visible)
        joint_r = np.asarray(targets.joint_infrared)
        count = int(max(joint_v.max(initial=-1), joint_r.max(initial=-1))) + 1
        identity = np.arange(count)
        if count:
            c = correspondence_diagnostics(
                joint_v, joint_r, true_visible, true_infrared, identity, identity
            )
            out["correspondence_accuracy"] = c["correspondence/v2r_accuracy"]
            out["unified_ari"] = c["correspondence/unified_ari"]
    if features_visible is not None and features_infrared is not None:
        x = cross_modality_information(
            features_visible, features_infrared, true_visible, true_infrared
        )
        out["oracle_match_accuracy"] = x["xmodal/centroid_match_accuracy"]
        out["cross_nn_accuracy"] = x["xmodal/nn_accuracy"]
        out["cross_chance"] = x["xmodal/chance"]
        if cameras is not None:
            for name, features, true, cams, labels in (
                ("visible", features_visible, true_visible, cameras[0], clusters.labels_visible),
                (
                    "infrared",
                    features_infrared,
                    true_infrared,
                    cameras[1],
                    clusters.labels_infrared,
                ),
            ):
                c = cross_camera_information(features, true, cams, labels)
                out[f"xcam_nn_{name}"] = c["xcam/nn_accuracy"]
                out[f"camera_split_{name}"] = c["xcam/split"]
    return out
