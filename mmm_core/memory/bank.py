"""Single-memory cluster bank (one L2-normalised centre per pseudo-identity).

The memory is explicit state: the engine calls `ClusterMemory.reset` with the new cluster
centres each round and `ClusterMemory.update` after each ``optimizer.step()``. Nothing
happens inside autograd.

Update rule (cluster contrast's hard momentum update, per sample in batch order):
``m_y <- normalise(mu * m_y + (1 - mu) * f)``. Because of the renormalisation after every
step, two samples of one cluster do not commute into a closed form, so the batch is split
into *waves* (`occurrence_waves`): wave ``j`` updates in parallel every cluster's ``j``-th
occurrence in the batch. Waves number the largest multiplicity of a label in the batch
(K instances per identity for a P x K sampler), and the result equals the sequential
per-sample loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ClusterMemory", "ResizableBuffers", "check_labels", "momentum_step", "occurrence_waves"]


def momentum_step(old: Tensor, new: Tensor, momentum: float) -> Tensor:
    """The memory update's blend: ``normalise(momentum * old + (1 - momentum) * new)``, row-wise."""
    return F.normalize(momentum * old + (1.0 - momentum) * new, dim=1)


def occurrence_waves(labels: Tensor) -> list[Tensor]:
    """Group the positions of valid labels (``>= 0``) by occurrence rank.

    Args:
        labels: ``(B,)`` integer tensor; negative labels are skipped.

    Returns:
        A list of ``(W_j,)`` int64 position tensors (on ``labels``' device). Wave ``j`` holds,
        for every label occurring more than ``j`` times, the position of its ``j``-th
        occurrence (0-based, in batch order). Labels within a wave are distinct; the list is
        empty when no label is valid.
    """
    positions = (labels >= 0).nonzero().squeeze(1)
    if positions.numel() == 0:
        return []
    valid = labels[positions]
    order = torch.argsort(valid, stable=True)
    sorted_labels = valid[order]
    index = torch.arange(sorted_labels.numel(), device=labels.device)
    starts = torch.ones_like(sorted_labels, dtype=torch.bool)
    starts[1:] = sorted_labels[1:] != sorted_labels[:-1]
    group_start = torch.cummax(torch.where(starts, index, 0), dim=0).values
    rank = index - group_start  # occurrence rank of each sorted sample within its label
    by_rank = torch.argsort(rank, stable=True)
    counts = torch.bincount(rank).tolist()
    return list(torch.split(positions[order[by_rank]], counts))


class ResizableBuffers(nn.Module):
    """Base of the memory banks: checked hyper-parameters, and a ``load_state_dict`` that
    replaces buffers whose shape changed (cluster counts vary between rounds)."""

    def __init__(self, num_features: int, temperature: float, momentum: float) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.num_features = num_features
        self.temperature = temperature
        self.momentum = momentum

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        for name, buffer in list(self._buffers.items()):
            incoming = state_dict.get(prefix + name)
            if buffer is not None and incoming is not None and incoming.shape != buffer.shape:
                self._buffers[name] = torch.empty(
                    incoming.shape, dtype=buffer.dtype, device=buffer.device
                )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def check_labels(labels: Tensor, batch: int, num_clusters: int) -> None:
    if labels.shape != (batch,):
        raise ValueError(f"labels must have shape ({batch},), got {tuple(labels.shape)}")
    if labels.numel() and int(labels.max()) >= num_clusters:
        raise ValueError(f"label {int(labels.max())} is out of range for {num_clusters} clusters")


class ClusterMemory(ResizableBuffers):
    """One memory vector per cluster: ``vectors`` buffer of shape ``(C, d)``, L2-normalised.

    Args:
        num_features: feature dimension ``d``.
        temperature: ``tau`` of the cluster logits ``f M^T / tau`` (the losses read it here).
        momentum: ``mu`` of `update` (weight of the old memory; 0.1 by default, i.e. the
            new feature dominates, as in cluster contrast).

    The bank lives on the device and dtype of the centres given to `reset`; move it with
    ``.to(device)``. ``state_dict()`` holds ``vectors``; loading resizes it.
    """

    vectors: Tensor

    def __init__(self, num_features: int, temperature: float = 0.05, momentum: float = 0.1):
        super().__init__(num_features, temperature, momentum)
        self.register_buffer("vectors", torch.zeros(0, num_features))

    @property
    def num_clusters(self) -> int:
        return self.vectors.shape[0]

    @torch.no_grad()
    def reset(self, centres: Tensor) -> None:
        """Replace the bank by ``centres`` ``(C, d)``, L2-normalised (a detached copy)."""
        if centres.dim() != 2 or centres.shape[1] != self.num_features:
            raise ValueError(
                f"centres must have shape (C, {self.num_features}), got {tuple(centres.shape)}"
            )
        self.vectors = F.normalize(centres.detach().clone(), dim=1)

    @torch.no_grad()
    def update(self, features: Tensor, labels: Tensor) -> None:
        """Momentum update, per sample in batch order; labels ``< 0`` are skipped.

        Args:
            features: ``(B, d)``, L2-normalised (gradient is ignored; cast to the bank's
                dtype). Must be on the bank's device, as must ``labels``.
            labels: ``(B,)`` integer cluster indices in ``[0, C)`` or negative.
        """
        check_labels(labels, features.shape[0], self.num_clusters)
        features = features.detach().to(self.vectors.dtype)
        labels = labels.long()
        for wave in occurrence_waves(labels):
            clusters = labels[wave]
            blended = momentum_step(self.vectors[clusters], features[wave], self.momentum)
            self.vectors.index_copy_(0, clusters, blended)
