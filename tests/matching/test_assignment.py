"""Hungarian matching with progressive rounds, and the greedy variant."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mmm_core.matching.assignment import match_clusters, match_clusters_greedy


def planted(n: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    permutation = rng.permutation(n)
    cost = 1.0 + noise * rng.random((n, n))
    cost[np.arange(n), permutation] = rng.random(n) * 0.5
    return cost, permutation


def test_recovers_a_planted_permutation_under_noise():
    cost, permutation = planted(40, noise=1.0, seed=0)
    v2r, r2v = match_clusters(cost)
    np.testing.assert_array_equal(v2r, permutation)
    np.testing.assert_array_equal(r2v, np.argsort(permutation))
    assert v2r.dtype == np.int64 and r2v.dtype == np.int64


def test_square_matching_is_optimal_by_brute_force():
    rng = np.random.default_rng(1)
    cost = rng.random((6, 6))
    best = min(itertools.permutations(range(6)), key=lambda p: cost[range(6), p].sum())
    v2r, _ = match_clusters(cost)
    assert cost[range(6), v2r].sum() == pytest.approx(cost[range(6), best].sum())


@pytest.mark.parametrize("shape", [(11, 4), (4, 11), (9, 3), (5, 5), (1, 6)])
def test_unequal_counts_give_every_cluster_a_partner(shape):
    rng = np.random.default_rng(sum(shape))
    cost = rng.random(shape)
    v2r, r2v = match_clusters(cost)
    assert v2r.shape == (shape[0],) and r2v.shape == (shape[1],)
    assert ((v2r >= 0) & (v2r < shape[1])).all()
    assert ((r2v >= 0) & (r2v < shape[0])).all()
    # the smaller side's matches are one-to-one and both maps agree on them
    if shape[0] >= shape[1]:
        np.testing.assert_array_equal(v2r[r2v], np.arange(shape[1]))
    else:
        np.testing.assert_array_equal(r2v[v2r], np.arange(shape[0]))


def test_progressive_rounds_reproduce_a_hand_computed_case():
    # 5 visible x 2 infrared. Round 1 takes the best one-to-one pair set (rows 0, 1);
    # round 2 matches rows 2, 3, 4 against both columns: rows 2 and 3 by Hungarian,
    # round 3 gives row 4 its cheapest column.
    cost = np.array(
        [
            [0.0, 9.0],
            [9.0, 0.0],
            [1.0, 5.0],
            [5.0, 1.0],
            [2.0, 3.0],
        ]
    )
    v2r, r2v = match_clusters(cost)
    np.testing.assert_array_equal(v2r, [0, 1, 0, 1, 0])
    np.testing.assert_array_equal(r2v, [0, 1])


def test_greedy_takes_each_cheapest_partner():
    cost = np.array([[0.2, 0.1, 0.9], [0.3, 0.4, 0.1], [0.5, 0.15, 0.8], [0.0, 0.0, 0.5]])
    v2r, r2v = match_clusters_greedy(cost)
    np.testing.assert_array_equal(v2r, [1, 2, 1, 0])
    np.testing.assert_array_equal(r2v, [3, 3, 1])
    # Hungarian: round 1 pairs (3, 0), (0, 1), (1, 2) one-to-one (total 0.2); round 2 row 2.
    v2r, r2v = match_clusters(cost)
    np.testing.assert_array_equal(v2r, [1, 2, 1, 0])
    np.testing.assert_array_equal(r2v, [3, 0, 1])


def test_rejects_non_finite_cost_and_one_empty_side():
    with pytest.raises(ValueError, match="NaN or infinite"):
        match_clusters(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="one side is empty"):
        match_clusters(np.zeros((3, 0)))
    v2r, r2v = match_clusters(np.zeros((0, 0)))
    assert v2r.size == 0 and r2v.size == 0
