"""DBSCAN on the sparse Jaccard graph: blobs, outliers, sparse == dense, labels order."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.cluster import DBSCAN

from mmm_core.clustering.dbscan import dbscan_labels, renumber_labels
from mmm_core.clustering.jaccard import jaccard_distance


def blobs_with_outliers(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((5, 32)) * 3
    truth = np.repeat(np.arange(5), 30)
    x = centres[truth] + 0.3 * rng.standard_normal((150, 32))
    outliers = rng.standard_normal((8, 32)) * 3
    x = np.concatenate([x, outliers])
    truth = np.concatenate([truth, np.full(8, -1)])
    order = rng.permutation(len(x))
    x = x[order] / np.linalg.norm(x[order], axis=1, keepdims=True)
    return x.astype(np.float32), truth[order]


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = {(int(x), int(y)) for x, y in zip(a, b, strict=True)}
    return len(pairs) == len({x for x, _ in pairs}) == len({y for _, y in pairs})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_separated_blobs_and_outliers(seed):
    x, truth = blobs_with_outliers(seed)
    labels = dbscan_labels(jaccard_distance(x, 30, 6), eps=0.2, min_samples=4)
    assert labels.dtype == np.int64
    assert labels.max() + 1 == 5
    assert (labels[truth == -1] == -1).all()
    assert (labels[truth >= 0] >= 0).all()
    assert same_partition(labels[truth >= 0], truth[truth >= 0])


def test_labels_numbered_by_smallest_member():
    x, _ = blobs_with_outliers(1)
    labels = dbscan_labels(jaccard_distance(x, 20, 6), eps=0.6, min_samples=4)
    clustered = labels[labels >= 0]
    firsts = [int(np.flatnonzero(labels == c)[0]) for c in range(labels.max() + 1)]
    assert firsts == sorted(firsts)
    assert set(clustered) == set(range(labels.max() + 1))


def test_sparse_equals_sklearn_on_the_dense_matrix():
    x, _ = blobs_with_outliers(2)
    dist = jaccard_distance(x, 15, 4)
    dense = dist.toarray()
    coo = dist.tocoo()
    stored = np.zeros(dense.shape, dtype=bool)
    stored[coo.row, coo.col] = True
    dense[~stored] = 1.0
    for eps in (0.3, 0.5, 0.7):
        expected = renumber_labels(
            DBSCAN(eps=eps, min_samples=4, metric="precomputed").fit_predict(dense)
        )
        np.testing.assert_array_equal(dbscan_labels(dist, eps, 4), expected)
        np.testing.assert_array_equal(dbscan_labels(dense, eps, 4), expected)


def test_explicit_zeros_are_neighbours():
    # three identical points (distance 0 stored explicitly) and one far point
    indices = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 3])
    dist = sp.csr_matrix((np.zeros(10), indices, np.array([0, 3, 6, 9, 10])), shape=(4, 4))
    assert dist.nnz == 10
    np.testing.assert_array_equal(dbscan_labels(dist, 0.1, 3), [0, 0, 0, -1])


def test_eps_at_least_one_makes_everything_neighbours():
    dist = sp.identity(6, format="csr") * 0.0
    np.testing.assert_array_equal(dbscan_labels(dist, 1.0, 4), np.zeros(6))
    np.testing.assert_array_equal(dbscan_labels(dist, 1.0, 7), np.full(6, -1))
    with pytest.raises(ValueError):
        dbscan_labels(dist, 0.0, 4)


def test_renumber_labels():
    np.testing.assert_array_equal(
        renumber_labels(np.array([5, -1, 2, 5, 0, 2])), [0, -1, 1, 0, 2, 1]
    )
