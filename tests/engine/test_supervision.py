"""The supervised upper bound (train.supervision: oracle), and that ground truth never reaches
the unsupervised variants."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mmm_core.data import train_manifest
from mmm_core.engine.build import build_network, build_trainer
from mmm_core.engine.labels import cluster_round, oracle_clusters
from mmm_core.engine.match import match_round
from mmm_core.engine.phases import RoundContext, prepare_round


def test_oracle_clusters_by_hand() -> None:
    pids_v, pids_r = np.array([5, 5, 7, 9]), np.array([7, 5, 5, 11])
    stage1 = oracle_clusters(1, pids_v, pids_r, joint=True)
    np.testing.assert_array_equal(stage1.labels_visible, [0, 0, 1, 2])
    np.testing.assert_array_equal(stage1.labels_infrared, [1, 0, 0, 2])
    np.testing.assert_array_equal(stage1.joint_visible, [0, 0, 1, 2])  # over 5, 7, 9, 11
    np.testing.assert_array_equal(stage1.joint_infrared, [1, 0, 0, 3])
    np.testing.assert_array_equal(stage1.joint_both, [True, True, False, False])
    assert stage1.oracle_v2r is None
    stage2 = oracle_clusters(2, pids_v, pids_r, joint=True)
    assert stage2.joint_visible is None
    np.testing.assert_array_equal(stage2.oracle_v2r, [0, 1, -1])  # 5 -> 5, 7 -> 7, 9: none
    np.testing.assert_array_equal(stage2.oracle_r2v, [0, 1, -1])


def test_oracle_matching_uses_the_true_partners(micro_config) -> None:
    rng = np.random.default_rng(0)
    pids_v = np.repeat([3, 4, 8, 9], 5)
    pids_r = np.repeat([9, 3, 4, 8, 12], 4)
    features_v = rng.standard_normal((len(pids_v), 16)).astype(np.float32)
    features_r = rng.standard_normal((len(pids_r), 16)).astype(np.float32)
    cfg = micro_config.replace(**{"train.supervision": "oracle"})
    clusters = cluster_round(cfg, 2, features_v, features_r, (pids_v, pids_r))
    targets = match_round(cfg, 2, features_v, features_r, clusters, seed=0)
    # visible clusters 3, 4, 8, 9 -> infrared clusters (sorted 3, 4, 8, 9, 12) 0, 1, 2, 3
    np.testing.assert_array_equal(targets.v2r, [0, 1, 2, 3])
    np.testing.assert_array_equal(targets.r2v[:4], [0, 1, 2, 3])
    assert 0 <= targets.r2v[4] < 4  # id 12 has no visible image: the matching's choice
    with pytest.raises(ValueError, match="needs the true identities"):
        cluster_round(cfg, 2, features_v, features_r)


def test_ground_truth_never_reaches_the_unsupervised_labels(micro_config) -> None:
    """The same features with the true ids scrambled give identical pseudo-labels, memories
    and matching for the method; the oracle's labels follow the ids."""
    torch.manual_seed(0)
    cfg = micro_config.replace(**{"model.width": 16, "train.device": "cpu"})
    manifest = train_manifest(cfg.data.format, cfg.data.root, cfg.data.trial)
    permuted = np.random.default_rng(1).permutation(np.unique(manifest.pids))
    scrambled = dataclasses.replace(
        manifest, pids=permuted[np.searchsorted(np.unique(manifest.pids), manifest.pids)] + 1000
    )
    device = torch.device("cpu")
    model = build_network(cfg, device)
    outputs = []
    for round_index in (0, 1):  # stage 1 (CMC) and stage 2 (matching)
        for m in (manifest, scrambled):
            trainer = build_trainer(cfg, model, device)
            ctx = RoundContext(cfg, cfg.data.root, m, model, trainer, device)
            outputs.append(prepare_round(ctx, round_index)["targets"])
    for first, second in ((outputs[0], outputs[1]), (outputs[2], outputs[3])):
        for field in dataclasses.fields(first):
            a, b = getattr(first, field.name), getattr(second, field.name)
            if isinstance(a, np.ndarray):
                np.testing.assert_array_equal(a, b, err_msg=field.name)
            else:
                assert a == b, field.name
    oracle = cfg.replace(**{"train.supervision": "oracle"})
    trainer = build_trainer(oracle, model, device)
    ctx = RoundContext(oracle, oracle.data.root, manifest, model, trainer, device)
    targets = prepare_round(ctx, 0)["targets"]
    visible = manifest.modality("visible").pids
    np.testing.assert_array_equal(
        targets.labels_visible, np.unique(visible, return_inverse=True)[1]
    )
