"""Losses of MMM: cluster NCE, multi-memory loss, cross-modality loss, soft cluster alignment."""

from mmm_core.losses.contrastive import (
    cluster_nce,
    masked_cross_entropy,
    memory_logits,
    multi_memory_loss,
)
from mmm_core.losses.cross import cross_modality_loss, cross_modality_nce
from mmm_core.losses.sca import batch_centroids, sca_loss, soft_alignment

__all__ = [
    "batch_centroids",
    "cluster_nce",
    "cross_modality_loss",
    "cross_modality_nce",
    "masked_cross_entropy",
    "memory_logits",
    "multi_memory_loss",
    "sca_loss",
    "soft_alignment",
]
