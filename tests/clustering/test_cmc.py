"""CMC joint clustering and its joint centres."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmm_core.clustering.cmc import JointClustering, cmc_joint_labels, joint_centres
from mmm_core.clustering.dbscan import dbscan_labels
from mmm_core.clustering.jaccard import jaccard_distance


def two_modalities(seed: int = 0):
    """6 identities; the visible and infrared copies differ by a shared modality shift."""
    rng = np.random.default_rng(seed)
    ids = rng.standard_normal((6, 24)) * 2
    shift = rng.standard_normal(24) * 0.6
    vis_truth = np.repeat(np.arange(6), 12)
    ir_truth = np.repeat(np.arange(6), 8)
    visible = ids[vis_truth] + 0.35 * rng.standard_normal((72, 24))
    infrared = ids[ir_truth] + shift + 0.35 * rng.standard_normal((48, 24))
    norm = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    return norm(visible), norm(infrared), vis_truth, ir_truth


def test_joint_labels_follow_identities_across_modalities():
    visible, infrared, vis_truth, ir_truth = two_modalities()
    joint = cmc_joint_labels(visible, infrared, k1=20, k2=10, eps=0.6, min_samples=4)
    assert joint.visible_labels.shape == (72,) and joint.infrared_labels.shape == (48,)
    assert joint.num_clusters == 6 and joint.has_both.all()
    for pid in range(6):
        vis = set(joint.visible_labels[vis_truth == pid])
        ir = set(joint.infrared_labels[ir_truth == pid])
        assert len(vis) == 1 and vis == ir


def test_equals_modality_balanced_jaccard_plus_dbscan():
    visible, infrared, _, _ = two_modalities(1)
    joint = cmc_joint_labels(visible, infrared, k1=15, k2=8, eps=0.5, min_samples=4)
    stacked = np.concatenate([visible, infrared])
    modality = np.arange(120) < 72
    expected = dbscan_labels(jaccard_distance(stacked, 15, 8, modality=modality), 0.5, 4)
    np.testing.assert_array_equal(
        np.concatenate([joint.visible_labels, joint.infrared_labels]), expected
    )
    torch_joint = cmc_joint_labels(
        torch.from_numpy(visible), torch.from_numpy(infrared), k1=15, k2=8, eps=0.5, backend="torch"
    )
    np.testing.assert_array_equal(torch_joint.visible_labels, joint.visible_labels)


def test_memory_labels_by_hand():
    joint = JointClustering(
        visible_labels=np.array([0, 0, 1, -1, 2]),
        infrared_labels=np.array([2, 1, -1, 3]),
        has_both=np.array([False, True, True, False]),
    )
    vis_mem, ir_mem = joint.memory_labels()
    np.testing.assert_array_equal(vis_mem, [-1, -1, 0, -1, 1])
    np.testing.assert_array_equal(ir_mem, [1, 0, -1, -1])


def test_joint_centres_are_normalised_sum_of_modality_means():
    rng = np.random.default_rng(0)
    vis = rng.standard_normal((5, 3)).astype(np.float32)
    ir = rng.standard_normal((4, 3)).astype(np.float32)
    labels_v, labels_r = np.array([-1, -1, 0, 1, 1]), np.array([1, 0, -1, 0])
    centres = joint_centres(vis, ir, labels_v, labels_r, 2)
    assert centres.shape == (2, 3) and centres.dtype == np.float32
    for memory, (v_rows, r_rows) in enumerate([([2], [1, 3]), ([3, 4], [0])]):
        total = vis[v_rows].mean(0) + ir[r_rows].mean(0)
        np.testing.assert_allclose(centres[memory], total / np.linalg.norm(total), atol=1e-6)
    with pytest.raises(ValueError, match="both modalities"):
        joint_centres(vis, ir, labels_v, np.array([0, 0, -1, -1]), 2)


def test_joint_centres_weight_modalities_equally_not_samples():
    vis = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    ir = np.array([[0.0, 1.0]], dtype=np.float32)
    centres = joint_centres(vis, ir, np.array([0, 0, 0]), np.array([0]), 1)
    np.testing.assert_allclose(centres[0], [2**-0.5, 2**-0.5], atol=1e-6)


def _offset_world(ids: int = 20, per_modality: int = 6, seed: int = 0):
    """Each identity a direction; every infrared feature shifted by one common offset, larger
    than the identity spread: the nearest points are always of the same modality."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((ids, 32))
    offset = 1.5 * rng.standard_normal(32)
    pids = np.repeat(np.arange(ids), per_modality)
    visible = centres[pids] + 0.2 * rng.standard_normal((len(pids), 32))
    infrared = centres[pids] + offset + 0.2 * rng.standard_normal((len(pids), 32))
    norm = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    return norm(visible), norm(infrared), pids


def test_balanced_expansion_joins_modalities_that_the_released_reading_keeps_apart():
    """The SPEC's reading (k2 nearest of each modality) forms joint clusters across a pure
    modality offset; the released reading falls back to intra-modality expansion."""
    visible, infrared, pids = _offset_world()
    kwargs = dict(k1=12, k2=6, eps=0.6, min_samples=3)
    balanced = cmc_joint_labels(visible, infrared, expansion="balanced", **kwargs)
    released = cmc_joint_labels(visible, infrared, expansion="released", **kwargs)
    assert released.num_cross_modality == 0
    vis_mem, ir_mem = balanced.memory_labels()
    pure = 0
    for c in range(balanced.num_cross_modality):
        members = np.concatenate([pids[vis_mem == c], pids[ir_mem == c]])
        pure += len(np.unique(members)) == 1
    # of 20 identities, nearly all form one joint cluster holding exactly that identity
    assert pure >= 18, (pure, balanced.num_cross_modality)
