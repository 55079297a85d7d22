"""Exact k-nearest neighbours by inner product (cosine on L2-normalised features).

Two backends give the same lists up to ties at the cut-off:

* ``"faiss"``: exact inner-product search (``faiss.knn``, the routine behind
  ``IndexFlatIP.search``, without copying the features into an index). On a CUDA tensor, a
  faiss GPU ``GpuIndexFlatIP`` is used when the installed faiss has GPUs; otherwise (auto)
  the torch backend runs on that device.
* ``"torch"``: chunked ``queries @ features.T`` followed by ``topk``, on the device of the
  input tensor (CPU for numpy input).

Ordering rules (the same for both backends, so that the Jaccard distance built on these lists
is reproducible):

1. each point's own index is first, whatever the similarities say. Duplicated features make
   other points exactly as similar as the point itself (and float rounding can even make them
   slightly more similar); the point is still first. If the backend did not return the point
   in its top ``k`` (possible when more than ``k`` duplicates exist), the last entry is dropped
   and the point is inserted at the front;
2. the other entries are sorted by decreasing similarity (as computed by the backend), ties
   broken by increasing index, including ties at the cut-off: a few extra candidates are
   fetched, and the rare rows whose tie reaches past them are recomputed in full.

Exact ties only arise from duplicated (or exactly symmetric) features; the rules make the
lists, and everything built on them, independent of the backend's internal tie order.

torch is imported only by the torch backend and for tensor input: on numpy features with
faiss, this module and the Jaccard distance built on it run without it (the pipeline's
cluster step saves the 2-3 s of ``import torch``).
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

__all__ = ["as_float32_numpy", "faiss_available", "is_tensor", "knn", "knn_among"]

Backend = Literal["auto", "faiss", "torch"]

_TIE_MARGIN = 4  # extra candidates fetched so that ties at the cut-off are resolved by index


def faiss_available() -> bool:
    """Whether ``import faiss`` works."""
    try:
        import faiss  # noqa: F401
    except ImportError:  # pragma: no cover - faiss is a project dependency
        return False
    return True


def is_tensor(value: object) -> bool:
    """Whether `value` is a torch tensor, without importing torch (no tensor exists before)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _faiss_can_serve(features: np.ndarray | torch.Tensor) -> bool:
    """faiss serves host arrays always, CUDA tensors only when it was built with GPUs."""
    if is_tensor(features) and features.is_cuda:
        import faiss

        return faiss.get_num_gpus() > 0
    return True


def as_float32_numpy(features: np.ndarray | torch.Tensor) -> np.ndarray:
    """The features as a C-contiguous float32 host array (a tensor is copied off its device)."""
    if is_tensor(features):
        import torch

        features = features.detach().to("cpu", torch.float32).numpy()
    return np.ascontiguousarray(features, dtype=np.float32)


def _search_faiss(features: np.ndarray | torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    on_cuda = is_tensor(features) and features.is_cuda
    array = as_float32_numpy(features)
    dim = array.shape[1]
    if on_cuda and faiss.get_num_gpus() > 0:  # pragma: no cover - needs faiss-gpu and CUDA
        resources = faiss.StandardGpuResources()
        config = faiss.GpuIndexFlatConfig()
        config.device = features.device.index or 0
        index = faiss.GpuIndexFlatIP(resources, dim, config)
        index.add(array)
        similarities, indices = index.search(array, k)
    else:
        # What IndexFlatIP.search runs, without copying the features into an index.
        similarities, indices = faiss.knn(array, array, k, metric=faiss.METRIC_INNER_PRODUCT)
    return similarities, indices.astype(np.int64, copy=False)


def _search_torch(
    features: np.ndarray | torch.Tensor, k: int, chunk_elements: int = 1 << 24
) -> tuple[np.ndarray, np.ndarray]:
    import torch

    tensor = torch.as_tensor(features)
    tensor = tensor.detach().to(dtype=torch.float32)
    n = tensor.shape[0]
    chunk = max(1, chunk_elements // max(n, 1))
    out_sim = torch.empty((n, k), dtype=torch.float32, device=tensor.device)
    out_idx = torch.empty((n, k), dtype=torch.int64, device=tensor.device)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        sims = tensor[start:stop] @ tensor.T
        values, indices = torch.topk(sims, k, dim=1, largest=True, sorted=True)
        out_sim[start:stop] = values
        out_idx[start:stop] = indices
    return out_sim.cpu().numpy(), out_idx.cpu().numpy()


def _self_first_sorted(
    features: np.ndarray | torch.Tensor, similarities: np.ndarray, indices: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Apply the ordering rules of the module docstring (vectorised over rows).

    ``similarities``/``indices`` hold ``fetched >= k`` candidates per row; rows whose ties at
    the cut-off may continue beyond the fetched candidates are recomputed exactly.
    """
    n, fetched = indices.shape
    rows = np.arange(n)
    is_self = indices == rows[:, None]
    has_self = is_self.any(axis=1)
    # Drop self where present, otherwise the last entry: fetched - 1 others remain per row.
    drop = np.where(has_self, is_self.argmax(axis=1), fetched - 1)
    keep = np.ones((n, fetched), dtype=bool)
    keep[rows, drop] = False
    others_idx = indices[keep].reshape(n, fetched - 1)
    others_sim = similarities[keep].reshape(n, fetched - 1)
    if fetched > 1:
        order = np.lexsort((others_idx, -others_sim), axis=1)
        others_idx = np.take_along_axis(others_idx, order, axis=1)
        others_sim = np.take_along_axis(others_sim, order, axis=1)
    out_idx = np.empty((n, k), dtype=np.int64)
    out_sim = np.empty((n, k), dtype=np.float32)
    out_idx[:, 0] = rows
    out_sim[:, 0] = similarities[rows, drop]
    out_idx[:, 1:] = others_idx[:, : k - 1]
    out_sim[:, 1:] = others_sim[:, : k - 1]
    redo = ~has_self
    if k > 1 and fetched < n:
        # A tie at the cut-off that reaches the last fetched candidate may hide
        # lower-indexed tied points that were not fetched.
        redo |= others_sim[:, k - 2] == others_sim[:, -1]
    redo_rows = np.flatnonzero(redo)
    if redo_rows.size:
        array = as_float32_numpy(features)
        for start in range(0, redo_rows.size, 256):
            block = redo_rows[start : start + 256]
            sims = array[block] @ array.T
            out_sim[block, 0] = sims[np.arange(block.size), block]
            sims[np.arange(block.size), block] = np.inf  # self first
            candidates = np.broadcast_to(np.arange(n), sims.shape)
            order = np.lexsort((candidates, -sims), axis=1)[:, 1:k]
            out_idx[block, 1:] = order
            out_sim[block, 1:] = np.take_along_axis(sims, order, axis=1)
    return out_sim, out_idx


def knn(
    features: np.ndarray | torch.Tensor, k: int, *, backend: Backend = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest neighbours of every point among all points, self included first.

    Args:
        features: (N, d) float32, L2-normalised rows (numpy array or torch tensor on any
            device). Similarity is the inner product.
        k: list length including the point itself; clipped to N.
        backend: ``"faiss"``, ``"torch"`` or ``"auto"`` (faiss when importable).

    Returns:
        ``(similarities, indices)``: numpy arrays of shape (N, min(k, N)), float32 and int64,
        on the host. Row ``i`` starts with ``i`` itself; see the module docstring for ties.
    """
    n = int(features.shape[0])
    if features.ndim != 2:
        raise ValueError(f"features must be (N, d), got shape {tuple(features.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if n == 0:
        return np.empty((0, 0), np.float32), np.empty((0, 0), np.int64)
    k = min(k, n)
    fetched = min(n, k + _TIE_MARGIN)
    if backend == "auto":
        backend = "faiss" if faiss_available() and _faiss_can_serve(features) else "torch"
    if backend == "faiss":
        similarities, indices = _search_faiss(features, fetched)
    elif backend == "torch":
        similarities, indices = _search_torch(features, fetched)
    else:
        raise ValueError(f"unknown kNN backend {backend!r} (use 'auto', 'faiss' or 'torch')")
    return _self_first_sorted(features, similarities, indices, k)


def knn_among(
    features: np.ndarray | torch.Tensor,
    candidates: np.ndarray,
    k: int,
    *,
    backend: Backend = "auto",
    chunk_elements: int = 1 << 24,
) -> np.ndarray:
    """Every point's ``k`` nearest points among `candidates`, by inner product.

    Args:
        features: (N, d) float32, L2-normalised rows (numpy or a torch tensor; the search
            runs on the host).
        candidates: (M,) int indices into `features`, the points that may be neighbours.
        k: list length; clipped to M.
        backend: ``"faiss"`` (``faiss.knn`` of all points against the candidates),
            ``"torch"`` (chunked products and ``topk``) or ``"auto"``.

    Returns:
        (N, min(k, M)) int64 indices into `features`, nearest first. A point that is itself a
        candidate comes first in its own list (as in `knn`); other ties keep the backend's
        order.
    """
    array = as_float32_numpy(features)
    candidates = np.asarray(candidates, dtype=np.int64)
    n, m = array.shape[0], candidates.shape[0]
    k = min(k, m)
    if n == 0 or k == 0:
        return np.empty((n, k), dtype=np.int64)
    pool = np.ascontiguousarray(array[candidates])
    fetched = min(m, k + 1)  # one more, in case a point's own entry has to be moved forward
    if backend == "auto":
        backend = "faiss" if faiss_available() else "torch"
    if backend == "faiss":
        import faiss

        _, local = faiss.knn(array, pool, fetched, metric=faiss.METRIC_INNER_PRODUCT)
    elif backend == "torch":
        import torch

        local = np.empty((n, fetched), dtype=np.int64)
        pool_t = torch.from_numpy(pool)
        chunk = max(1, chunk_elements // max(m, 1))
        for start in range(0, n, chunk):
            sims = torch.from_numpy(array[start : start + chunk]) @ pool_t.T
            local[start : start + chunk] = torch.topk(sims, fetched, dim=1).indices.numpy()
    else:
        raise ValueError(f"unknown kNN backend {backend!r} (use 'auto', 'faiss' or 'torch')")
    lists = candidates[np.asarray(local, dtype=np.int64)]
    # Self first: a candidate's own index goes to the front (inserted when it was not fetched).
    position = np.full(n, -1, dtype=np.int64)
    position[candidates] = np.arange(m)
    rows = np.flatnonzero(position >= 0)
    out = lists[:, :k].copy()
    for i in rows:
        others = lists[i][lists[i] != i][: k - 1]
        out[i, 0] = i
        out[i, 1:] = others
    return out
