"""Multi-memory bank: up to K sub-cluster memories per cluster (MMLM, stage 2).

``vectors`` has shape ``(C, K, d)`` and ``mask`` ``(C, K)`` marks the valid slots (cluster
``c`` has ``K_c = min(K, |c|)`` of them; each cluster has at least one). Valid slots are
L2-normalised, invalid ones are zero and never used.

Cluster logit: ``z_c(f) = max over valid k of f . m_{c,k} / tau``.

Update: a sample of cluster ``y`` moves the valid slot of ``y`` nearest to it (largest
cosine; the first on ties), ``m <- normalise(mu * m + (1 - mu) * f)``, per sample in batch
order. The slot choice depends on the state left by the cluster's earlier samples, so the
waves run over clusters: wave ``j`` handles, in parallel, every cluster's ``j``-th
occurrence (choose the slot, then move it). Samples of different clusters never touch the
same slot, so the result equals the sequential loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mmm_core.memory.bank import ResizableBuffers, check_labels, momentum_step, occurrence_waves

__all__ = ["MultiMemory", "multi_memory_logits", "slot_similarities"]


def slot_similarities(features: Tensor, memory: Tensor, mask: Tensor | None = None) -> Tensor:
    """Dot products with every slot: ``(B, d), (C, K, d) -> (B, C, K)``, ``-inf`` at invalid slots.

    ``mask`` is a ``(C, K)`` bool tensor of valid slots (None: all valid). The memory is cast
    to the features' dtype.
    """
    clusters, slots, dim = memory.shape
    sims = (features @ memory.to(features.dtype).reshape(clusters * slots, dim).t()).view(
        -1, clusters, slots
    )
    if mask is not None:
        sims = sims.masked_fill(~mask, float("-inf"))
    return sims


def multi_memory_logits(
    features: Tensor, memory: Tensor, mask: Tensor | None, temperature: float
) -> Tensor:
    """Cluster logits ``z_c = max_{valid k} f . m_{c,k} / tau``: ``(B, d) -> (B, C)``.

    Args:
        features: ``(B, d)``, L2-normalised.
        memory: ``(C, K, d)`` slot memories (L2-normalised valid slots).
        mask: ``(C, K)`` bool, valid slots; every cluster needs one (else its logit is -inf).
        temperature: ``tau``.
    """
    return slot_similarities(features, memory, mask).amax(dim=2) / temperature


class MultiMemory(ResizableBuffers):
    """Per-modality multi-memory bank: buffers ``vectors`` ``(C, K, d)``, ``mask`` ``(C, K)``.

    Args:
        num_features: feature dimension ``d``.
        temperature: ``tau`` of the logits.
        momentum: ``mu`` of `update` (weight of the old slot).

    Device and dtype follow the centres given to `reset`. ``state_dict()`` holds ``vectors``
    and ``mask``; loading resizes them.
    """

    vectors: Tensor
    mask: Tensor

    def __init__(self, num_features: int, temperature: float = 0.05, momentum: float = 0.1):
        super().__init__(num_features, temperature, momentum)
        self.register_buffer("vectors", torch.zeros(0, 1, num_features))
        self.register_buffer("mask", torch.zeros(0, 1, dtype=torch.bool))

    @property
    def num_clusters(self) -> int:
        return self.vectors.shape[0]

    @property
    def num_slots(self) -> int:
        return self.vectors.shape[1]

    @torch.no_grad()
    def reset(self, centres: Tensor, mask: Tensor | None = None) -> None:
        """Replace the bank.

        Args:
            centres: ``(C, K, d)`` sub-cluster centres (normalised here; a detached copy).
            mask: ``(C, K)`` bool, valid slots, on the centres' device (None: all valid).
                Each cluster needs at least one valid slot; invalid slots are zeroed.
        """
        if centres.dim() != 3 or centres.shape[2] != self.num_features:
            raise ValueError(
                f"centres must have shape (C, K, {self.num_features}), got {tuple(centres.shape)}"
            )
        if mask is None:
            mask = torch.ones(centres.shape[:2], dtype=torch.bool, device=centres.device)
        if mask.shape != centres.shape[:2]:
            raise ValueError(
                f"mask must have shape {tuple(centres.shape[:2])}, got {tuple(mask.shape)}"
            )
        mask = mask.to(torch.bool)
        if mask.numel() and not bool(mask.any(dim=1).all()):
            empty = (~mask.any(dim=1)).nonzero().squeeze(1).tolist()
            raise ValueError(f"clusters {empty[:10]} have no valid memory slot")
        vectors = F.normalize(centres.detach().clone(), dim=2)
        self.vectors = vectors * mask.unsqueeze(2).to(vectors.dtype)
        self.mask = mask.clone()

    def mean_memories(self) -> Tensor:
        """L2-normalised mean of each cluster's valid slots: ``(C, d)``."""
        weights = self.mask.unsqueeze(2).to(self.vectors.dtype)
        sums = (self.vectors * weights).sum(dim=1)
        return F.normalize(sums / weights.sum(dim=1).clamp(min=1), dim=1)

    @torch.no_grad()
    def update(self, features: Tensor, labels: Tensor) -> None:
        """Move each sample's nearest own-cluster slot, per sample in batch order.

        Args:
            features: ``(B, d)``, L2-normalised, on the bank's device (gradient ignored).
            labels: ``(B,)`` integer cluster indices in ``[0, C)``; negative ones are skipped.
        """
        check_labels(labels, features.shape[0], self.num_clusters)
        features = features.detach().to(self.vectors.dtype)
        labels = labels.long()
        for wave in occurrence_waves(labels):
            clusters = labels[wave]
            wave_features = features[wave]
            slots = self.vectors[clusters]  # (W, K, d), a copy
            sims = torch.einsum("wkd,wd->wk", slots, wave_features)
            nearest = sims.masked_fill(~self.mask[clusters], float("-inf")).argmax(dim=1)
            rows = torch.arange(clusters.numel(), device=clusters.device)
            self.vectors[clusters, nearest] = momentum_step(
                slots[rows, nearest], wave_features, self.momentum
            )
