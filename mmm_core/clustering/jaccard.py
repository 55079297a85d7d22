"""Sparse k-reciprocal Jaccard distance (the cluster-contrast re-ranking definition).

Definition (exactly what is computed; N points, L2-normalised features ``f``):

* **neighbour lists.** ``L_i`` = the ``k1`` nearest points of ``i`` by inner product, the
  point itself first (:func:`mmm_core.clustering.knn.knn`; ties as documented there). The
  cluster-contrast code searches faiss for ``k1`` neighbours (self included) and then slices
  ``[:k1 + 1]`` out of those ``k1`` columns, so its "k1" reciprocal sets use all ``k1`` list
  entries; the lists here have the same ``k1`` entries. When ``N < k1`` the lists hold all N
  points, i.e. ``k1`` is clipped to N, and every quantity below uses the clipped value.
* **k-reciprocal sets.** ``R(i, k) = {j in L_i[:k+1] : i in L_j[:k+1]}``. ``R(i, k1)`` uses
  the whole lists; ``R(i, h)`` the first ``h + 1`` entries, ``h = round(k1 / 2)`` with numpy
  rounding (half to even: 30 -> 15, 5 -> 2, 7 -> 4). The relation is symmetric and contains
  ``i`` itself.
* **expansion.** ``E_i = R(i, k1)`` united with every ``R(c, h)``, ``c in R(i, k1)``, for
  which ``|R(c, h) & R(i, k1)| > 2/3 |R(c, h)|`` (tested against the original
  ``R(i, k1)``, in float64 exactly as the reference writes it).
* **weights.** ``V_i(j) = softmax_{j in E_i}(-(2 - 2 f_i.f_j))``, zero outside ``E_i``; each
  row sums to 1.
* **local query expansion.** ``V_i <- mean of V_j over j in L_i[:k2]`` (self included;
  ``k2`` is clipped to the list length, which is what slicing the ``k1``-column list does in
  the reference). With ``modality`` given (CMC), the expansion is modality-balanced, in one of
  two readings (``joint_expansion``):

  - ``"balanced"`` (SPEC section 5's words): ``V_i <- (mean of V over i's k2 nearest visible
    points + mean of V over its k2 nearest infrared points) / 2`` (``k2`` of each modality,
    clipped to its size; i itself is the first of its own modality's list);
  - ``"released"`` (the released MMM code): the ``k2`` nearest overall are split by modality
    and ``V_i <- (mean over the visible ones + mean over the infrared ones) / 2``, the plain
    mean of the present modality when all ``k2`` share one, which is then intra-modality
    expansion.
* **distance.** ``d(i, j) = 1 - sum_l min(V_il, V_jl) / sum_l max(V_il, V_jl)``. Every row
  of ``V`` sums to one, so ``sum max = 2 - sum min`` and ``d = 1 - m / (2 - m)`` with
  ``m = sum_l min(V_il, V_jl)``; this is the form evaluated (float64 accumulation), then
  clipped to [0, 1] and stored as float32.

Result: a symmetric ``scipy.sparse.csr_matrix`` of shape (N, N), float32, sorted indices. Its
stored entries are exactly the pairs with ``d < 1`` (pairs that share support in ``V``, after
float32 rounding) plus the whole diagonal, stored explicitly even where it is 0.0; an absent
entry means 1.0. Optionally only pairs with ``d <= max_distance`` are kept (the diagonal
always), which is all DBSCAN with ``eps = max_distance`` needs.

Cost: memory O(N k1 k2) plus the output, never N x N. Everything is vectorised over points:
the sets are sparse matrices (``R(., h) @ R(., h)`` counts the intersections), the query
expansion is a sparse product, and the sums of minima are accumulated column by column of
``V`` (each support point lists the rows that hold it; every pair in that list receives the
smaller of its two weights), in row blocks, upper triangle only, in a bandwidth-reducing
(reverse Cuthill-McKee) order so that each block's partners are few and a dense block
accumulator stays small.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import reverse_cuthill_mckee

from .knn import Backend, as_float32_numpy, knn_among
from .knn import knn as knn_search

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

__all__ = [
    "balanced_expansion_matrix",
    "expansion_half",
    "jaccard_distance",
    "jaccard_from_weights",
    "query_expansion_matrix",
    "reciprocal_weights",
]

_EMISSIONS_PER_BLOCK = 1 << 21  # pair contributions generated at once (bounds temporaries)
_BLOCK_CELLS = 1 << 21  # cells of the dense per-block accumulator (float64)


def expansion_half(k1: int) -> int:
    """``h = round(k1 / 2)`` with numpy's half-to-even rounding, as the reference does."""
    return int(np.around(k1 / 2))


# --------------------------------------------------------------------------- neighbours


def _neighbour_lists(
    features: np.ndarray | torch.Tensor,
    k1: int,
    knn: tuple[np.ndarray, np.ndarray] | None,
    backend: Backend,
) -> tuple[np.ndarray, np.ndarray]:
    n = int(features.shape[0])
    k = min(k1, n)
    if knn is None:
        similarities, indices = knn_search(features, k, backend=backend)
    else:
        similarities, indices = (np.asarray(a) for a in knn)
        if indices.shape[0] != n or indices.shape[1] < k or similarities.shape != indices.shape:
            raise ValueError(
                f"knn must be (similarities, indices) of shape (N, >= {k}) for N = {n}, "
                f"got {similarities.shape} and {indices.shape}"
            )
        similarities = similarities[:, :k]
        indices = indices[:, :k]
        ordered = np.sort(indices, axis=1)
        if n and (ordered[:, 0].min() < 0 or ordered[:, -1].max() >= n):
            raise ValueError("knn indices must lie in [0, N) (no -1 padding)")
        if (ordered[:, 1:] == ordered[:, :-1]).any():
            raise ValueError("knn lists must not repeat an index within a row")
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    similarities = np.ascontiguousarray(similarities, dtype=np.float32)
    if n and not np.array_equal(indices[:, 0], np.arange(n)):
        raise ValueError("neighbour lists must start with the point itself (see knn())")
    return similarities, indices


def _rank_matrix(indices: np.ndarray, depth: int) -> sp.csr_matrix:
    """Binary (N, N) CSR: row i marks L_i[:depth]."""
    n, k = indices.shape
    depth = min(depth, k)
    cols = indices[:, :depth]
    indptr = np.arange(0, n * depth + 1, depth, dtype=np.int64)
    mat = sp.csr_matrix((np.ones(n * depth, dtype=np.float32), cols.ravel(), indptr), shape=(n, n))
    mat.sort_indices()
    return mat


def _reciprocal(indices: np.ndarray, k: int) -> sp.csr_matrix:
    """Binary symmetric CSR of ``R(i, k)``: j in L_i[:k+1] and i in L_j[:k+1]."""
    forward = _rank_matrix(indices, k + 1)
    recip = forward.multiply(forward.T.tocsr()).tocsr()
    recip.sort_indices()
    return recip


def _expanded_sets(indices: np.ndarray) -> sp.csr_matrix:
    """Binary CSR of the expanded sets ``E_i`` (sorted indices)."""
    k1 = indices.shape[1]
    r_full = _reciprocal(indices, k1)
    r_half = _reciprocal(indices, expansion_half(k1))
    half_sizes = np.diff(r_half.indptr)
    # overlap[i, c] = |R(i, k1) & R(c, h)| (R(., h) is symmetric), kept where c in R(i, k1).
    overlap = (r_full @ r_half).multiply(r_full).tocoo()
    accept = overlap.data > (2 / 3) * half_sizes[overlap.col]
    n = indices.shape[0]
    selected = sp.csr_matrix(
        (np.ones(int(accept.sum()), np.float32), (overlap.row[accept], overlap.col[accept])),
        shape=(n, n),
    )
    expanded = (r_full + selected @ r_half).tocsr()
    expanded.data[:] = 1.0
    expanded.sort_indices()
    return expanded


# --------------------------------------------------------------------------- weights


def _pair_similarities(
    features: np.ndarray | torch.Tensor,
    rows: np.ndarray,
    cols: np.ndarray,
    similarities: np.ndarray,
    indices: np.ndarray,
) -> np.ndarray:
    """f_rows . f_cols, taken from the kNN lists where present, computed otherwise."""
    n = indices.shape[0]
    order = np.argsort(indices, axis=1, kind="stable")
    sorted_keys = (
        np.arange(n, dtype=np.int64)[:, None] * n + np.take_along_axis(indices, order, axis=1)
    ).ravel()
    sorted_sims = np.take_along_axis(similarities, order, axis=1).ravel()
    keys = rows.astype(np.int64) * n + cols
    pos = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
    found = sorted_keys[pos] == keys
    out = np.where(found, sorted_sims[pos], 0.0).astype(np.float32)
    missing = np.flatnonzero(~found)
    if missing.size:
        array = as_float32_numpy(features)
        step = 1 << 13
        for start in range(0, missing.size, step):
            sel = missing[start : start + step]
            out[sel] = np.einsum("ij,ij->i", array[rows[sel]], array[cols[sel]])
    return out


def reciprocal_weights(
    features: np.ndarray | torch.Tensor,
    similarities: np.ndarray,
    indices: np.ndarray,
) -> sp.csr_matrix:
    """The k-reciprocal weight matrix ``V`` before query expansion.

    Args:
        features: (N, d) float32, L2-normalised.
        similarities, indices: (N, k1) neighbour lists, self first (see :func:`knn`).

    Returns:
        (N, N) CSR float64 with sorted indices; row i is the softmax over ``E_i`` (sums to 1).
    """
    expanded = _expanded_sets(indices)
    n = indices.shape[0]
    counts = np.diff(expanded.indptr)
    rows = np.repeat(np.arange(n, dtype=np.int64), counts)
    sims = _pair_similarities(features, rows, expanded.indices, similarities, indices)
    # softmax of -(2 - 2 s): exponents lie in [-4, 0], no shift needed.
    weights = np.exp(2.0 * sims.astype(np.float64) - 2.0)
    totals = np.add.reduceat(weights, expanded.indptr[:-1]) if n else weights
    weights /= np.repeat(totals, counts)
    return sp.csr_matrix((weights, expanded.indices.copy(), expanded.indptr.copy()), (n, n))


def query_expansion_matrix(
    indices: np.ndarray, k2: int, modality: np.ndarray | None = None
) -> sp.csr_matrix:
    """Row-stochastic (N, N) CSR ``A`` with ``V_qe = A @ V``.

    Plain: ``A[i, j] = 1 / k2'`` for ``j in L_i[:k2']``, ``k2' = min(k2, len(L_i))``.
    With ``modality`` (bool (N,), True = visible): the ``k2'`` nearest are split by modality
    and each present modality gets half the mass, shared equally among its members (all the
    mass when only one modality is present).
    """
    n, k = indices.shape
    depth = max(1, min(k2, k))
    cols = indices[:, :depth]
    if modality is None:
        values = np.full((n, depth), 1.0 / depth)
    else:
        modality = np.asarray(modality, dtype=bool)
        if modality.shape != (n,):
            raise ValueError(f"modality must be a bool array of shape ({n},)")
        is_visible = modality[cols]
        n_visible = is_visible.sum(axis=1, keepdims=True)
        n_infrared = depth - n_visible
        share = np.where((n_visible > 0) & (n_infrared > 0), 0.5, 1.0)
        values = np.where(
            is_visible, share / np.maximum(n_visible, 1), share / np.maximum(n_infrared, 1)
        )
    indptr = np.arange(0, n * depth + 1, depth, dtype=np.int64)
    return sp.csr_matrix((values.ravel().astype(np.float64), cols.ravel(), indptr), (n, n))


def balanced_expansion_matrix(
    visible_lists: np.ndarray, infrared_lists: np.ndarray
) -> sp.csr_matrix:
    """Row-stochastic (N, N) CSR ``A`` of the "balanced" CMC expansion, ``V_qe = A @ V``.

    Row i puts ``1 / (2 k_v)`` on each of ``visible_lists[i]`` (k_v entries) and ``1 / (2 k_r)``
    on each of ``infrared_lists[i]`` (k_r entries); all the mass on one side when the other
    modality has no point. Lists hold distinct indices (a point is in one modality only).
    """
    n = max(visible_lists.shape[0], infrared_lists.shape[0])
    k_v, k_r = visible_lists.shape[1], infrared_lists.shape[1]
    if k_v == 0 and k_r == 0:
        raise ValueError("balanced expansion needs at least one point")
    share_v = 0.0 if k_v == 0 else (0.5 if k_r else 1.0) / k_v
    share_r = 0.0 if k_r == 0 else (0.5 if k_v else 1.0) / k_r
    cols = np.concatenate([visible_lists, infrared_lists], axis=1)
    values = np.concatenate(
        [np.full((n, k_v), share_v), np.full((n, k_r), share_r)], axis=1
    ).astype(np.float64)
    depth = k_v + k_r
    indptr = np.arange(0, n * depth + 1, depth, dtype=np.int64)
    return sp.csr_matrix((values.ravel(), cols.ravel(), indptr), (n, n))


# --------------------------------------------------------------------------- sum of minima


def _row_sums(matrix: sp.csr_matrix) -> np.ndarray:
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    return np.bincount(rows, weights=matrix.data.astype(np.float64), minlength=matrix.shape[0])


class _ColumnView:
    """CSC view of a CSR matrix (rows ascending within each column), aligned with its entries.

    For CSR entry ``e`` = (row i, column l), ``first_later[e]`` is the CSC position of the next
    row holding column ``l`` and ``later[e]`` how many rows after ``i`` hold it.
    """

    def __init__(self, matrix: sp.csr_matrix) -> None:
        n_rows, n_cols = matrix.shape
        self.indptr = matrix.indptr.astype(np.int64)
        columns = matrix.indices.astype(np.int64)
        self.values = matrix.data.astype(np.float64)
        self.entry_rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(self.indptr))
        by_column = np.argsort(columns, kind="stable")  # rows stay ascending per column
        self.col_rows = self.entry_rows[by_column]
        self.col_values = self.values[by_column]
        col_indptr = np.zeros(n_cols + 1, dtype=np.int64)
        np.cumsum(np.bincount(columns, minlength=n_cols), out=col_indptr[1:])
        position = np.empty_like(by_column)
        position[by_column] = np.arange(by_column.size)
        self.first_later = position + 1
        self.later = col_indptr[columns + 1] - self.first_later
        work = np.bincount(self.entry_rows, weights=self.later, minlength=n_rows)
        self.cumulative_work = np.concatenate([[0], np.cumsum(work.astype(np.int64))])


def _sum_of_minima(weights: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``m_ij = sum_l min(W_il, W_jl)`` for every pair of rows i < j that share a column.

    Rows are processed in blocks of consecutive rows. For each entry (i, l) of a block, the
    rows j > i holding column l receive ``min(W_il, W_jl)`` (a contiguous run of the CSC
    arrays, gathered for all entries at once); the contributions are summed per (i, j) by
    ``bincount`` into a dense accumulator over the block's rows and the band of partner rows
    ``(first row, largest partner]``, which stays narrow in a bandwidth-reducing order.
    """
    n = weights.shape[0]
    view = _ColumnView(weights)
    cumulative = view.cumulative_work
    out_rows, out_cols, out_sums = [], [], []
    start = 0
    while start < n:
        stop = int(np.searchsorted(cumulative, cumulative[start] + _EMISSIONS_PER_BLOCK, "right"))
        stop = min(max(stop - 1, start + 1), n)
        first_entry, last_entry = view.indptr[start], view.indptr[stop]
        lengths = view.later[first_entry:last_entry]
        total = int(cumulative[stop] - cumulative[start])
        if total == 0:
            start = stop
            continue
        offsets = np.cumsum(lengths) - lengths
        source = np.repeat(view.first_later[first_entry:last_entry] - offsets, lengths)
        source += np.arange(total, dtype=np.int64)
        partners = view.col_rows[source]
        contributions = view.col_values[source]
        del source
        row_values = np.repeat(view.values[first_entry:last_entry], lengths)
        np.minimum(row_values, contributions, out=contributions)
        del row_values
        band_start = start + 1
        # Largest partner: the last row of each column met in the block (rows ascend).
        has_later = lengths > 0
        column_last = view.first_later[first_entry:last_entry][has_later] + lengths[has_later] - 1
        width = int(view.col_rows[column_last].max()) - band_start + 1
        # Key of an entry's contributions: (its row - start) * width + (partner - band_start).
        entry_base = (view.entry_rows[first_entry:last_entry] - start) * width - band_start
        rows_per_pass = max(1, _BLOCK_CELLS // width)
        for first in range(start, stop, rows_per_pass):
            last = min(first + rows_per_pass, stop)
            e0 = int(cumulative[first] - cumulative[start])
            e1 = int(cumulative[last] - cumulative[start])
            if e0 == e1:
                continue
            i0 = view.indptr[first] - first_entry
            i1 = view.indptr[last] - first_entry
            keys = np.repeat(entry_base[i0:i1] - (first - start) * width, lengths[i0:i1])
            keys += partners[e0:e1]
            sums = np.bincount(keys, weights=contributions[e0:e1], minlength=(last - first) * width)
            hits = np.flatnonzero(sums)
            out_rows.append(first + hits // width)
            out_cols.append(band_start + hits % width)
            out_sums.append(sums[hits])
        start = stop
    if not out_rows:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64)
    return np.concatenate(out_rows), np.concatenate(out_cols), np.concatenate(out_sums)


def jaccard_from_weights(
    weights: sp.csr_matrix, *, max_distance: float | None = None
) -> sp.csr_matrix:
    """Jaccard distances ``1 - m / (2 - m)``, ``m = sum_l min(V_il, V_jl)``, between rows.

    Args:
        weights: (N, N) sparse, non-negative, every row summing to 1 (``V`` after query
            expansion). Accumulated in float64 from float32 weights.
        max_distance: keep only pairs with ``d <= max_distance`` (the diagonal always);
            ``None`` keeps every pair with ``d < 1``.

    Returns:
        Symmetric (N, N) float32 CSR with sorted indices and an explicit diagonal.
    """
    n = weights.shape[0]
    weights = sp.csr_matrix(weights, dtype=np.float32)
    weights.sum_duplicates()
    weights.eliminate_zeros()
    # Order points so that those sharing support are close: blocks then meet few partners.
    pattern = weights.copy()
    pattern.data[:] = 1.0
    order = reverse_cuthill_mckee((pattern + pattern.T).tocsr(), symmetric_mode=True)
    order = np.asarray(order, dtype=np.int64)
    del pattern
    permuted = weights[order].tocsr()
    permuted.sort_indices()
    rows, cols, sums = _sum_of_minima(permuted)
    distances = _to_distance(sums)
    keep = distances < 1.0
    if max_distance is not None:
        keep &= distances <= max_distance
    rows, cols, distances = order[rows[keep]], order[cols[keep]], distances[keep]
    del sums, keep
    diagonal = np.zeros(n, dtype=np.float32)
    diagonal[order] = _to_distance(_row_sums(permuted))
    arange = np.arange(n, dtype=np.int64)
    out = sp.coo_matrix(
        (
            np.concatenate([distances, distances, diagonal]),
            (np.concatenate([rows, cols, arange]), np.concatenate([cols, rows, arange])),
        ),
        shape=(n, n),
    ).tocsr()
    out.sort_indices()
    return out


def _to_distance(sums: np.ndarray) -> np.ndarray:
    distances = 1.0 - sums / (2.0 - sums)
    return np.clip(distances, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- public entry


def jaccard_distance(
    features: np.ndarray | torch.Tensor,
    k1: int = 30,
    k2: int = 6,
    *,
    modality: np.ndarray | None = None,
    joint_expansion: str = "balanced",
    knn: tuple[np.ndarray, np.ndarray] | None = None,
    backend: Backend = "auto",
    max_distance: float | None = None,
) -> sp.csr_matrix:
    """k-reciprocal Jaccard distance of every pair of points, as a sparse matrix.

    Args:
        features: (N, d) float32, L2-normalised rows (numpy, or a torch tensor on any device:
            the kNN search runs there, the sparse algebra on the host).
        k1: neighbour-list length, self included (clipped to N).
        k2: query-expansion depth, self included (clipped to the list length).
        modality: optional bool (N,) array, True for visible samples; switches on the
            modality-balanced query expansion of CMC.
        joint_expansion: with ``modality``, ``"balanced"`` (k2 nearest of each modality) or
            ``"released"`` (the k2 nearest overall, split by modality); see above.
        knn: optional precomputed ``(similarities, indices)`` from :func:`knn` with at least
            ``min(k1, N)`` columns, self first; the first ``min(k1, N)`` columns are used.
        backend: kNN backend when ``knn`` is not given (``"auto"``, ``"faiss"``, ``"torch"``).
        max_distance: drop pairs farther than this (diagonal kept); ``None`` keeps all
            pairs with distance < 1.

    Returns:
        (N, N) symmetric ``scipy.sparse.csr_matrix``, float32; absent entries mean 1.0. See
        the module docstring for the exact definition.
    """
    if k1 < 1 or k2 < 1:
        raise ValueError(f"k1 and k2 must be >= 1, got k1={k1}, k2={k2}")
    n = int(features.shape[0])
    if n == 0:
        return sp.csr_matrix((0, 0), dtype=np.float32)
    similarities, indices = _neighbour_lists(features, k1, knn, backend)
    weights = reciprocal_weights(features, similarities, indices)
    if modality is not None and joint_expansion == "balanced":
        modality = np.asarray(modality, dtype=bool)
        if modality.shape != (n,):
            raise ValueError(f"modality must be a bool array of shape ({n},)")
        expansion = balanced_expansion_matrix(
            knn_among(features, np.flatnonzero(modality), k2, backend=backend),
            knn_among(features, np.flatnonzero(~modality), k2, backend=backend),
        )
    elif modality is None or joint_expansion == "released":
        expansion = query_expansion_matrix(indices, k2, modality)
    else:
        raise ValueError(
            f"joint_expansion must be 'balanced' or 'released', not {joint_expansion!r}"
        )
    expanded = (expansion @ weights).tocsr()
    del weights, expansion
    return jaccard_from_weights(expanded, max_distance=max_distance)
