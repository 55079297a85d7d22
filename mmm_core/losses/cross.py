"""Cross-modality loss through the cluster correspondences ``v2r`` / ``r2v``.

``L_cross = CE(z^r(f^v), v2r[y^v]) + CE(z^v(f^r), r2v[y^r])``: each visible sample is
classified among the IR clusters with its matched IR cluster as target, and vice versa.
``z`` is the multi-memory cluster logit (max over valid slots) or, for a ``(C, d)`` memory,
the single-memory logit.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mmm_core.losses.contrastive import masked_cross_entropy, memory_logits

__all__ = ["cross_modality_loss", "cross_modality_nce"]


def cross_modality_nce(
    features: Tensor,
    labels: Tensor,
    memory: Tensor,
    mask: Tensor | None,
    mapping: Tensor,
    temperature: float = 0.05,
) -> Tensor:
    """One direction: ``CE(z^other(f), mapping[y])``, mean over usable samples.

    Args:
        features: ``(B, d)``, L2-normalised features of one modality.
        labels: ``(B,)`` integer pseudo-labels in that modality; negative ones are ignored.
        memory: the *other* modality's memory, ``(C_o, K, d)`` or ``(C_o, d)``.
        mask: ``(C_o, K)`` bool valid slots of a multi memory (None: all valid / single).
        mapping: ``(C,)`` integer, own cluster -> other-modality cluster (e.g. ``v2r``);
            a negative entry means "no partner" and the sample is ignored. Same device as
            ``labels``.
        temperature: ``tau``.
    """
    if mapping.numel() == 0:  # no cluster in this modality: nothing to align
        targets = torch.full_like(labels, -1)
    else:
        targets = torch.where(labels >= 0, mapping[labels.clamp(min=0)], -1)
    return masked_cross_entropy(memory_logits(features, memory, mask, temperature), targets)


def cross_modality_loss(
    *,
    features_v: Tensor,
    labels_v: Tensor,
    memory_r: Tensor,
    mask_r: Tensor | None,
    v2r: Tensor,
    features_r: Tensor,
    labels_r: Tensor,
    memory_v: Tensor,
    mask_v: Tensor | None,
    r2v: Tensor,
    temperature: float = 0.05,
) -> Tensor:
    """``CE(z^r(f^v), v2r[y^v]) + CE(z^v(f^r), r2v[y^r])``, the sum of two per-direction means.

    Shapes: ``features_v (B_v, d)``, ``labels_v (B_v,)``, ``memory_r (C_r, K, d)`` or
    ``(C_r, d)``, ``mask_r (C_r, K)`` or None, ``v2r (C_v,)``; symmetrically for the IR side.
    Features L2-normalised; labels ``< 0`` and unmatched clusters (map value ``< 0``) ignored.
    Keyword-only: ten tensors of two modalities must not be swappable by position.
    """
    visible_to_infrared = cross_modality_nce(
        features_v, labels_v, memory_r, mask_r, v2r, temperature
    )
    infrared_to_visible = cross_modality_nce(
        features_r, labels_r, memory_v, mask_v, r2v, temperature
    )
    return visible_to_infrared + infrared_to_visible
