"""Cross-Modality Clustering (CMC): joint DBSCAN over both modalities.

The visible and infrared features are stacked ``[F^v; F^r]``; the Jaccard distance uses the
modality-balanced query expansion (see :mod:`mmm_core.clustering.jaccard`), DBSCAN gives the
joint pseudo-labels, and joint clusters that contain both modalities get a joint memory
whose centre is ``normalise(mean of its visible members + mean of its infrared members)``
(`joint_centres`, the one function training uses).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .dbscan import dbscan_labels
from .jaccard import jaccard_distance
from .knn import Backend, is_tensor

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

__all__ = ["JointClustering", "cmc_joint_labels", "joint_centres"]


@dataclass(frozen=True)
class JointClustering:
    """Joint pseudo-labels of both modalities.

    Attributes:
        visible_labels: (N_v,) int64 joint cluster of each visible sample, -1 for noise.
        infrared_labels: (N_r,) int64 joint cluster of each infrared sample, -1 for noise.
        has_both: (C,) bool, whether joint cluster c has members of both modalities.
    """

    visible_labels: np.ndarray
    infrared_labels: np.ndarray
    has_both: np.ndarray

    @property
    def num_clusters(self) -> int:
        return int(self.has_both.shape[0])

    @property
    def num_cross_modality(self) -> int:
        return int(self.has_both.sum())

    def memory_labels(self) -> tuple[np.ndarray, np.ndarray]:
        """Labels into the joint memory: the both-modality clusters renumbered 0..C_both-1
        (in joint-label order); samples of single-modality clusters and noise get -1."""
        index = np.full(self.num_clusters + 1, -1, dtype=np.int64)  # last slot: noise
        index[:-1][self.has_both] = np.arange(self.num_cross_modality)
        return index[self.visible_labels], index[self.infrared_labels]


def joint_centres(
    visible_features: np.ndarray,
    infrared_features: np.ndarray,
    visible_labels: np.ndarray,
    infrared_labels: np.ndarray,
    count: int,
) -> np.ndarray:
    """The CMC joint memory's centres: ``normalise(mean_v + mean_r)`` per joint cluster.

    Args:
        visible_features: (N_v, d) float features of the visible samples.
        infrared_features: (N_r, d) float features of the infrared samples.
        visible_labels, infrared_labels: (N_v,), (N_r,) int64 joint-memory labels in
            ``0..count-1``, -1 = no joint memory (see `JointClustering.memory_labels`). Every
            cluster must have members of both modalities.
        count: number of joint memories.

    Returns:
        (count, d) float32: for cluster c, the mean of its visible members plus the mean of
        its infrared members, L2-normalised. Each modality weighs the same whatever its
        number of members (SPEC section 5).
    """
    means = []
    for features, labels in (
        (visible_features, visible_labels),
        (infrared_features, infrared_labels),
    ):
        labels = np.asarray(labels, dtype=np.int64)
        keep = labels >= 0
        sums = np.zeros((count, features.shape[1]), dtype=np.float64)
        np.add.at(sums, labels[keep], np.asarray(features, dtype=np.float64)[keep])
        sizes = np.bincount(labels[keep], minlength=count)
        if count and sizes.min() == 0:
            raise ValueError("every joint cluster needs members of both modalities")
        means.append(sums / np.maximum(sizes, 1)[:, None])
    centres = means[0] + means[1]
    centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    return centres.astype(np.float32)


def cmc_joint_labels(
    visible_features: np.ndarray | torch.Tensor,
    infrared_features: np.ndarray | torch.Tensor,
    k1: int = 40,
    k2: int = 32,
    eps: float = 0.6,
    min_samples: int = 4,
    *,
    expansion: str = "balanced",
    backend: Backend = "auto",
) -> JointClustering:
    """CMC joint pseudo-labels by DBSCAN on the modality-balanced Jaccard distance.

    Args:
        visible_features: (N_v, d) float32, L2-normalised.
        infrared_features: (N_r, d) float32, L2-normalised (same device/type as visible).
        k1, k2: Jaccard neighbour-list and query-expansion depths (SYSU 40 / 32).
        eps, min_samples: DBSCAN parameters.
        expansion: the modality-balanced query expansion, ``"balanced"`` or ``"released"``
            (`mmm_core.clustering.jaccard`).
        backend: kNN backend.

    Returns:
        :class:`JointClustering` (labels numbered by smallest member index in the stacked
        order, visible first).
    """
    n_visible = int(visible_features.shape[0])
    if is_tensor(visible_features):
        import torch

        stacked = torch.cat(
            [visible_features, torch.as_tensor(infrared_features).to(visible_features)]
        )
    else:
        stacked = np.concatenate([np.asarray(visible_features), np.asarray(infrared_features)])
    modality = np.zeros(stacked.shape[0], dtype=bool)
    modality[:n_visible] = True
    dist = jaccard_distance(
        stacked,
        k1,
        k2,
        modality=modality,
        joint_expansion=expansion,
        backend=backend,
        max_distance=eps if eps < 1 else None,
    )
    labels = dbscan_labels(dist, eps, min_samples)
    visible_labels, infrared_labels = labels[:n_visible], labels[n_visible:]
    count = int(labels.max()) + 1 if labels.size else 0
    in_visible = np.bincount(visible_labels[visible_labels >= 0], minlength=count) > 0
    in_infrared = np.bincount(infrared_labels[infrared_labels >= 0], minlength=count) > 0
    result = JointClustering(visible_labels, infrared_labels, in_visible & in_infrared)
    logger.debug(
        "CMC: %d joint clusters, %d with both modalities",
        result.num_clusters,
        result.num_cross_modality,
    )
    return result
