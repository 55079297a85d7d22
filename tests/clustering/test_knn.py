"""Exact kNN: self first, order, ties by index, both backends agree with a brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmm_core.clustering.knn import knn


def normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute_force(x: np.ndarray, k: int) -> np.ndarray:
    sims = x.astype(np.float64) @ x.astype(np.float64).T
    out = []
    for i in range(len(x)):
        others = sorted((j for j in range(len(x)) if j != i), key=lambda j: (-sims[i, j], j))
        out.append([i, *others][:k])
    return np.array(out)


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_matches_brute_force(backend):
    x = normalise(np.random.default_rng(0).standard_normal((80, 12)))
    sims, idx = knn(x, 10, backend=backend)
    assert sims.dtype == np.float32 and idx.dtype == np.int64
    assert idx.shape == sims.shape == (80, 10)
    np.testing.assert_array_equal(idx, brute_force(x, 10))
    expected = np.take_along_axis(x @ x.T, idx, axis=1)
    np.testing.assert_allclose(sims, expected, atol=1e-5)


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_duplicates_keep_self_first_and_ties_by_index(backend):
    base = normalise(np.random.default_rng(1).standard_normal((20, 6)))
    x = np.concatenate([base, base, base, base[:5]])  # many exact duplicates
    _, idx = knn(x, 6, backend=backend)
    np.testing.assert_array_equal(idx[:, 0], np.arange(len(x)))
    # point 0 has copies 20, 40, 60: all at similarity 1, listed by index after itself
    np.testing.assert_array_equal(idx[0, :4], [0, 20, 40, 60])
    np.testing.assert_array_equal(idx[60, :4], [60, 0, 20, 40])
    np.testing.assert_array_equal(idx, brute_force(x, 6))


def test_more_duplicates_than_k_still_self_first():
    x = normalise(np.ones((12, 4)))  # all identical
    _, idx = knn(x, 3)
    np.testing.assert_array_equal(idx[:, 0], np.arange(12))
    np.testing.assert_array_equal(idx[5], [5, 0, 1])


def test_k_clipped_to_n_and_torch_tensor_input():
    x = normalise(np.random.default_rng(2).standard_normal((5, 3)))
    _, idx = knn(torch.from_numpy(x), 50)
    assert idx.shape == (5, 5)
    assert sorted(idx[2]) == list(range(5))


def test_rejects_bad_arguments():
    x = normalise(np.ones((3, 2)))
    with pytest.raises(ValueError):
        knn(x, 0)
    with pytest.raises(ValueError, match="unknown kNN backend"):
        knn(x, 2, backend="annoy")
