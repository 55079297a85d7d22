"""Pseudo-labelling: exact kNN, sparse Jaccard distance, DBSCAN, CMC, sub-clustering.

The functions ``knn`` and ``subcluster`` share their module's name and are deliberately not
re-exported here (that would shadow the modules): import them as
``from mmm_core.clustering.knn import knn`` and
``from mmm_core.clustering.subcluster import subcluster``. Nothing here imports torch unless
it is handed a tensor or asked for the torch kNN backend.
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
