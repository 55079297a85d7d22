"""Invariants of the camera-aware P x K identity sampler."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from mmm_core.data.samplers import IdentitySampler


def make_labels(rng: np.random.Generator, n: int = 300, ids: int = 20, cams: int = 4):
    labels = rng.integers(0, ids, n)
    labels[rng.random(n) < 0.1] = -1  # noise
    camids = rng.integers(1, cams + 1, n)
    return labels, camids


def test_batches_are_p_ids_times_k_instances() -> None:
    labels, camids = make_labels(np.random.default_rng(0))
    sampler = IdentitySampler(labels, camids, num_ids=4, num_instances=6, num_batches=25, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 25
    for batch in batches:
        assert len(batch) == sampler.batch_size == 24
        batch_labels = labels[batch]
        assert (batch_labels >= 0).all(), "noise samples must never be drawn"
        counts = Counter(batch_labels.tolist())
        assert len(counts) == 4 and set(counts.values()) == {6}
        # Consecutive runs of K samples belong to one identity.
        for start in range(0, 24, 6):
            assert len(set(batch_labels[start : start + 6].tolist())) == 1


def test_camera_aware_spreads_cameras_and_avoids_repeats() -> None:
    labels = np.repeat(np.arange(3), 12)
    camids = np.tile(np.repeat([1, 2, 3], 4), 3)  # each id: 4 images in each of 3 cameras
    sampler = IdentitySampler(labels, camids, num_ids=3, num_instances=6, num_batches=10, seed=3)
    for batch in sampler:
        for start in range(0, 18, 6):
            chunk = batch[start : start + 6]
            assert len(set(chunk)) == 6, "no repeats while unused images remain"
            assert Counter(camids[chunk].tolist()) == {1: 2, 2: 2, 3: 2}


def test_small_identity_repeats_only_after_using_all() -> None:
    labels = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    camids = np.ones(10, dtype=int)
    sampler = IdentitySampler(labels, camids, num_ids=2, num_instances=5, num_batches=5, seed=0)
    for batch in sampler:
        chunk = [i for i in batch if labels[i] == 0]
        assert len(chunk) == 5 and set(chunk) == {0, 1}


def test_same_seed_same_batches_other_seed_differs() -> None:
    labels, camids = make_labels(np.random.default_rng(5))
    a = list(IdentitySampler(labels, camids, 4, 4, 10, seed=7))
    b = list(IdentitySampler(labels, camids, 4, 4, 10, seed=7))
    c = list(IdentitySampler(labels, camids, 4, 4, 10, seed=8))
    assert a == b and a != c


def test_fewer_identities_than_p() -> None:
    labels = np.array([0, 0, 1, 1])
    sampler = IdentitySampler(labels, np.ones(4, int), num_ids=3, num_instances=2, num_batches=3)
    for batch in sampler:
        assert len(batch) == 6
        assert set(labels[batch].tolist()) == {0, 1}


def test_all_noise_is_an_error() -> None:
    with pytest.raises(ValueError, match="nothing to sample"):
        IdentitySampler(np.full(5, -1), np.ones(5, int), 2, 2, 1)
