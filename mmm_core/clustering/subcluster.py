"""Multi-memory initialisation: every cluster split into up to K sub-clusters by k-means.

All clusters are handled at once (batched arrays, padded per group of similar-sized
clusters, masks), in numpy, float32: the match step runs it without importing torch.

Algorithm (spherical k-means, i.e. cosine k-means on L2-normalised features):

* ``K_c = min(k, |c|)`` slots for cluster ``c``; slots ``>= K_c`` are never used.
* initial centres: ``K_c`` distinct members of the cluster, those with the smallest random
  keys; one key per sample is drawn from ``rng`` (a numpy ``Generator``), independent of
  how clusters are grouped;
* each iteration assigns every member to the slot of largest cosine (ties: lowest slot), then
  sets each slot to the normalised mean of its members. A slot left without members keeps
  its previous centre (deterministic); iterations stop early once no assignment changes;
* the result keeps the occupied slots only, in their slot order, moved to the front:
  ``mask[c, :K'_c]`` is True with ``K'_c <= K_c`` (``K'_c < K_c`` only when the cluster has
  fewer than ``K_c`` distinct features), every centre is the normalised mean of the members
  assigned to it, and masked slots hold zeros.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["SubClusters", "subcluster"]

_GROUP_ELEMENTS = 1 << 24  # padded (clusters x members x dim) floats per batch (64 MB)
_GROUP_WIDTH_GROWTH = 1.3  # a batch's largest cluster is at most 1.3x its smallest (or 8)


@dataclass(frozen=True)
class SubClusters:
    """The result of `subcluster`: up to K sub-cluster centres per cluster (the initial
    memories of a `mmm_core.memory.MultiMemory` bank).

    Attributes:
        centres: (C, K, d) float32, L2-normalised valid slots, zeros elsewhere.
        mask: (C, K) bool, valid slots (a prefix of each row; at least one per cluster).
        assignment: (N,) int64 slot of each sample within its cluster, -1 for noise.
    """

    centres: np.ndarray
    mask: np.ndarray
    assignment: np.ndarray

    @property
    def num_clusters(self) -> int:
        return int(self.centres.shape[0])

    @property
    def num_slots(self) -> int:
        return int(self.centres.shape[1])


def _normalise(x: np.ndarray, axis: int) -> np.ndarray:
    """``x / max(||x||, 1e-12)`` along `axis` (zero rows stay zero)."""
    norms = np.sqrt(np.sum(x * x, axis=axis, keepdims=True))
    return x / np.maximum(norms, np.float32(1e-12))


def subcluster(
    features: np.ndarray,
    labels: np.ndarray,
    k: int,
    *,
    iters: int = 20,
    rng: np.random.Generator | None = None,
) -> SubClusters:
    """Split each cluster into ``min(k, |c|)`` sub-clusters by batched spherical k-means.

    Args:
        features: (N, d) float32, L2-normalised.
        labels: (N,) int cluster ids 0..C-1, -1 for noise; every cluster 0..C-1 must have a
            member.
        k: slots per cluster (K).
        iters: maximum k-means iterations.
        rng: numpy ``Generator`` for the initialisation (N draws); ``None`` means seed 0.

    Returns:
        :class:`SubClusters` (numpy arrays).
    """
    if k < 1 or iters < 1:
        raise ValueError(f"k and iters must be >= 1, got k={k}, iters={iters}")
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2:
        raise ValueError(f"features must be (N, d), got shape {tuple(features.shape)}")
    labels_np = np.asarray(labels, dtype=np.int64)
    n, dim = features.shape
    if labels_np.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {labels_np.shape}")
    num_clusters = int(labels_np.max()) + 1 if n else 0
    sizes = np.bincount(labels_np[labels_np >= 0], minlength=num_clusters)
    if (sizes == 0).any():
        raise ValueError(f"clusters without members: {np.flatnonzero(sizes == 0)[:10].tolist()}")
    if rng is None:
        rng = np.random.default_rng(0)
    keys = rng.random(n)

    centres = np.zeros((num_clusters, k, dim), dtype=np.float32)
    assignment = np.full(n, -1, dtype=np.int64)
    occupied = np.zeros((num_clusters, k), dtype=bool)
    if num_clusters == 0:
        return SubClusters(centres, occupied, assignment)

    # Members of each cluster ordered by key: the first K_c are the initial centres.
    clustered = np.flatnonzero(labels_np >= 0)
    members = clustered[np.lexsort((keys[clustered], labels_np[clustered]))]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    by_size = np.argsort(sizes, kind="stable")
    position = 0
    while position < num_clusters:
        width = int(sizes[by_size[position]])
        widest = max(8, int(_GROUP_WIDTH_GROWTH * width))
        count = 1
        # Grow the group while the padded batch stays within budget and padding stays
        # small (sizes ascend).
        while position + count < num_clusters:
            next_width = int(sizes[by_size[position + count]])
            if (count + 1) * next_width * dim > _GROUP_ELEMENTS or next_width > widest:
                break
            width = next_width
            count += 1
        group = by_size[position : position + count]
        _kmeans_group(
            features, members, starts, sizes, group, width, k, iters, centres, assignment, occupied
        )
        position += count
    return _compact(centres, occupied, assignment, labels_np)


def _kmeans_group(
    features: np.ndarray,
    members: np.ndarray,
    starts: np.ndarray,
    sizes: np.ndarray,
    group: np.ndarray,
    width: int,
    k: int,
    iters: int,
    centres: np.ndarray,
    assignment: np.ndarray,
    occupied: np.ndarray,
) -> None:
    """Batched spherical k-means for the clusters in ``group`` (written into the outputs).

    Every centre is a normalised sum of members, so the iterations run on the clusters' Gram
    matrices: a slot is a 0/1 weight vector ``w`` over the members, its cosine with member
    ``j`` is ``(G w)_j / sqrt(w' G w)``. The features are read twice (Gram, final centres)
    instead of twice per iteration.
    """
    group_sizes = sizes[group]
    offsets = np.arange(width)[None, :]
    valid = offsets < group_sizes[:, None]  # (g, width)
    sample_index = members[np.where(valid, starts[group][:, None] + offsets, 0)]
    slots = np.minimum(k, group_sizes)
    slot_valid = np.arange(k)[None, :] < slots[:, None]  # (g, k)
    batch = features[sample_index]  # (g, width, d); padding rows repeat a sample, masked below
    gram = np.matmul(batch, batch.transpose(0, 2, 1))
    gram *= valid[:, :, None] & valid[:, None, :]
    # Initial slots: the first K_c members (members are ordered by their random key).
    weights = np.zeros((len(group), k, width), dtype=np.float32)
    first = min(k, width)
    weights[:, np.arange(first), np.arange(first)] = 1.0
    weights *= slot_valid[..., None]
    valid_weights = valid[:, None, :].astype(np.float32)
    identity = np.eye(k, dtype=np.float32)

    def assign(slot_weights: np.ndarray) -> np.ndarray:
        dots = np.matmul(gram, slot_weights.transpose(0, 2, 1))  # (g, width, k)
        norms = np.sqrt(np.maximum(np.sum(slot_weights.transpose(0, 2, 1) * dots, axis=1), 1e-30))
        sims = np.where(slot_valid[:, None, :], dots / norms[:, None, :], -np.inf)
        return sims.argmax(axis=2)  # ties: the lowest slot

    previous = None
    for _ in range(iters):
        labels = assign(weights)
        if previous is not None and np.array_equal(labels, previous):
            break
        previous = labels
        one_hot = identity[labels].transpose(0, 2, 1) * valid_weights  # (g, k, width)
        filled = one_hot.sum(axis=2, keepdims=True) > 0
        weights = np.where(filled, one_hot, weights)  # an emptied slot keeps its centre
    labels = assign(weights)
    one_hot = identity[labels].transpose(0, 2, 1) * valid_weights
    counts = one_hot.sum(axis=2)
    centres[group] = _normalise(np.matmul(one_hot, batch), axis=2)  # empty slots stay zero
    occupied[group] = counts > 0
    assignment[sample_index[valid]] = labels[valid]


def _compact(
    centres: np.ndarray, occupied: np.ndarray, assignment: np.ndarray, labels: np.ndarray
) -> SubClusters:
    """Move occupied slots to the front of each cluster (stable) and renumber assignments."""
    k = centres.shape[1]
    # Stable order: occupied slots first, by slot index (the keys are distinct).
    order = np.argsort((~occupied).astype(np.int64) * k + np.arange(k), axis=1)
    new_centres = np.take_along_axis(centres, order[..., None], axis=1)
    new_mask = np.take_along_axis(occupied, order, axis=1)
    rank = np.argsort(order, axis=1)  # old slot -> new slot
    clustered = labels >= 0
    new_assignment = assignment.copy()
    new_assignment[clustered] = rank[labels[clustered], assignment[clustered]]
    return SubClusters(new_centres, new_mask, new_assignment)
