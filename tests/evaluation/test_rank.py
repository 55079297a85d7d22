"""CMC / mAP / mINP: hand-computed cases and a plain per-query loop on random data."""

from __future__ import annotations

import numpy as np
import pytest

from mmm_core.evaluation import rank
from mmm_core.evaluation.rank import eval_regdb, eval_sysu, stable_argsort_rows, top_k_ranked

# ---------------------------------------------------------------------------------------------
# Plain references: one query at a time, following the definitions literally.


def _ap_inp(matches: np.ndarray) -> tuple[float, float]:
    ranks = [r + 1 for r, m in enumerate(matches) if m]
    ap = sum((i + 1) / r for i, r in enumerate(ranks)) / len(ranks)
    return ap, len(ranks) / ranks[-1]


def plain_eval_sysu(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    cmc_rows, aps, inps = [], [], []
    for q in range(distmat.shape[0]):
        order = sorted(range(distmat.shape[1]), key=lambda j: (distmat[q, j], j))
        kept = [j for j in order if not (q_camids[q] == 3 and g_camids[j] == 2)]
        matches = [g_pids[j] == q_pids[q] for j in kept]
        if not any(matches):
            continue
        identities = []
        for j in kept:
            if g_pids[j] not in identities:
                identities.append(g_pids[j])
        hit = identities.index(q_pids[q])
        cmc_rows.append([1.0 if k >= hit else 0.0 for k in range(max_rank)])
        ap, inp = _ap_inp(matches)
        aps.append(ap)
        inps.append(inp)
    return np.mean(cmc_rows, axis=0), float(np.mean(aps)), float(np.mean(inps))


def plain_eval_regdb(distmat, q_pids, g_pids, max_rank=20):
    cmc_rows, aps, inps = [], [], []
    for q in range(distmat.shape[0]):
        order = sorted(range(distmat.shape[1]), key=lambda j: (distmat[q, j], j))
        matches = [g_pids[j] == q_pids[q] for j in order]
        if not any(matches):
            continue
        first = matches.index(True)
        cmc_rows.append([1.0 if k >= first else 0.0 for k in range(max_rank)])
        ap, inp = _ap_inp(matches)
        aps.append(ap)
        inps.append(inp)
    return np.mean(cmc_rows, axis=0), float(np.mean(aps)), float(np.mean(inps))


# ---------------------------------------------------------------------------------------------
# Hand-computed cases.


def _one_query(q_pid, q_cam, g_pids, g_cams, distances):
    distmat = np.asarray([distances], dtype=np.float64)
    return eval_sysu(
        distmat, np.array([q_pid]), np.array(g_pids), np.array([q_cam]), np.array(g_cams)
    )


def test_cam3_query_drops_every_cam2_gallery_item():
    g_pids, g_cams, dist = [1, 2, 1, 3], [2, 1, 1, 4], [0.1, 0.2, 0.3, 0.4]
    # cam3: the cam2 match is removed -> kept list (2, 1, 3); match at rank 2.
    cmc, mAP, mINP = _one_query(1, 3, g_pids, g_cams, dist)
    np.testing.assert_array_equal(cmc, [0.0] + [1.0] * 19)
    assert mAP == pytest.approx(1 / 2)
    assert mINP == pytest.approx(1 / 2)
    # cam6: nothing removed -> matches at ranks 1 and 3.
    cmc, mAP, mINP = _one_query(1, 6, g_pids, g_cams, dist)
    np.testing.assert_array_equal(cmc, [1.0] * 20)
    assert mAP == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert mINP == pytest.approx(2 / 3)


def test_cam3_rule_removes_cam2_of_other_ids_too():
    # The cam2 item of id 5 is ranked first; removed for cam3, so id 1 moves to rank 1.
    cmc, mAP, _ = _one_query(1, 3, [5, 1], [2, 1], [0.0, 0.5])
    assert cmc[0] == 1.0 and mAP == 1.0
    cmc, mAP, _ = _one_query(1, 6, [5, 1], [2, 1], [0.0, 0.5])
    assert cmc[0] == 0.0 and mAP == 0.5


def test_query_whose_only_match_is_removed_is_not_counted():
    distmat = np.array([[0.1, 0.2], [0.1, 0.2]])
    q_pids, q_cams = np.array([1, 2]), np.array([3, 6])
    g_pids, g_cams = np.array([1, 2]), np.array([2, 4])
    # Query 0 (cam3) loses its only match; query 1 finds its id at rank 1 of (1, 2).
    cmc, mAP, mINP = eval_sysu(distmat, q_pids, g_pids, q_cams, g_cams)
    assert cmc[0] == 0.0 and cmc[1] == 1.0
    assert mAP == pytest.approx(0.5) and mINP == pytest.approx(0.5)


def test_query_id_absent_from_gallery_is_not_averaged():
    distmat = np.array([[0.3, 0.1], [0.2, 0.4]])
    cmc, mAP, mINP = eval_sysu(
        distmat, np.array([1, 9]), np.array([1, 2]), np.array([6, 6]), np.array([1, 1])
    )
    # Only query 0 counts: ranked (2, 1), match at rank 2.
    np.testing.assert_array_equal(cmc[:3], [0.0, 1.0, 1.0])
    assert mAP == pytest.approx(0.5) and mINP == pytest.approx(0.5)


def test_fewer_gallery_ids_than_max_rank_pads_with_last_value():
    cmc, _, _ = _one_query(2, 6, [1, 2, 3], [1, 1, 1], [0.1, 0.2, 0.3])
    assert cmc.shape == (20,)
    np.testing.assert_array_equal(cmc, [0.0] + [1.0] * 19)
    cmc, _, _ = eval_regdb(np.array([[0.1, 0.2, 0.3]]), np.array([3]), np.array([1, 2, 3]))
    np.testing.assert_array_equal(cmc, [0.0, 0.0] + [1.0] * 18)


def test_ties_keep_gallery_order():
    # All distances equal: ranked list is the gallery order (2, 1, 2, 1).
    cmc, mAP, mINP = _one_query(1, 6, [2, 1, 2, 1], [1, 1, 4, 5], [0.0] * 4)
    np.testing.assert_array_equal(cmc[:2], [0.0, 1.0])
    assert mAP == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert mINP == pytest.approx(2 / 4)
    cmc, mAP, _ = eval_regdb(np.zeros((1, 4)), np.array([1]), np.array([1, 2, 1, 2]))
    assert cmc[0] == 1.0 and mAP == pytest.approx((1 + 2 / 3) / 2)


def test_multi_shot_counts_each_gallery_id_once():
    # Ranked: 2, 2, 2, 1. Identity-level: (2, 1) -> hit at rank 2; image-level: rank 4.
    g_pids, dist = [2, 2, 2, 1], [0.1, 0.2, 0.3, 0.4]
    cmc, mAP, mINP = _one_query(1, 6, g_pids, [1, 1, 4, 5], dist)
    np.testing.assert_array_equal(cmc[:4], [0.0, 1.0, 1.0, 1.0])
    assert mAP == pytest.approx(1 / 4) and mINP == pytest.approx(1 / 4)
    cmc, _, _ = eval_regdb(np.array([dist]), np.array([1]), np.array(g_pids))
    np.testing.assert_array_equal(cmc[:4], [0.0, 0.0, 0.0, 1.0])


def test_minp_uses_the_last_match():
    # Matches at ranks 1 and 5 of 6: INP = 2 / 5, AP = (1 + 2/5) / 2.
    g_pids = [1, 2, 3, 4, 1, 5]
    dist = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    cmc, mAP, mINP = _one_query(1, 6, g_pids, [1] * 6, dist)
    assert cmc[0] == 1.0
    assert mINP == pytest.approx(2 / 5)
    assert mAP == pytest.approx((1 + 2 / 5) / 2)
    _, mAP, mINP = eval_regdb(np.array([dist]), np.array([1]), np.array(g_pids))
    assert mINP == pytest.approx(2 / 5) and mAP == pytest.approx(0.7)


def test_hand_computed_three_queries_average():
    # q0 (cam6, id 1): ranked 1,2,1 -> R1, AP (1 + 2/3)/2, INP 2/3
    # q1 (cam3, id 2): ranked [cam2 id 2 removed], 1, 1 -> no match -> not counted
    # q2 (cam6, id 2): ranked 2(cam2), 1, 1 -> R1, AP 1, INP 1
    distmat = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1], [0.2, 0.1, 0.3]])
    g_pids, g_cams = np.array([1, 2, 1]), np.array([1, 2, 4])
    q_pids, q_cams = np.array([1, 2, 2]), np.array([6, 3, 6])
    cmc, mAP, mINP = eval_sysu(distmat, q_pids, g_pids, q_cams, g_cams)
    np.testing.assert_array_equal(cmc, np.ones(20))
    assert mAP == pytest.approx(((1 + 2 / 3) / 2 + 1) / 2)
    assert mINP == pytest.approx((2 / 3 + 1) / 2)


# ---------------------------------------------------------------------------------------------
# Random data against the plain loops (chunked to exercise several chunks).


@pytest.mark.parametrize("seed", range(6))
def test_sysu_matches_plain_loop_on_random_data(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    monkeypatch.setattr(rank, "_CHUNK_ELEMENTS", 97)  # several chunks of a few rows
    num_q, num_g = int(rng.integers(5, 40)), int(rng.integers(3, 60))
    q_pids, g_pids = rng.integers(0, 8, num_q), rng.integers(0, 10, num_g)
    q_cams, g_cams = rng.choice([3, 6], num_q), rng.choice([1, 2, 4, 5], num_g)
    # Integer distances half of the time: many ties.
    if seed % 2:
        distmat = rng.integers(0, 4, (num_q, num_g)).astype(np.float32)
    else:
        distmat = rng.standard_normal((num_q, num_g))
    max_rank = int(rng.choice([5, 20]))
    got = eval_sysu(distmat, q_pids, g_pids, q_cams, g_cams, max_rank)
    want = plain_eval_sysu(distmat, q_pids, g_pids, q_cams, g_cams, max_rank)
    assert got[0].shape == (max_rank,)
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-12)
    assert abs(got[1] - want[1]) < 1e-12
    assert abs(got[2] - want[2]) < 1e-12


@pytest.mark.parametrize("seed", range(4))
def test_regdb_matches_plain_loop_on_random_data(seed, monkeypatch):
    rng = np.random.default_rng(100 + seed)
    monkeypatch.setattr(rank, "_CHUNK_ELEMENTS", 61)
    num_q, num_g = int(rng.integers(5, 40)), int(rng.integers(3, 60))
    q_pids, g_pids = rng.integers(0, 8, num_q), rng.integers(0, 10, num_g)
    distmat = rng.integers(0, 3, (num_q, num_g)) if seed % 2 else rng.random((num_q, num_g))
    got = eval_regdb(distmat, q_pids, g_pids, 20)
    want = plain_eval_regdb(distmat, q_pids, g_pids, 20)
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-12)
    assert abs(got[1] - want[1]) < 1e-12
    assert abs(got[2] - want[2]) < 1e-12


def test_sysu_with_features_matches_plain_loop():
    rng = np.random.default_rng(7)
    query = rng.standard_normal((30, 16))
    gallery = rng.standard_normal((45, 16))
    query /= np.linalg.norm(query, axis=1, keepdims=True)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    distmat = -(query @ gallery.T)
    q_pids, g_pids = rng.integers(0, 6, 30), np.repeat(np.arange(9), 5)
    q_cams, g_cams = rng.choice([3, 6], 30), rng.choice([1, 2, 4, 5], 45)
    got = eval_sysu(distmat, q_pids, g_pids, q_cams, g_cams)
    want = plain_eval_sysu(distmat, q_pids, g_pids, q_cams, g_cams)
    np.testing.assert_allclose(got[0], want[0], atol=1e-12)
    assert abs(got[1] - want[1]) < 1e-12 and abs(got[2] - want[2]) < 1e-12
    assert 0.0 <= got[1] <= 1.0 and 0.0 <= got[2] <= 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_stable_argsort_rows_equals_numpy_stable_sort(dtype):
    rng = np.random.default_rng(3)
    block = rng.integers(0, 5, (40, 33)).astype(dtype)
    block[::3] = rng.standard_normal((14, 33)).astype(dtype) * 100  # rows without ties
    if dtype is not np.int64:
        block[1, :4] = [0.0, -0.0, 0.0, -0.0]
    np.testing.assert_array_equal(
        stable_argsort_rows(block), np.argsort(block, axis=1, kind="stable")
    )


# ---------------------------------------------------------------------------------------------
# Errors.


def test_no_valid_query_raises():
    with pytest.raises(ValueError, match="no valid query"):
        eval_sysu(
            np.zeros((1, 2)), np.array([1]), np.array([1, 2]), np.array([3]), np.array([2, 2])
        )
    with pytest.raises(ValueError, match="no valid query"):
        eval_regdb(np.zeros((2, 2)), np.array([7, 8]), np.array([1, 2]))


@pytest.mark.parametrize(
    ("q_pids", "g_pids", "q_cams", "g_cams"),
    [
        ([1, 2, 3], [1, 2], [3, 3], [1, 1]),
        ([1, 2], [1, 2, 3], [3, 3], [1, 1]),
        ([1, 2], [1, 2], [3], [1, 1]),
        ([1, 2], [1, 2], [3, 3], [[1, 1]]),
    ],
)
def test_shape_mismatch_raises(q_pids, g_pids, q_cams, g_cams):
    with pytest.raises(ValueError, match="shape"):
        eval_sysu(np.zeros((2, 2)), *(np.array(a) for a in (q_pids, g_pids, q_cams, g_cams)))


def test_bad_distmat_raises():
    with pytest.raises(ValueError, match="2-D"):
        eval_regdb(np.zeros(3), np.array([1, 2, 3]), np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="NaN"):
        eval_regdb(np.array([[np.nan]]), np.array([1]), np.array([1]))
    with pytest.raises(ValueError, match="max_rank"):
        eval_regdb(np.zeros((1, 1)), np.array([1]), np.array([1]), max_rank=0)


# ---------------------------------------------------------------------------------------------
# Ranked lists for pictures.


def test_top_k_ranked_applies_camera_rule_and_pads():
    distmat = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])
    q_pids, g_pids = np.array([1, 2]), np.array([1, 2, 1])
    indices, correct = top_k_ranked(
        distmat, q_pids, g_pids, np.array([3, 6]), np.array([2, 1, 4]), top_k=4
    )
    np.testing.assert_array_equal(indices, [[1, 2, -1, -1], [2, 1, 0, -1]])
    np.testing.assert_array_equal(
        correct, [[False, True, False, False], [False, True, False, False]]
    )
    indices, correct = top_k_ranked(distmat, q_pids, g_pids, top_k=2)
    np.testing.assert_array_equal(indices, [[0, 1], [2, 1]])
    np.testing.assert_array_equal(correct, [[True, False], [False, True]])
