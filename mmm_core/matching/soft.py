"""Soft many-to-many cluster weights for Soft Cluster-level Alignment (SCA).

``W^{v->r}_ab = softmax over the top-k_s infrared clusters b of -C_ab / tau_w`` (the k_s
cheapest for visible cluster a), zero elsewhere; ``W^{r->v}_ba`` likewise over the top-k_s
visible clusters of infrared cluster b. The matrices are small (clusters x clusters), so they
are returned dense.
"""

from __future__ import annotations

import numpy as np

__all__ = ["sca_weights", "topk_softmax"]


def topk_softmax(cost: np.ndarray, topk: int, temperature: float) -> np.ndarray:
    """Row-wise softmax of ``-cost / temperature`` over each row's ``topk`` cheapest entries.

    Ties in cost are broken by lowest column index (a stable sort). ``topk`` is clipped to the
    number of columns. Returns a float32 array of ``cost``'s shape; each non-empty row sums to
    1 with exactly ``min(topk, columns)`` non-zero entries (barring underflow).
    """
    rows, cols = cost.shape
    out = np.zeros((rows, cols), dtype=np.float32)
    if rows == 0 or cols == 0:
        return out
    k = min(topk, cols)
    # Stable order (ties: lowest column) of the k cheapest per row.
    order = np.argsort(cost, axis=1, kind="stable")[:, :k]
    logits = -np.take_along_axis(cost, order, axis=1).astype(np.float32) / np.float32(temperature)
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    np.put_along_axis(out, order, weights, axis=1)
    return out


def sca_weights(
    cost: np.ndarray, topk: int = 3, temperature: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """SCA weights in both directions.

    Args:
        cost: (C_v, C_r) cost between visible clusters (rows) and infrared clusters.
        topk: k_s, number of partners that receive weight.
        temperature: tau_w.

    Returns:
        ``(w_v2r, w_r2v)``: dense float32 arrays (C_v, C_r) and (C_r, C_v); rows sum to 1.
    """
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"cost must be (C_v, C_r), got shape {tuple(cost.shape)}")
    return topk_softmax(cost, topk, temperature), topk_softmax(cost.T, topk, temperature)
