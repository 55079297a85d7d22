"""Cluster correspondences from a cost matrix (rows: visible clusters, columns: infrared).

:func:`match_clusters` is the method's bipartite matching: the Hungarian algorithm
(``scipy.optimize.linear_sum_assignment``) with progressive rounds. The first round matches
``min(C_v, C_r)`` pairs one-to-one; while the larger side still has unmatched clusters, the
Hungarian algorithm is run again between those and *all* clusters of the smaller side, so
every cluster of both sides ends with a partner. :func:`match_clusters_greedy` (each cluster
takes its cheapest partner, independently) exists only for comparison.

Both return total maps as int64 numpy arrays.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.optimize import linear_sum_assignment

logger = logging.getLogger(__name__)

__all__ = ["match_clusters", "match_clusters_greedy"]


def _as_cost(cost: np.ndarray) -> np.ndarray:
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"cost must be (C_v, C_r), got shape {cost.shape}")
    if not np.isfinite(cost).all():
        raise ValueError("cost has NaN or infinite entries")
    if (cost.shape[0] == 0) != (cost.shape[1] == 0):
        raise ValueError(f"cannot give partners: one side is empty (shape {cost.shape})")
    return cost


def _progressive(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """For ``rows >= cols``: every row gets a column; every column its round-1 row."""
    n_rows, n_cols = cost.shape
    row_to_col = np.full(n_rows, -1, dtype=np.int64)
    col_to_row = np.full(n_cols, -1, dtype=np.int64)
    rows, cols = linear_sum_assignment(cost)
    row_to_col[rows] = cols
    col_to_row[cols] = rows
    rounds = 1
    unmatched = np.flatnonzero(row_to_col < 0)
    while unmatched.size:
        rows, cols = linear_sum_assignment(cost[unmatched])
        row_to_col[unmatched[rows]] = cols
        unmatched = np.flatnonzero(row_to_col < 0)
        rounds += 1
    return row_to_col, col_to_row, rounds


def match_clusters(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian matching with progressive rounds.

    Args:
        cost: (C_v, C_r) finite costs, rows = visible clusters, columns = infrared clusters.

    Returns:
        ``(v2r, r2v)``: int64 arrays of shape (C_v,) and (C_r,), every entry a valid partner.
        The round-1 pairs are one-to-one and both maps agree on them; clusters of the larger
        side matched in later rounds share a partner of the smaller side, whose own map
        entry keeps its round-1 partner.
    """
    cost = _as_cost(cost)
    if cost.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    if cost.shape[0] >= cost.shape[1]:
        v2r, r2v, rounds = _progressive(cost)
    else:
        r2v, v2r, rounds = _progressive(cost.T)
    logger.debug("matched %d x %d clusters in %d round(s)", *cost.shape, rounds)
    return v2r, r2v


def match_clusters_greedy(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each cluster's cheapest partner (per-row and per-column argmin, lowest index on ties).

    Args:
        cost: (C_v, C_r) finite costs.

    Returns:
        ``(v2r, r2v)`` int64 arrays of shape (C_v,) and (C_r,).
    """
    cost = _as_cost(cost)
    if cost.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return cost.argmin(axis=1).astype(np.int64), cost.argmin(axis=0).astype(np.int64)
