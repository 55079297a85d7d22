"""SCA soft weights: top-k support, rows summing to 1, a hand-computed row."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmm_core.matching.soft import sca_weights


def test_rows_sum_to_one_with_top_k_support():
    cost = np.random.default_rng(0).random((12, 7))
    w_v2r, w_r2v = sca_weights(cost, topk=3, temperature=0.05)
    assert w_v2r.shape == (12, 7) and w_r2v.shape == (7, 12)
    assert w_v2r.dtype == np.float32 and w_r2v.dtype == np.float32
    np.testing.assert_allclose(w_v2r.sum(1), np.ones(12), rtol=1e-6)
    np.testing.assert_allclose(w_r2v.sum(1), np.ones(7), rtol=1e-6)
    assert ((w_v2r > 0).sum(1) == 3).all() and ((w_r2v > 0).sum(1) == 3).all()
    # the support is the three cheapest partners
    for weights, costs in ((w_v2r, cost), (w_r2v, cost.T)):
        support = [set(np.flatnonzero(row)) for row in weights]
        assert support == [set(np.argsort(row)[:3]) for row in costs]


def test_hand_computed_row():
    cost = np.array([[0.1, 0.3, 0.2, 0.9]])
    w_v2r, w_r2v = sca_weights(cost, topk=2, temperature=0.1)
    e1, e2 = math.exp(-1.0), math.exp(-2.0)
    np.testing.assert_allclose(w_v2r, [[e1 / (e1 + e2), 0, e2 / (e1 + e2), 0]], atol=1e-6)
    np.testing.assert_allclose(w_r2v, np.ones((4, 1)))  # one visible cluster


def test_ties_go_to_the_lowest_index_and_topk_is_clipped():
    cost = np.array([[0.5, 0.5, 0.5, 0.5]])
    w_v2r, _ = sca_weights(cost, topk=2)
    np.testing.assert_allclose(w_v2r, [[0.5, 0.5, 0.0, 0.0]])
    w_all, _ = sca_weights(cost, topk=10)
    np.testing.assert_allclose(w_all, [[0.25] * 4])


def test_a_large_cost_gap_underflows_to_zero_not_nan():
    """Costs 1 apart at temperature 0.01: exp(-100) relative weight, the row still sums to 1."""
    w_v2r, _ = sca_weights(np.array([[0.0, 1.0, 2.0]]), topk=3, temperature=0.01)
    assert np.isfinite(w_v2r).all()
    np.testing.assert_allclose(w_v2r, [[1.0, 0.0, 0.0]], atol=1e-30)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        sca_weights(np.zeros((2, 2)), topk=0)
    with pytest.raises(ValueError):
        sca_weights(np.zeros((2, 2)), temperature=0.0)
    with pytest.raises(ValueError):
        sca_weights(np.zeros(3))
