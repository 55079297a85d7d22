"""Multi-memory initialisation: every cluster split into up to K sub-clusters by k-means.

All clusters are handled at once (batched tensors, padded per group of similar-sized
clusters, masks), in torch, on the device of the features.

Algorithm (spherical k-means, i.e. cosine k-means on L2-normalised features):

* ``K_c = min(k, |c|)`` slots for cluster ``c``; slots ``>= K_c`` are never used.
* initial centres: ``K_c`` distinct members of the cluster, those with the smallest random
  keys; one key per sample is drawn from ``generator`` (on the CPU, so CPU and CUDA runs
  start identically), independent of how clusters are grouped;
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
import torch
import torch.nn.functional as F

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

    centres: torch.Tensor
    mask: torch.Tensor
    assignment: torch.Tensor

    @property
    def num_clusters(self) -> int:
        return int(self.centres.shape[0])

    @property
    def num_slots(self) -> int:
        return int(self.centres.shape[1])


def subcluster(
    features: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    k: int,
    *,
    iters: int = 20,
    generator: torch.Generator | None = None,
) -> SubClusters:
    """Split each cluster into ``min(k, |c|)`` sub-clusters by batched spherical k-means.

    Args:
        features: (N, d) float32, L2-normalised (tensor on any device, or numpy).
        labels: (N,) int cluster ids 0..C-1, -1 for noise; every cluster 0..C-1 must have a
            member.
        k: slots per cluster (K).
        iters: maximum k-means iterations.
        generator: CPU ``torch.Generator`` for the initialisation; ``None`` means seed 0.

    Returns:
        :class:`SubClusters` on the features' device.
    """
    if k < 1 or iters < 1:
        raise ValueError(f"k and iters must be >= 1, got k={k}, iters={iters}")
    features = torch.as_tensor(features)
    if features.ndim != 2:
        raise ValueError(f"features must be (N, d), got shape {tuple(features.shape)}")
    features = features.detach().to(torch.float32)
    device = features.device
    labels_np = np.asarray(torch.as_tensor(labels).cpu(), dtype=np.int64)
    n, dim = features.shape
    if labels_np.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {labels_np.shape}")
    num_clusters = int(labels_np.max()) + 1 if n else 0
    sizes = np.bincount(labels_np[labels_np >= 0], minlength=num_clusters)
    if (sizes == 0).any():
        raise ValueError(f"clusters without members: {np.flatnonzero(sizes == 0)[:10].tolist()}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    keys = torch.rand(n, generator=generator, dtype=torch.float64).numpy()

    centres = torch.zeros(num_clusters, k, dim, dtype=torch.float32, device=device)
    assignment = torch.full((n,), -1, dtype=torch.int64, device=device)
    occupied = torch.zeros(num_clusters, k, dtype=torch.bool, device=device)
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
    return _compact(centres, occupied, assignment, labels_np, device)


def _kmeans_group(
    features: torch.Tensor,
    members: np.ndarray,
    starts: np.ndarray,
    sizes: np.ndarray,
    group: np.ndarray,
    width: int,
    k: int,
    iters: int,
    centres: torch.Tensor,
    assignment: torch.Tensor,
    occupied: torch.Tensor,
) -> None:
    """Batched spherical k-means for the clusters in ``group`` (written into the outputs).

    Every centre is a normalised sum of members, so the iterations run on the clusters' Gram
    matrices: a slot is a 0/1 weight vector ``w`` over the members, its cosine with member
    ``j`` is ``(G w)_j / sqrt(w' G w)``. The features are read twice (Gram, final centres)
    instead of twice per iteration.
    """
    device = features.device
    group_sizes = sizes[group]
    offsets = np.arange(width)[None, :]
    valid_np = offsets < group_sizes[:, None]
    index_np = np.where(valid_np, starts[group][:, None] + offsets, 0)
    sample_index = torch.as_tensor(members[index_np], device=device)  # (g, width)
    valid = torch.as_tensor(valid_np, device=device)
    slots = np.minimum(k, group_sizes)
    slot_valid = torch.as_tensor(np.arange(k)[None, :] < slots[:, None], device=device)
    batch = features[sample_index]  # (g, width, d); padding rows repeat a sample, masked below
    pair_valid = valid[:, :, None] & valid[:, None, :]
    gram = torch.bmm(batch, batch.transpose(1, 2)) * pair_valid
    del pair_valid
    # Initial slots: the first K_c members (members are ordered by their random key).
    weights = torch.zeros(len(group), k, width, dtype=batch.dtype, device=device)
    eye = torch.eye(k, min(k, width), dtype=batch.dtype, device=device)
    weights[:, :, : eye.shape[1]] = eye
    weights *= slot_valid[..., None]
    valid_weights = valid[:, None, :].to(batch.dtype)
    neg_inf = torch.tensor(float("-inf"), dtype=batch.dtype, device=device)

    def assign(slot_weights: torch.Tensor) -> torch.Tensor:
        dots = torch.bmm(gram, slot_weights.transpose(1, 2))  # (g, width, k)
        norms = (slot_weights.transpose(1, 2) * dots).sum(dim=1).clamp_min(1e-30).sqrt()
        sims = torch.where(slot_valid[:, None, :], dots / norms[:, None, :], neg_inf)
        return sims.argmax(dim=2)

    previous = None
    for _ in range(iters):
        labels = assign(weights)
        if previous is not None and torch.equal(labels, previous):
            break
        previous = labels
        one_hot = F.one_hot(labels, k).transpose(1, 2).to(batch.dtype) * valid_weights
        filled = one_hot.sum(dim=2, keepdim=True) > 0
        weights = torch.where(filled, one_hot, weights)  # an emptied slot keeps its centre
    labels = assign(weights)
    one_hot = F.one_hot(labels, k).transpose(1, 2).to(batch.dtype) * valid[:, None, :]
    counts = one_hot.sum(dim=2)
    final = F.normalize(torch.bmm(one_hot, batch), dim=2)  # (g, k, d); empty slots zero
    group_index = torch.as_tensor(group, device=device)
    centres[group_index] = final
    occupied[group_index] = counts > 0
    assignment[sample_index[valid]] = labels[valid]


def _compact(
    centres: torch.Tensor,
    occupied: torch.Tensor,
    assignment: torch.Tensor,
    labels: np.ndarray,
    device: torch.device,
) -> SubClusters:
    """Move occupied slots to the front of each cluster (stable) and renumber assignments."""
    k = centres.shape[1]
    # Stable order: occupied slots first, by slot index.
    order = torch.argsort((~occupied).to(torch.int64) * k + torch.arange(k, device=device), dim=1)
    new_centres = torch.gather(centres, 1, order[..., None].expand_as(centres))
    new_mask = torch.gather(occupied, 1, order)
    rank = torch.argsort(order, dim=1)  # old slot -> new slot
    labels_t = torch.as_tensor(labels, device=device)
    clustered = labels_t >= 0
    new_assignment = assignment.clone()
    new_assignment[clustered] = rank[labels_t[clustered], assignment[clustered]]
    return SubClusters(new_centres, new_mask, new_assignment)
