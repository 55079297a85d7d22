"""Cross-Modality Clustering (CMC): joint DBSCAN over both modalities.

The visible and infrared features are stacked ``[F^v; F^r]``; the Jaccard distance uses the
modality-balanced query expansion (see :mod:`mmm_core.clustering.jaccard`), DBSCAN gives the
joint pseudo-labels, and joint clusters that contain both modalities get a joint memory
whose centre is the normalised mean of (mean of its visible members, mean of its infrared
members).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from .dbscan import dbscan_labels
from .jaccard import jaccard_distance
from .knn import Backend

logger = logging.getLogger(__name__)

__all__ = ["JointClustering", "cmc_joint_labels"]


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

    def centres(
        self,
        visible_features: np.ndarray | torch.Tensor,
        infrared_features: np.ndarray | torch.Tensor,
    ) -> torch.Tensor:
        """Joint memory centres, one per both-modality cluster, in memory-label order.

        Args:
            visible_features: (N_v, d) features, same order as ``visible_labels``.
            infrared_features: (N_r, d) features, same order as ``infrared_labels``.

        Returns:
            (C_both, d) float32 tensor on the features' device: normalised mean of (mean of
            the cluster's visible members, mean of its infrared members).
        """
        visible = torch.as_tensor(visible_features, dtype=torch.float32)
        infrared = torch.as_tensor(infrared_features, dtype=torch.float32, device=visible.device)
        visible_memory, infrared_memory = self.memory_labels()
        count = self.num_cross_modality
        means = [
            _cluster_means(feats, torch.as_tensor(labels, device=feats.device), count)
            for feats, labels in ((visible, visible_memory), (infrared, infrared_memory))
        ]
        return torch.nn.functional.normalize((means[0] + means[1]) / 2, dim=1)


def _cluster_means(features: torch.Tensor, labels: torch.Tensor, count: int) -> torch.Tensor:
    keep = labels >= 0
    sums = torch.zeros(count, features.shape[1], dtype=features.dtype, device=features.device)
    sums.index_add_(0, labels[keep], features[keep])
    sizes = torch.bincount(labels[keep], minlength=count).clamp_min(1)
    return sums / sizes[:, None].to(features.dtype)


def cmc_joint_labels(
    visible_features: np.ndarray | torch.Tensor,
    infrared_features: np.ndarray | torch.Tensor,
    k1: int = 40,
    k2: int = 32,
    eps: float = 0.6,
    min_samples: int = 4,
    *,
    backend: Backend = "auto",
) -> JointClustering:
    """CMC joint pseudo-labels by DBSCAN on the modality-balanced Jaccard distance.

    Args:
        visible_features: (N_v, d) float32, L2-normalised.
        infrared_features: (N_r, d) float32, L2-normalised (same device/type as visible).
        k1, k2: Jaccard neighbour-list and query-expansion depths (SYSU 40 / 32).
        eps, min_samples: DBSCAN parameters.
        backend: kNN backend.

    Returns:
        :class:`JointClustering` (labels numbered by smallest member index in the stacked
        order, visible first).
    """
    n_visible = int(visible_features.shape[0])
    if isinstance(visible_features, torch.Tensor):
        stacked = torch.cat(
            [visible_features, torch.as_tensor(infrared_features).to(visible_features)]
        )
    else:
        stacked = np.concatenate([np.asarray(visible_features), np.asarray(infrared_features)])
    modality = np.zeros(stacked.shape[0], dtype=bool)
    modality[:n_visible] = True
    dist = jaccard_distance(
        stacked, k1, k2, modality=modality, backend=backend, max_distance=eps if eps < 1 else None
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
