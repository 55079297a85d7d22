"""DBSCAN on a sparse (or dense) precomputed distance matrix, with deterministic labels."""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

logger = logging.getLogger(__name__)

__all__ = ["dbscan_labels", "renumber_labels"]


def renumber_labels(labels: np.ndarray) -> np.ndarray:
    """Relabel clusters 0..C-1 in the order of their smallest member index; -1 stays -1."""
    labels = np.asarray(labels, dtype=np.int64)
    out = np.full(labels.shape, -1, dtype=np.int64)
    clustered = labels >= 0
    if not clustered.any():
        return out
    values, first = np.unique(labels[clustered], return_index=True)
    rank = np.empty(values.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(values.size)
    out[clustered] = rank[np.searchsorted(values, labels[clustered])]
    return out


def dbscan_labels(
    dist: sp.spmatrix | sp.sparray | np.ndarray, eps: float, min_samples: int
) -> np.ndarray:
    """DBSCAN pseudo-labels from precomputed distances.

    Args:
        dist: (N, N) distances. Sparse: stored entries (explicit zeros included) are the
            candidate neighbours and an absent entry means 1.0 (the convention of
            :func:`mmm_core.clustering.jaccard.jaccard_distance`). Dense: every entry counts.
        eps: neighbourhood radius (``d <= eps``), > 0.
        min_samples: neighbours (the point itself included) that make a core point.

    Returns:
        (N,) int64 labels, -1 for noise, clusters numbered 0..C-1 by their smallest member
        index.

    With a sparse input, handing sklearn only the stored entries is exact because an absent
    entry (1.0) is farther than any ``eps < 1``. For ``eps >= 1`` every pair is a neighbour:
    all points form one cluster when ``N >= min_samples``, otherwise all are noise.
    """
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if min_samples < 1:
        raise ValueError(f"min_samples must be >= 1, got {min_samples}")
    n = dist.shape[0]
    if dist.ndim != 2 or dist.shape[1] != n:
        raise ValueError(f"dist must be square (N, N), got shape {dist.shape}")
    if n == 0:
        return np.empty(0, dtype=np.int64)
    if sp.issparse(dist):
        if eps >= 1.0:
            logger.warning("eps = %s >= 1: absent entries (1.0) are neighbours; one cluster", eps)
            fill = 0 if n >= min_samples else -1
            return np.full(n, fill, dtype=np.int64)
        graph = sp.csr_matrix(dist, dtype=np.float64)
        graph.sum_duplicates()
        # Keep the neighbours only (explicit zeros included): smaller input, same result.
        within = graph.data <= eps
        rows = np.repeat(np.arange(n), np.diff(graph.indptr))[within]
        graph = sp.csr_matrix((graph.data[within], (rows, graph.indices[within])), shape=(n, n))
        dist = graph
    else:
        dist = np.asarray(dist, dtype=np.float64)
    from sklearn.cluster import DBSCAN  # here: scikit-learn takes 1-2 s to import

    model = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed")
    labels = model.fit_predict(dist)
    return renumber_labels(labels)
