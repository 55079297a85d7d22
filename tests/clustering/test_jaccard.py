"""Sparse Jaccard distance against a dense loop written here from the definition."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from mmm_core.clustering.jaccard import (
    expansion_half,
    jaccard_distance,
    jaccard_from_weights,
)
from mmm_core.clustering.knn import knn

# --------------------------------------------------------------------------- references


def reference_lists(x: np.ndarray, k: int) -> np.ndarray:
    """k nearest by inner product: self first, then decreasing similarity, ties by index."""
    x64 = x.astype(np.float64)
    n = len(x)
    sims = np.array([[float(np.dot(x64[i], x64[j])) for j in range(n)] for i in range(n)])
    lists = []
    for i in range(n):
        others = sorted((j for j in range(n) if j != i), key=lambda j: (-sims[i, j], j))
        lists.append([i, *others][: min(k, n)])
    return np.array(lists, dtype=np.int64)


def reference_weights(
    x: np.ndarray,
    lists: np.ndarray,
    k2: int,
    modality: np.ndarray | None = None,
    expansion: str = "released",
) -> np.ndarray:
    """Dense V after query expansion, step by step from the definition (float64)."""
    x = x.astype(np.float64)
    n, k1 = lists.shape
    h = int(np.around(k1 / 2))
    cache: dict[tuple[int, int], list[int]] = {}

    def reciprocal(i: int, k: int) -> list[int]:
        if (i, k) not in cache:
            cache[i, k] = [int(j) for j in lists[i, : k + 1] if i in lists[j, : k + 1]]
        return cache[i, k]

    weights = np.zeros((n, n))
    for i in range(n):
        base = reciprocal(i, k1)
        expanded = list(base)
        for c in base:
            candidate = reciprocal(c, h)
            if len(set(candidate) & set(base)) > 2 / 3 * len(candidate):
                expanded += candidate
        members = np.unique(expanded)
        logits = -(2 - 2 * x[members] @ x[i])
        weights[i, members] = np.exp(logits) / np.exp(logits).sum()

    depth = min(k2, k1)
    expanded_weights = np.zeros_like(weights)
    sims = x @ x.T
    for i in range(n):
        near = lists[i, :depth]
        if modality is None:
            expanded_weights[i] = weights[near].mean(axis=0)
        elif expansion == "balanced":
            # k2 nearest of each modality (self first in its own), each side half the mass
            means = []
            for side in (True, False):
                pool = [j for j in range(n) if modality[j] == side]
                pool.sort(key=lambda j: (j != i, -sims[i, j], j))
                if pool:
                    means.append(weights[pool[:k2]].mean(axis=0))
            expanded_weights[i] = np.mean(means, axis=0)
        else:
            groups = [[j for j in near if modality[j]], [j for j in near if not modality[j]]]
            means = [weights[g].mean(axis=0) for g in groups if g]
            expanded_weights[i] = np.mean(means, axis=0)
    return expanded_weights


def reference_distance_rows(expanded_weights: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """1 - sum min / sum max between the given rows and every row."""
    query = expanded_weights[rows]
    smaller = np.stack([np.minimum(q, expanded_weights).sum(axis=1) for q in query])
    larger = np.stack([np.maximum(q, expanded_weights).sum(axis=1) for q in query])
    # The identity used by the fast code: rows sum to 1, so sum max = 2 - sum min.
    np.testing.assert_allclose(expanded_weights.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(larger, 2 - smaller, atol=1e-12)
    return 1 - smaller / larger


def reference_jaccard(
    x: np.ndarray,
    lists: np.ndarray,
    k2: int,
    modality: np.ndarray | None = None,
    expansion: str = "released",
) -> np.ndarray:
    """Dense Jaccard distance from the definition (float64)."""
    expanded_weights = reference_weights(x, lists, k2, modality, expansion)
    return reference_distance_rows(expanded_weights, np.arange(len(x)))


def clustered(n: int, blobs: int, dim: int = 16, seed: int = 0, noise: float = 0.6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((blobs, dim))
    labels = rng.integers(0, blobs, n)
    x = centres[labels] + noise * rng.standard_normal((n, dim))
    return normalise(x)


def normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def check_against_reference(
    x: np.ndarray, k1: int, k2: int, modality: np.ndarray | None = None, **kwargs
) -> sp.csr_matrix:
    lists = reference_lists(x, k1)
    expansion = kwargs.get("joint_expansion", "balanced")
    expected = reference_jaccard(x, lists, k2, modality, expansion)
    got = jaccard_distance(x, k1, k2, modality=modality, **kwargs)
    assert isinstance(got, sp.csr_matrix)
    assert got.dtype == np.float32
    assert got.shape == (len(x), len(x))
    dense = got.toarray()
    # absent entries mean 1.0
    stored = np.zeros(got.shape, dtype=bool)
    coo = got.tocoo()
    stored[coo.row, coo.col] = True
    dense[~stored] = 1.0
    assert np.abs(dense - expected).max() < 1e-5
    # stored entries: exactly the pairs with distance < 1, plus the whole diagonal
    np.testing.assert_array_equal(stored, (expected < 1 - 1e-6) | np.eye(len(x), dtype=bool))
    assert (got != got.T).nnz == 0
    return got


# --------------------------------------------------------------------------- tests


def test_expansion_half_uses_numpy_rounding():
    assert [expansion_half(k) for k in (30, 20, 5, 7, 1, 40)] == [15, 10, 2, 4, 0, 20]


def test_random_points_match_dense_definition():
    rng = np.random.default_rng(1)
    x = normalise(rng.standard_normal((120, 8)))
    check_against_reference(x, k1=20, k2=6)


@pytest.mark.parametrize("k1,k2", [(30, 6), (12, 1), (7, 3), (20, 4)])
def test_clustered_points_match_dense_definition(k1, k2):
    x = clustered(200, 10, seed=k1)
    got = check_against_reference(x, k1=k1, k2=k2)
    assert got.nnz < 200 * 200  # really sparse on clustered data


def test_duplicates_match_dense_definition():
    x = clustered(90, 6, seed=3)
    x = np.concatenate([x, x[:30], x[:10]])  # some points three times
    got = check_against_reference(x, k1=15, k2=6)
    # identical points are at distance 0 from each other
    assert got[0, 90] == pytest.approx(0.0, abs=1e-6)
    assert got[0, 120] == pytest.approx(0.0, abs=1e-6)


def test_fewer_points_than_k1_clips_k1_to_n():
    x = clustered(9, 3, seed=4)
    got = check_against_reference(x, k1=30, k2=6)
    # k1 > N behaves exactly like k1 = N
    np.testing.assert_array_equal(got.toarray(), jaccard_distance(x, 9, 6).toarray())


def test_k2_larger_than_k1_is_clipped_to_the_list():
    x = clustered(150, 8, seed=5)
    got = check_against_reference(x, k1=10, k2=25)
    np.testing.assert_array_equal(got.toarray(), jaccard_distance(x, 10, 10).toarray())


@pytest.mark.parametrize("expansion", ["balanced", "released"])
def test_modality_balanced_variants_match_dense_definition(expansion):
    x = clustered(160, 8, seed=6)
    rng = np.random.default_rng(6)
    modality = rng.random(160) < 0.6
    got = check_against_reference(x, k1=20, k2=8, modality=modality, joint_expansion=expansion)
    plain = jaccard_distance(x, 20, 8)
    assert abs(got - plain).max() > 1e-3  # the balancing changes the result


def test_the_two_readings_differ_and_torch_agrees_with_faiss():
    x = clustered(120, 6, seed=16)
    modality = np.random.default_rng(16).random(120) < 0.5
    balanced = jaccard_distance(x, 15, 6, modality=modality, joint_expansion="balanced")
    released = jaccard_distance(x, 15, 6, modality=modality, joint_expansion="released")
    assert abs(balanced - released).max() > 1e-3
    torch_backend = jaccard_distance(x, 15, 6, modality=modality, backend="torch")
    assert abs(balanced - torch_backend).max() < 1e-6
    with pytest.raises(ValueError, match="joint_expansion"):
        jaccard_distance(x, 15, 6, modality=modality, joint_expansion="both")


@pytest.mark.parametrize("expansion", ["balanced", "released"])
def test_modality_all_one_side_equals_plain(expansion):
    x = clustered(100, 5, seed=7)
    got = jaccard_distance(x, 15, 6, modality=np.ones(100, dtype=bool), joint_expansion=expansion)
    plain = jaccard_distance(x, 15, 6)
    assert abs(got - plain).max() < 1e-6


def test_injected_knn_and_torch_backend_agree():
    x = clustered(150, 6, seed=8)
    lists = knn(x, 20, backend="torch")
    a = jaccard_distance(x, 20, 6, knn=lists)
    b = jaccard_distance(torch.from_numpy(x), 20, 6, backend="torch")
    c = jaccard_distance(x, 20, 6, backend="faiss")
    assert abs(a - b).max() < 1e-6
    assert abs(a - c).max() < 1e-6
    # longer injected lists are cut to k1
    longer = knn(x, 40)
    assert abs(jaccard_distance(x, 20, 6, knn=longer) - a).max() < 1e-6


def test_injected_knn_is_validated():
    x = clustered(30, 3, seed=9)
    sims, idx = knn(x, 10)
    with pytest.raises(ValueError, match="start with the point itself"):
        jaccard_distance(x, 10, 3, knn=(sims[:, ::-1], idx[:, ::-1]))
    padded = idx.copy()
    padded[:, -1] = -1
    with pytest.raises(ValueError, match="no -1 padding"):
        jaccard_distance(x, 10, 3, knn=(sims, padded))
    repeated = idx.copy()
    repeated[:, -1] = repeated[:, -2]
    with pytest.raises(ValueError, match="repeat an index"):
        jaccard_distance(x, 10, 3, knn=(sims, repeated))
    with pytest.raises(ValueError, match="shape"):
        jaccard_distance(x, 12, 3, knn=(sims, idx))


def test_max_distance_keeps_only_close_pairs_and_the_diagonal():
    x = clustered(120, 6, seed=10)
    full = jaccard_distance(x, 15, 6).tocoo()
    cut = jaccard_distance(x, 15, 6, max_distance=0.5).tocoo()
    on_diagonal = full.row == full.col
    kept = (full.data <= 0.5) | on_diagonal
    assert 0 < kept.sum() < full.nnz
    expected = sorted(zip(full.row[kept], full.col[kept], full.data[kept], strict=True))
    got = sorted(zip(cut.row, cut.col, cut.data, strict=True))
    assert got == expected


def test_diagonal_is_stored_explicitly():
    x = clustered(50, 3, seed=11)
    got = jaccard_distance(x, 10, 4)
    coo = got.tocoo()
    diag = coo.row == coo.col
    assert diag.sum() == 50
    np.testing.assert_allclose(coo.data[diag], 0.0, atol=1e-6)


def test_weights_with_rows_summing_to_one_give_the_min_max_form():
    rng = np.random.default_rng(12)
    dense = rng.random((40, 40)) * (rng.random((40, 40)) < 0.15)
    dense[np.arange(40), np.arange(40)] += 0.1
    dense /= dense.sum(axis=1, keepdims=True)
    got = jaccard_from_weights(sp.csr_matrix(dense)).toarray()
    smaller = np.minimum(dense[:, None], dense[None]).sum(-1)
    larger = np.maximum(dense[:, None], dense[None]).sum(-1)
    expected = 1 - smaller / larger
    shares = smaller > 0
    np.testing.assert_allclose(got[shares], expected[shares], atol=1e-6)
    assert (got[~shares] == 0).all()  # absent


def test_single_point_and_empty_input():
    one = jaccard_distance(normalise(np.ones((1, 4))), 30, 6)
    assert one.shape == (1, 1) and one.nnz == 1 and one[0, 0] == 0.0
    assert jaccard_distance(np.zeros((0, 4), np.float32)).shape == (0, 0)


def test_larger_set_matches_dense_definition_on_a_sample_of_rows():
    # N = 2,000: dense V from the definition, distances checked on 40 rows against all.
    x = clustered(2000, 60, dim=32, seed=13, noise=0.5)
    k1, k2 = 20, 6
    lists = reference_lists_fast(x, k1)
    sims = np.take_along_axis(x @ x.T, lists, axis=1)
    got = jaccard_distance(x, k1, k2, knn=(sims, lists))
    rows = np.arange(0, 2000, 50)
    expected = reference_distance_rows(reference_weights(x, lists, k2), rows)
    sub = got[rows].tocoo()
    dense = np.ones((rows.size, 2000))
    dense[sub.row, sub.col] = sub.data
    assert np.abs(dense - expected).max() < 1e-5
    np.testing.assert_array_equal(lists, knn(x, k1)[1])  # same lists as the library's


def reference_lists_fast(x: np.ndarray, k: int) -> np.ndarray:
    """Vectorised reference_lists (self first, then similarity, ties by index)."""
    sims = x.astype(np.float64) @ x.astype(np.float64).T
    np.fill_diagonal(sims, np.inf)
    n = len(x)
    order = np.lexsort((np.broadcast_to(np.arange(n), (n, n)), -sims), axis=1)
    return order[:, :k].astype(np.int64)
