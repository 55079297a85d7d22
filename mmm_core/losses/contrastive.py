"""Cluster-level contrastive losses against a memory bank (cluster NCE, multi-memory loss).

All losses are pure functions of tensors. Labels ``< 0`` (DBSCAN noise, unmatched
clusters) are ignored; the mean runs over the remaining samples, and a batch with none
gives a zero that still has a graph (so ``loss.backward()`` never fails).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mmm_core.memory.multi import multi_memory_logits

__all__ = ["cluster_nce", "masked_cross_entropy", "memory_logits", "multi_memory_loss"]


def masked_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy over the samples with ``labels >= 0``.

    Args:
        logits: ``(B, C)`` float.
        labels: ``(B,)`` integer, on the logits' device; negative entries are ignored.

    Returns:
        A scalar; ``0`` (connected to ``logits``) when no label is valid. No host sync.
    """
    valid = labels >= 0
    per_sample = F.cross_entropy(logits, torch.where(valid, labels, 0).long(), reduction="none")
    per_sample = torch.where(valid, per_sample, per_sample.new_zeros(()))
    return per_sample.sum() / valid.sum().clamp(min=1).to(per_sample.dtype)


def memory_logits(
    features: Tensor, memory: Tensor, mask: Tensor | None, temperature: float
) -> Tensor:
    """Cluster logits for a single ``(C, d)`` or a multi ``(C, K, d)`` memory: ``(B, C)``.

    A single memory gives ``f M^T / tau`` (``mask`` must be None); a multi memory gives
    ``max_{valid k} f . m_{c,k} / tau`` with ``mask`` ``(C, K)`` bool (None: all valid).
    """
    if memory.dim() == 2:
        if mask is not None:
            raise ValueError("a single (C, d) memory takes no slot mask")
        return features @ memory.to(features.dtype).t() / temperature
    if memory.dim() == 3:
        return multi_memory_logits(features, memory, mask, temperature)
    raise ValueError(f"memory must be (C, d) or (C, K, d), got {tuple(memory.shape)}")


def cluster_nce(
    features: Tensor, memory: Tensor, labels: Tensor, temperature: float = 0.05
) -> Tensor:
    """Cluster NCE: ``CE(f M^T / tau, y)``, averaged over samples with ``y >= 0``.

    Args:
        features: ``(B, d)``, L2-normalised.
        memory: ``(C, d)`` cluster memories, L2-normalised (a buffer: no gradient in use).
        labels: ``(B,)`` integer in ``[0, C)``, or negative to ignore.
        temperature: ``tau``.

    Returns:
        A scalar tensor.
    """
    if memory.dim() != 2:
        raise ValueError(f"cluster_nce needs a (C, d) memory, got {tuple(memory.shape)}")
    return masked_cross_entropy(memory_logits(features, memory, None, temperature), labels)


def multi_memory_loss(
    features: Tensor,
    memory: Tensor,
    mask: Tensor | None,
    labels: Tensor,
    temperature: float = 0.05,
) -> Tensor:
    """Multi-memory learning loss ``L_MML = CE(z(f), y)``, ``z_c = max_{valid k} f . m_ck / tau``.

    Args:
        features: ``(B, d)``, L2-normalised.
        memory: ``(C, K, d)`` slot memories (valid slots L2-normalised).
        mask: ``(C, K)`` bool, valid slots (None: all valid); every cluster needs one.
        labels: ``(B,)`` integer in ``[0, C)``, or negative to ignore.
        temperature: ``tau``.

    Returns:
        A scalar tensor (mean over samples with ``y >= 0``).
    """
    if memory.dim() != 3:
        raise ValueError(f"multi_memory_loss needs a (C, K, d) memory, got {tuple(memory.shape)}")
    return masked_cross_entropy(multi_memory_logits(features, memory, mask, temperature), labels)
