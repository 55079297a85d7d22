"""Pseudo-label and correspondence diagnostics on planted labelings with hand-known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmm_core.evaluation.diagnostics import (
    correspondence_diagnostics,
    cross_modality_information,
    majority_ids,
    noise_as_singletons,
    pseudo_label_diagnostics,
    unified_labels,
)

TRUE = np.array([0, 0, 1, 1, 2, 2])


def test_perfect_labels_score_one_with_any_label_names():
    labels = np.array([5, 5, 0, 0, 3, 3])
    got = pseudo_label_diagnostics(labels, TRUE + 100, prefix="visible")
    assert got == pytest.approx(
        {
            "visible/ari": 1.0,
            "visible/ari_noise_as_class": 1.0,
            "visible/nmi": 1.0,
            "visible/clusters": 3.0,
            "visible/noise_ratio": 0.0,
            "visible/samples": 6.0,
        }
    )


def test_noise_as_singletons_versus_noise_as_one_class():
    labels = np.array([0, 0, 1, 1, -1, -1])
    np.testing.assert_array_equal(noise_as_singletons(labels), [0, 0, 1, 1, 2, 3])
    got = pseudo_label_diagnostics(labels, TRUE)
    # Noise as one class is exactly the true partition; as singletons it splits id 2:
    # index 2, expected 3*2/15, max (3+2)/2 -> (2 - 0.4) / (2.5 - 0.4) = 16/21.
    assert got["ari_noise_as_class"] == pytest.approx(1.0)
    assert got["ari"] == pytest.approx(16 / 21)
    h_true = math.log(3)
    h_pred = (2 / 3) * math.log(3) + (1 / 3) * math.log(6)
    assert got["nmi"] == pytest.approx(2 * h_true / (h_true + h_pred))
    assert got["clusters"] == 2.0
    assert got["noise_ratio"] == pytest.approx(1 / 3)


def test_merged_clusters_lower_ari():
    # Ids 0 and 1 merged: index 1+1+1 = 3, sums 3 (true) and C(4,2)+C(2,2) = 7 (pred),
    # expected 3*7/15, max (3+7)/2 -> (3 - 1.4) / (5 - 1.4) = 4/9.
    got = pseudo_label_diagnostics(np.array([0, 0, 0, 0, 1, 1]), TRUE)
    assert got["ari"] == pytest.approx(4 / 9)
    assert got["clusters"] == 2.0


def test_all_noise_and_bad_input():
    got = pseudo_label_diagnostics(np.full(6, -1), TRUE)
    assert got["clusters"] == 0.0 and got["noise_ratio"] == 1.0
    assert got["ari"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="shape"):
        pseudo_label_diagnostics(np.zeros(3, dtype=int), TRUE)
    with pytest.raises(ValueError, match="below -1"):
        pseudo_label_diagnostics(np.array([0, -2, 0, 0, 0, 0]), TRUE)
    with pytest.raises(ValueError, match="integers"):
        pseudo_label_diagnostics(np.zeros(6), TRUE)


def test_majority_ids_ties_go_to_smallest_and_empty_is_minus_one():
    labels = np.array([0, 0, 0, 2, 2, -1])
    true = np.array([5, 3, 3, 9, 4, 7])
    np.testing.assert_array_equal(majority_ids(labels, true, 4), [3, -1, 4, -1])


# Visible clusters 0, 1, 2 hold ids 0, 1, 2; infrared clusters 2, 0, 1 hold ids 0, 1, 2.
VISIBLE_LABELS = np.array([0, 0, 1, 1, 2, 2])
INFRARED_LABELS = np.array([2, 2, 0, 0, 1, 1])


def test_correct_correspondence():
    got = correspondence_diagnostics(
        VISIBLE_LABELS, INFRARED_LABELS, TRUE, TRUE, v2r=np.array([2, 0, 1])
    )
    assert got == pytest.approx(
        {
            "correspondence/v2r_accuracy": 1.0,
            "correspondence/v2r_pairs": 3.0,
            "correspondence/r2v_accuracy": 1.0,
            "correspondence/r2v_pairs": 3.0,
            "correspondence/unified_ari": 1.0,
            "correspondence/unified_ari_noise_as_class": 1.0,
            "correspondence/unified_nmi": 1.0,
        }
    )


def test_wrong_correspondence():
    got = correspondence_diagnostics(
        VISIBLE_LABELS, INFRARED_LABELS, TRUE, TRUE, v2r=np.array([0, 1, 2]), prefix=""
    )
    assert got["v2r_accuracy"] == 0.0 and got["r2v_accuracy"] == 0.0
    # Unified labels pair each id with another id's IR cluster: 6 cells of 2 samples,
    # index 6, sums 18 and 18 of C(12,2) = 66 -> (6 - 54/11) / (18 - 54/11) = 1/12.
    assert got["unified_ari"] == pytest.approx(1 / 12)


def test_partial_correspondence_gives_unmatched_clusters_fresh_labels():
    got = correspondence_diagnostics(
        VISIBLE_LABELS, INFRARED_LABELS, TRUE, TRUE, v2r=np.array([2, -1, 1])
    )
    assert got["correspondence/v2r_pairs"] == 2.0
    assert got["correspondence/v2r_accuracy"] == 1.0
    # Inverted r2v = [-1, 2, 0]: IR cluster 0 (id 1) keeps a label of its own (3), so id 1 is
    # split in two: index 6+1+1+6 = 14, sums 18 and 14 -> (14 - 42/11) / (16 - 42/11).
    np.testing.assert_array_equal(
        unified_labels(VISIBLE_LABELS, INFRARED_LABELS, np.array([-1, 2, 0]), 3),
        [0, 0, 1, 1, 2, 2, 0, 0, 3, 3, 2, 2],
    )
    assert got["correspondence/unified_ari"] == pytest.approx(56 / 67)


def test_explicit_many_to_one_r2v_and_noise():
    # Visible: 2 clusters (ids 0, 1). Infrared: 3 clusters, two of them id 1, plus noise.
    visible_labels, visible_true = np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1])
    infrared_labels = np.array([0, 0, 1, 2, 2, -1])
    infrared_true = np.array([0, 0, 1, 1, 0, 1])
    # IR cluster 2 holds ids (1, 0): majority 0 (tie -> smallest).
    got = correspondence_diagnostics(
        visible_labels,
        infrared_labels,
        visible_true,
        infrared_true,
        v2r=np.array([0, 1]),
        r2v=np.array([0, 1, 1]),
    )
    assert got["correspondence/v2r_accuracy"] == 1.0
    assert got["correspondence/r2v_accuracy"] == pytest.approx(2 / 3)
    assert got["correspondence/r2v_pairs"] == 3.0
    unified = unified_labels(visible_labels, infrared_labels, np.array([0, 1, 1]), 2)
    np.testing.assert_array_equal(unified, [0, 0, 1, 1, 0, 0, 1, 1, 1, -1])
    # Noise as singletons in the ARI: compare with a plain pair-counting ARI.
    true = np.concatenate([visible_true, infrared_true])
    assert got["correspondence/unified_ari"] == pytest.approx(
        _pair_counting_ari(true, noise_as_singletons(unified))
    )


def test_nothing_matched_gives_nan_accuracy():
    got = correspondence_diagnostics(
        VISIBLE_LABELS, INFRARED_LABELS, TRUE, TRUE, v2r=np.full(3, -1)
    )
    assert math.isnan(got["correspondence/v2r_accuracy"])
    assert got["correspondence/v2r_pairs"] == 0.0


def test_correspondence_rejects_labels_outside_maps():
    with pytest.raises(ValueError, match="outside v2r"):
        correspondence_diagnostics(VISIBLE_LABELS, INFRARED_LABELS, TRUE, TRUE, v2r=np.array([0]))
    with pytest.raises(ValueError, match="r2v"):
        correspondence_diagnostics(
            VISIBLE_LABELS, INFRARED_LABELS, TRUE, TRUE, v2r=np.array([2, 0, 1]), r2v=np.array([0])
        )


def _pair_counting_ari(a: np.ndarray, b: np.ndarray) -> float:
    """ARI from the definition: pairs counted over all i < j."""
    n = len(a)
    same_a = same_b = same_both = 0
    for i in range(n):
        for j in range(i + 1, n):
            same_a += a[i] == a[j]
            same_b += b[i] == b[j]
            same_both += (a[i] == a[j]) and (b[i] == b[j])
    total = n * (n - 1) / 2
    expected = same_a * same_b / total
    return (same_both - expected) / ((same_a + same_b) / 2 - expected)


def test_cross_modality_information_separates_aligned_from_unrelated_features() -> None:
    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(10), 4)
    centres = rng.normal(size=(10, 16))
    visible = centres[ids] + 0.1 * rng.normal(size=(40, 16))
    aligned = centres[ids] + 0.1 * rng.normal(size=(40, 16))
    got = cross_modality_information(visible, aligned, ids, ids)
    assert got == {
        "xmodal/centroid_match_accuracy": 1.0,
        "xmodal/nn_accuracy": 1.0,
        "xmodal/chance": 0.1,
    }
    # Infrared features of other people (a permuted identity -> appearance map): no
    # information, at most chance-like values.
    unrelated = centres[(ids + 3) % 10] + 0.1 * rng.normal(size=(40, 16))
    got = cross_modality_information(visible, unrelated, ids, ids)
    assert got["xmodal/centroid_match_accuracy"] == 0.0 and got["xmodal/nn_accuracy"] == 0.0


def test_cross_modality_information_uses_only_shared_ids_and_caps_queries() -> None:
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(6, 8))
    visible_ids = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    infrared_ids = np.array([2, 3, 4, 5, 5, 2, 3, 4])  # ids 4, 5 have no visible image
    got = cross_modality_information(
        centres[visible_ids], centres[infrared_ids], visible_ids, infrared_ids, max_queries=3
    )
    assert got["xmodal/chance"] == 0.5  # ids 2 and 3
    assert got["xmodal/centroid_match_accuracy"] == 1.0 and got["xmodal/nn_accuracy"] == 1.0
    none = cross_modality_information(centres[:2], centres[:2], np.array([0, 1]), np.array([4, 5]))
    assert all(np.isnan(v) for v in none.values())
    with pytest.raises(ValueError, match="visible_features"):
        cross_modality_information(centres[:3], centres[:2], np.array([0, 1]), np.array([0, 1]))


def test_cross_camera_information_sees_clusters_that_follow_cameras():
    from mmm_core.evaluation.diagnostics import cross_camera_information

    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(6), 4)  # 6 people, 2 images in each of 2 cameras
    cams = np.tile([0, 0, 1, 1], 6)
    identity = np.eye(8)[ids] * 3.0
    camera = np.eye(8)[6 + cams] * 3.0
    noise = rng.normal(0, 0.05, (24, 8))
    good = cross_camera_information(identity + camera + noise, ids, cams, labels=ids)
    assert good == {"xcam/nn_accuracy": 1.0, "xcam/split": 0.0}
    # features that know only the camera: other-camera neighbours are anybody
    blind = cross_camera_information(camera + noise, ids, cams, labels=ids * 2 + cams)
    assert blind["xcam/nn_accuracy"] < 0.5 and blind["xcam/split"] == 1.0
    # one camera per person: nothing to ask
    alone = cross_camera_information(identity, ids, np.zeros(24, dtype=int), labels=None)
    assert np.isnan(alone["xcam/nn_accuracy"]) and np.isnan(alone["xcam/split"])
