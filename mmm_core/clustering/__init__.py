"""Pseudo-labelling: exact kNN, sparse Jaccard distance, DBSCAN, CMC, sub-clustering.

The functions ``knn`` and ``subcluster`` share their module's name and are deliberately not
re-exported here (that would shadow the modules): import them as
``from mmm_core.clustering.knn import knn`` and
``from mmm_core.clustering.subcluster import subcluster``. Sub-clustering computes on torch
tensors, so importing this package does not import it (nor torch).
"""

from .cmc import JointClustering, cmc_joint_labels, joint_centres
from .dbscan import dbscan_labels, renumber_labels
from .jaccard import jaccard_distance

__all__ = [
    "JointClustering",
    "cmc_joint_labels",
    "dbscan_labels",
    "jaccard_distance",
    "joint_centres",
    "renumber_labels",
]
