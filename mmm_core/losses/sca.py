"""Soft cluster-level alignment (SCA), this project's reading of MMM's SCA (SPEC section 5).

For each visible pseudo-identity ``a`` present in the batch, its batch centroid
``c^v_a = mean of its (L2-normalised) features`` (not renormalised; with gradient) is
pulled towards the normalised mean memories of the IR clusters with soft many-to-many
weights:

    L^{v->r} = mean over present a of  sum_b W^{v->r}_ab || c^v_a - mbar^r_b ||^2

and symmetrically ``L^{r->v}`` for the IR identities. The two directions are **summed**,
each being a mean over its own modality's present identities (as ``L_cross`` sums its two
directions): ``L_SCA = L^{v->r} + L^{r->v}``. A direction with no identity present
contributes a zero that keeps the graph. Memories and weights are constants (detached).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["batch_centroids", "sca_loss", "soft_alignment"]


def batch_centroids(features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Mean feature of each label present in the batch.

    Args:
        features: ``(B, d)``.
        labels: ``(B,)`` integer; negative labels are ignored.

    Returns:
        ``(ids, centroids)``: ``ids`` ``(U,)`` the sorted present labels, ``centroids``
        ``(U, d)`` their means (differentiable in ``features``).
    """
    valid = labels >= 0
    ids, inverse = torch.unique(labels[valid], return_inverse=True)
    selected = features[valid]
    sums = selected.new_zeros(ids.numel(), features.shape[1]).index_add(0, inverse, selected)
    counts = torch.bincount(inverse, minlength=ids.numel()).to(features.dtype)
    return ids, sums / counts.unsqueeze(1)


def soft_alignment(
    features: Tensor, labels: Tensor, weights: Tensor, target_memory: Tensor
) -> Tensor:
    """One direction of SCA: mean over present identities ``a`` of ``sum_b W_ab ||c_a - m_b||^2``.

    Args:
        features: ``(B, d)``, L2-normalised features of one modality.
        labels: ``(B,)`` integer pseudo-labels in ``[0, C)``; negative ones are ignored.
        weights: ``(C, C_o)`` soft correspondence weights (rows typically sum to 1).
        target_memory: ``(C_o, d)`` the other modality's normalised mean memories.

    Returns:
        A scalar tensor; ``0`` with a graph when no label is valid.
    """
    ids, centroids = batch_centroids(features, labels)
    if ids.numel() == 0:
        return features.sum() * 0.0
    rows = weights.detach()[ids].to(centroids.dtype)  # (U, C_o)
    memory = target_memory.detach().to(centroids.dtype)  # (C_o, d)
    # sum_b W_ab ||c_a - m_b||^2 = |c_a|^2 sum_b W_ab - 2 c_a . (W M)_a + sum_b W_ab |m_b|^2
    per_identity = (
        rows.sum(dim=1) * centroids.pow(2).sum(dim=1)
        - 2.0 * (centroids * (rows @ memory)).sum(dim=1)
        + rows @ memory.pow(2).sum(dim=1)
    )
    return per_identity.mean()


def sca_loss(
    *,
    features_v: Tensor,
    labels_v: Tensor,
    features_r: Tensor,
    labels_r: Tensor,
    weights_v2r: Tensor,
    weights_r2v: Tensor,
    mean_memory_v: Tensor,
    mean_memory_r: Tensor,
) -> Tensor:
    """``L_SCA = L^{v->r} + L^{r->v}`` (see the module docstring).

    Shapes: ``features_v (B_v, d)``, ``labels_v (B_v,)``, ``features_r (B_r, d)``,
    ``labels_r (B_r,)``, ``weights_v2r (C_v, C_r)``, ``weights_r2v (C_r, C_v)``,
    ``mean_memory_v (C_v, d)``, ``mean_memory_r (C_r, d)``. Features L2-normalised;
    negative labels ignored. Keyword-only, like `cross_modality_loss`.
    """
    visible_to_infrared = soft_alignment(features_v, labels_v, weights_v2r, mean_memory_r)
    infrared_to_visible = soft_alignment(features_r, labels_r, weights_r2v, mean_memory_v)
    return visible_to_infrared + infrared_to_visible
