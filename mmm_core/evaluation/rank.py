"""Ranking metrics of the VI-ReID protocols: CMC, mAP and mINP (SPEC section 4).

Pure NumPy functions: arrays in, arrays out, no I/O. A distance matrix has one row per query
and one column per gallery item, smaller = more similar; for L2-normalised features the
protocols use ``-(query @ gallery.T)``, exactly the community reference's ranking.

Every ranking is a *stable* sort (the order of ``np.argsort(kind="stable")``): equal distances
keep the gallery order (see `stable_argsort_rows` for how it is made fast). Queries are
processed in chunks of rows, each chunk fully vectorised.

Definitions, for one query whose kept ranked gallery list holds M >= 1 true matches at
1-based ranks r_1 < ... < r_M:

- AP = (1/M) sum_i i / r_i; INP = M / r_M (Ye et al., "Deep Learning for Person
  Re-identification: A Survey and Outlook");
- SYSU-MM01 CMC is identity-level: the ranked list of *identities* (each gallery id counted
  once, at its first occurrence in the kept list); CMC[k] = 1 when the query's id is among
  the first k + 1 identities. A list with fewer than `max_rank` identities is padded with its
  last value;
- RegDB CMC is image-level: CMC[k] = 1 when a true match is among the first k + 1 images.

Only *valid* queries (at least one match in the kept list) are averaged, for CMC, mAP and
mINP alike; with no valid query at all a ValueError is raised. (The community reference sums
the CMC rows of all queries and divides by the number of valid ones; an invalid query's row
is all zeros, so the numbers are the same.)
"""

from __future__ import annotations

import numpy as np

__all__ = ["eval_regdb", "eval_sysu", "stable_argsort_rows", "top_k_ranked"]

# Rows of the distance matrix handled at once: bounds the temporary (chunk x gallery) arrays
# to a few tens of MB for SYSU-sized galleries.
_CHUNK_ELEMENTS = 2_000_000

# SYSU-MM01 rule: cam3 (indoor IR) shares its room with cam2 (indoor RGB), so for a cam3
# query every cam2 gallery image is removed.
_SYSU_QUERY_CAMERA = 3
_SYSU_REMOVED_GALLERY_CAMERA = 2


def _check_inputs(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray | None,
    g_camids: np.ndarray | None,
    max_rank: int,
) -> tuple[np.ndarray, ...]:
    distmat = np.asarray(distmat)
    if distmat.ndim != 2:
        raise ValueError(f"distmat must be 2-D (queries x gallery), got shape {distmat.shape}")
    num_q, num_g = distmat.shape
    if num_q == 0 or num_g == 0:
        raise ValueError(f"distmat is empty: shape {distmat.shape}")
    if distmat.dtype.kind not in "fiu":
        raise ValueError(f"distmat must be real-valued, got dtype {distmat.dtype}")
    if np.isnan(distmat).any():
        raise ValueError("distmat contains NaN")
    arrays = []
    for name, values, expected in (
        ("q_pids", q_pids, num_q),
        ("g_pids", g_pids, num_g),
        ("q_camids", q_camids, num_q),
        ("g_camids", g_camids, num_g),
    ):
        if values is None:
            arrays.append(None)
            continue
        values = np.asarray(values)
        if values.shape != (expected,):
            raise ValueError(
                f"{name} must have shape ({expected},) to match distmat {distmat.shape}, "
                f"got {values.shape}"
            )
        arrays.append(values)
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    return (distmat, *arrays)


def _chunks(num_q: int, num_g: int) -> list[tuple[int, int]]:
    """Row ranges [start, stop) of at most about `_CHUNK_ELEMENTS` matrix entries each."""
    step = max(1, _CHUNK_ELEMENTS // num_g)
    return [(start, min(start + step, num_q)) for start in range(0, num_q, step)]


def stable_argsort_rows(block: np.ndarray) -> np.ndarray:
    """Row-wise argsort equal to ``np.argsort(block, axis=1, kind="stable")``, faster.

    NumPy's default (introsort, SIMD) sort is several times faster than its stable sort but
    orders equal values arbitrarily. A row without equal values has one sorted order, so the
    fast result is kept for it; only rows that contain ties are sorted again, stably.
    `block` must not contain NaN.
    """
    order = np.argsort(block, axis=1)
    ordered = np.take_along_axis(block, order, axis=1)
    tied = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
    if tied.any():
        order[tied] = np.argsort(block[tied], axis=1, kind="stable")
    return order


def _ap_inp(matches: np.ndarray, kept_rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AP and INP of each row; rows without a match give NaN.

    matches: (c, G) bool, true matches in ranked order (removed items already False).
    kept_rank: (c, G) 1-based rank of each ranked position within the kept list.
    """
    num_matches = matches.sum(axis=1)
    # i-th match (1-based) at each match position, divided by its rank in the kept list.
    match_index = np.cumsum(matches, axis=1, dtype=np.int64)
    # Removed items before the first kept one have kept_rank 0; they are never matches.
    precision = np.where(matches, match_index / np.maximum(kept_rank, 1), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = precision.sum(axis=1) / num_matches
        last_rank = np.where(matches, kept_rank, 0).max(axis=1)
        inp = num_matches / last_rank
    return ap, inp


def eval_sysu(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 20,
) -> tuple[np.ndarray, float, float]:
    """SYSU-MM01 metrics (IR query -> RGB gallery): identity-level CMC, mAP, mINP.

    Args:
        distmat: (num_q, num_g) real distances, smaller = more similar (e.g. ``-(q @ g.T)``
            of L2-normalised features). Ties keep the gallery order (stable sort).
        q_pids, g_pids: (num_q,), (num_g,) integer identity labels.
        q_camids, g_camids: (num_q,), (num_g,) integer camera numbers (1..6); for a query
            from camera 3 every gallery item of camera 2 is removed.
        max_rank: length of the returned CMC curve.

    Returns:
        ``(cmc, mAP, mINP)``: cmc a float64 array of shape (max_rank,), values in [0, 1];
        mAP and mINP floats in [0, 1]. All averaged over the valid queries.

    Raises:
        ValueError: on shape mismatches, or when no query has a match in its kept gallery.
    """
    distmat, q_pids, g_pids, q_camids, g_camids = _check_inputs(
        distmat, q_pids, g_pids, q_camids, g_camids, max_rank
    )
    num_q, num_g = distmat.shape
    # Compact identity codes over query and gallery together; gallery columns grouped by id so
    # that each id's first kept occurrence is one `minimum.reduceat` over its column block.
    _, codes = np.unique(np.concatenate([q_pids, g_pids]), return_inverse=True)
    q_codes, g_codes = codes[:num_q], codes[num_q:]
    by_id = np.argsort(g_codes, kind="stable")
    block_ids, block_starts = np.unique(g_codes[by_id], return_index=True)
    removable = g_camids == _SYSU_REMOVED_GALLERY_CAMERA

    cmc_sum = np.zeros(max_rank, dtype=np.float64)
    ap_values: list[np.ndarray] = []
    inp_values: list[np.ndarray] = []
    ranks = np.arange(max_rank)
    for start, stop in _chunks(num_q, num_g):
        rows = np.arange(stop - start)
        order = stable_argsort_rows(distmat[start:stop])
        filtered = q_camids[start:stop] == _SYSU_QUERY_CAMERA
        removed = filtered[:, None] & removable[order]
        keep = ~removed
        kept_rank = np.cumsum(keep, axis=1, dtype=np.int64)
        matches = (g_codes[order] == q_codes[start:stop, None]) & keep

        ap, inp = _ap_inp(matches, kept_rank)
        valid = matches.any(axis=1)
        ap_values.append(ap[valid])
        inp_values.append(inp[valid])

        # Identity-level CMC. position[q, j]: ranked position of gallery column j in row q,
        # `num_g` (beyond every position) for removed columns; the first kept occurrence of
        # each id is the minimum over its columns. The query's identity rank is 1 + the number
        # of ids whose first occurrence comes before the query id's first occurrence.
        position = np.empty_like(order)
        position[rows[:, None], order] = np.arange(num_g)
        position[filtered[:, None] & removable[None, :]] = num_g
        first = np.minimum.reduceat(position[:, by_id], block_starts, axis=1)
        own_block = np.searchsorted(block_ids, q_codes[start:stop])
        own_block = np.minimum(own_block, len(block_ids) - 1)
        own_first = first[rows, own_block]
        identity_rank = (first < own_first[:, None]).sum(axis=1)  # 0-based
        hits = valid[:, None] & (identity_rank[:, None] <= ranks[None, :])
        cmc_sum += hits.sum(axis=0)

    ap_all = np.concatenate(ap_values)
    num_valid = ap_all.size
    if num_valid == 0:
        raise ValueError(
            "no valid query: no query identity appears in its (camera-filtered) gallery"
        )
    return cmc_sum / num_valid, float(ap_all.mean()), float(np.concatenate(inp_values).mean())


def eval_regdb(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    max_rank: int = 20,
) -> tuple[np.ndarray, float, float]:
    """RegDB metrics (visible <-> thermal, no camera filter): image-level CMC, mAP, mINP.

    Args:
        distmat: (num_q, num_g) real distances, smaller = more similar. Stable sort.
        q_pids, g_pids: (num_q,), (num_g,) integer identity labels.
        max_rank: length of the returned CMC curve (padded with its last value when the
            gallery is shorter).

    Returns:
        ``(cmc, mAP, mINP)``: cmc float64 of shape (max_rank,), mAP and mINP floats in [0, 1],
        averaged over the valid queries (at least one match in the gallery).

    Raises:
        ValueError: on shape mismatches, or when no query has a match.
    """
    distmat, q_pids, g_pids, _, _ = _check_inputs(distmat, q_pids, g_pids, None, None, max_rank)
    num_q, num_g = distmat.shape
    cmc_sum = np.zeros(max_rank, dtype=np.float64)
    ap_values: list[np.ndarray] = []
    inp_values: list[np.ndarray] = []
    ranks = np.arange(max_rank)
    kept_rank = np.broadcast_to(np.arange(1, num_g + 1), (1, num_g))
    for start, stop in _chunks(num_q, num_g):
        order = stable_argsort_rows(distmat[start:stop])
        matches = g_pids[order] == q_pids[start:stop, None]
        ap, inp = _ap_inp(matches, kept_rank)
        valid = matches.any(axis=1)
        ap_values.append(ap[valid])
        inp_values.append(inp[valid])
        first_match = matches.argmax(axis=1)  # 0-based position of the first match
        hits = valid[:, None] & (first_match[:, None] <= ranks[None, :])
        cmc_sum += hits.sum(axis=0)

    ap_all = np.concatenate(ap_values)
    num_valid = ap_all.size
    if num_valid == 0:
        raise ValueError("no valid query: no query identity appears in the gallery")
    return cmc_sum / num_valid, float(ap_all.mean()), float(np.concatenate(inp_values).mean())


def top_k_ranked(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray | None = None,
    g_camids: np.ndarray | None = None,
    top_k: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """The first `top_k` kept gallery items of each query, for ranked-list pictures.

    With camera ids given, the SYSU-MM01 rule applies (cam2 removed for cam3 queries);
    without, nothing is removed (RegDB).

    Returns:
        ``(indices, correct)``: (num_q, top_k) int64 gallery indices in ranked order, -1 where
        the kept list is shorter; (num_q, top_k) bool, True where the item has the query's id.
    """
    distmat, q_pids, g_pids, q_camids, g_camids = _check_inputs(
        distmat, q_pids, g_pids, q_camids, g_camids, top_k
    )
    if (q_camids is None) != (g_camids is None):
        raise ValueError("give both q_camids and g_camids, or neither")
    num_q, num_g = distmat.shape
    order = stable_argsort_rows(distmat)
    if q_camids is not None:
        removed = (q_camids == _SYSU_QUERY_CAMERA)[:, None] & (
            g_camids[order] == _SYSU_REMOVED_GALLERY_CAMERA
        )
        # Stable partition: kept items first, in ranked order.
        order = np.take_along_axis(order, np.argsort(removed, axis=1, kind="stable"), axis=1)
        num_kept = num_g - removed.sum(axis=1)
    else:
        num_kept = np.full(num_q, num_g)
    indices = np.full((num_q, top_k), -1, dtype=np.int64)
    width = min(top_k, num_g)
    indices[:, :width] = order[:, :width]
    indices[np.arange(top_k)[None, :] >= num_kept[:, None]] = -1
    correct = (indices >= 0) & (g_pids[np.maximum(indices, 0)] == q_pids[:, None])
    return indices, correct
