"""SCA soft weights: top-k support, rows summing to 1, a hand-computed row."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmm_core.matching.soft import sca_weights


def test_rows_sum_to_one_with_top_k_support():
    cost = torch.rand(12, 7, generator=torch.Generator().manual_seed(0))
    w_v2r, w_r2v = sca_weights(cost, topk=3, temperature=0.05)
    assert w_v2r.shape == (12, 7) and w_r2v.shape == (7, 12)
    assert w_v2r.dtype == torch.float32
    torch.testing.assert_close(w_v2r.sum(1), torch.ones(12))
    torch.testing.assert_close(w_r2v.sum(1), torch.ones(7))
    assert ((w_v2r > 0).sum(1) == 3).all() and ((w_r2v > 0).sum(1) == 3).all()
    # the support is the three cheapest partners
    cheapest = torch.argsort(cost, dim=1)[:, :3]
    assert torch.equal(
        torch.sort(torch.nonzero(w_v2r)[:, 1].view(12, 3), 1).values, torch.sort(cheapest, 1).values
    )
    cheapest_r = torch.argsort(cost.T, dim=1)[:, :3]
    assert torch.equal(
        torch.sort(torch.nonzero(w_r2v)[:, 1].view(7, 3), 1).values,
        torch.sort(cheapest_r, 1).values,
    )


def test_hand_computed_row():
    cost = np.array([[0.1, 0.3, 0.2, 0.9]])
    w_v2r, w_r2v = sca_weights(cost, topk=2, temperature=0.1)
    e1, e2 = math.exp(-1.0), math.exp(-2.0)
    np.testing.assert_allclose(w_v2r.numpy(), [[e1 / (e1 + e2), 0, e2 / (e1 + e2), 0]], atol=1e-6)
    np.testing.assert_allclose(w_r2v.numpy(), np.ones((4, 1)))  # one visible cluster


def test_ties_go_to_the_lowest_index_and_topk_is_clipped():
    cost = torch.tensor([[0.5, 0.5, 0.5, 0.5]])
    w_v2r, _ = sca_weights(cost, topk=2)
    np.testing.assert_allclose(w_v2r.numpy(), [[0.5, 0.5, 0.0, 0.0]])
    w_all, _ = sca_weights(cost, topk=10)
    np.testing.assert_allclose(w_all.numpy(), [[0.25] * 4])


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        sca_weights(torch.zeros(2, 2), topk=0)
    with pytest.raises(ValueError):
        sca_weights(torch.zeros(2, 2), temperature=0.0)
