"""Cross-modality cluster matching: multi-memory cost, Hungarian matching, SCA weights."""

from .assignment import match_clusters, match_clusters_greedy
from .cost import CostVariant, memory_cost
from .soft import sca_weights

__all__ = [
    "CostVariant",
    "match_clusters",
    "match_clusters_greedy",
    "memory_cost",
    "sca_weights",
]
