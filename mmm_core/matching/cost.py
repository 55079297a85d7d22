"""Cost between visible and infrared clusters from their multi-memories.

Memories are (C, K, d) arrays with a (C, K) bool mask of valid slots (at least one per
cluster); distances are Euclidean, ``||m^v_ak - m^r_bl||``. Variants:

* ``"chamfer"`` (default, SPEC): symmetric mean Chamfer distance
  ``C_ab = 1/2 [ mean_k min_l ||m^v_ak - m^r_bl|| + mean_l min_k ||m^r_bl - m^v_ak|| ]``
  over valid slots ``k`` of ``a`` and ``l`` of ``b``;
* ``"one_sided"``: what the released MMM code (``mmlm.py``) computes:
  ``C_ab = sum_l min_k ||m^r_bl - m^v_ak||``, the **sum over the infrared cluster's slots**
  of the distance to the nearest visible slot (its ``distances[i, j]`` has ``i`` over the IR
  centres and ``j`` over the RGB centres, then ``min(axis=1).sum()``). A sum, not a mean:
  clusters with fewer valid slots cost less, as in that code;
* ``"centroid"``: ``||mbar^v_a - mbar^r_b||`` with ``mbar`` the normalised mean of a
  cluster's valid slots (a single memory per cluster).

Computed in chunks of visible clusters with matrix products, in numpy (float32).
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["CostVariant", "memory_cost", "slot_distances"]

CostVariant = Literal["chamfer", "one_sided", "centroid"]

_CHUNK_ELEMENTS = 1 << 24  # distances held at once (64 MB of float32)


def slot_distances(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Euclidean distances between all rows: (A, d) x (B, d) -> (A, B), clamped at 0."""
    squared = (
        np.sum(first * first, axis=1, keepdims=True)
        + np.sum(second * second, axis=1)[None, :]
        - 2.0 * (first @ second.T)
    )
    return np.sqrt(np.maximum(squared, 0.0, out=squared), out=squared)


def _mean_memory(memory: np.ndarray, mask: np.ndarray) -> np.ndarray:
    sums = (memory * mask[..., None]).sum(axis=1)
    return sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), np.float32(1e-12))


def memory_cost(
    visible_memory: np.ndarray,
    visible_mask: np.ndarray,
    infrared_memory: np.ndarray,
    infrared_mask: np.ndarray,
    *,
    variant: CostVariant = "chamfer",
) -> np.ndarray:
    """Cost matrix between visible clusters (rows) and infrared clusters (columns).

    Args:
        visible_memory: (C_v, K_v, d) float memories (any scale; usually L2-normalised).
        visible_mask: (C_v, K_v) bool valid slots, at least one per cluster.
        infrared_memory: (C_r, K_r, d).
        infrared_mask: (C_r, K_r) bool.
        variant: ``"chamfer"``, ``"one_sided"`` or ``"centroid"`` (module docstring).

    Returns:
        (C_v, C_r) float32 array.
    """
    visible_memory = np.asarray(visible_memory, dtype=np.float32)
    infrared_memory = np.asarray(infrared_memory, dtype=np.float32)
    visible_mask = np.asarray(visible_mask, dtype=bool)
    infrared_mask = np.asarray(infrared_mask, dtype=bool)
    c_v, k_v, dim = visible_memory.shape
    c_r, k_r, _ = infrared_memory.shape
    if visible_mask.shape != (c_v, k_v) or infrared_mask.shape != (c_r, k_r):
        raise ValueError("masks must be (C, K) and match their memories")
    if not (visible_mask.any(axis=1).all() and infrared_mask.any(axis=1).all()):
        raise ValueError("every cluster needs at least one valid memory slot")
    if variant == "centroid":
        return slot_distances(
            _mean_memory(visible_memory, visible_mask), _mean_memory(infrared_memory, infrared_mask)
        )
    if variant not in ("chamfer", "one_sided"):
        raise ValueError(f"unknown cost variant {variant!r}")

    infrared_flat = infrared_memory.reshape(c_r * k_r, dim)
    v_valid = visible_mask.astype(np.float32)
    r_valid = infrared_mask.astype(np.float32)
    out = np.empty((c_v, c_r), dtype=np.float32)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, k_v * c_r * k_r))
    for start in range(0, c_v, chunk):
        stop = min(start + chunk, c_v)
        n = stop - start
        dist = slot_distances(visible_memory[start:stop].reshape(n * k_v, dim), infrared_flat)
        dist = dist.reshape(n, k_v, c_r, k_r)
        v_mask = visible_mask[start:stop][:, :, None, None]
        r_mask = infrared_mask[None, None, :, :]
        # For every infrared slot l of b: distance to the nearest valid visible slot of a.
        infrared_to_visible = np.where(v_mask, dist, np.inf).min(axis=1)  # (n, c_r, k_r)
        infrared_to_visible = infrared_to_visible * r_valid[None]  # zero on invalid slots
        if variant == "one_sided":
            out[start:stop] = infrared_to_visible.sum(axis=2)
            continue
        visible_to_infrared = np.where(r_mask, dist, np.inf).min(axis=3)  # (n, k_v, c_r)
        visible_to_infrared = visible_to_infrared * v_valid[start:stop, :, None]
        visible_term = visible_to_infrared.sum(axis=1) / v_valid[start:stop].sum(axis=1)[:, None]
        infrared_term = infrared_to_visible.sum(axis=2) / r_valid.sum(axis=1)[None, :]
        out[start:stop] = 0.5 * (visible_term + infrared_term)
    return out
