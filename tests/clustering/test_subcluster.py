"""Batched spherical k-means against a plain per-cluster loop."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from mmm_core.clustering.subcluster import subcluster

subcluster_module = importlib.import_module("mmm_core.clustering.subcluster")


def normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def features_and_labels(seed: int = 0, dim: int = 8):
    rng = np.random.default_rng(seed)
    sizes = [1, 2, 3, 4, 5, 9, 17, 30]
    labels = np.concatenate([np.full(s, c) for c, s in enumerate(sizes)])
    labels = np.concatenate([labels, np.full(6, -1)])  # noise
    rng.shuffle(labels)
    return normalise(rng.standard_normal((labels.size, dim))), labels, sizes


def reference_kmeans(x: np.ndarray, k: int, init: list[int], iters: int):
    """Plain spherical k-means on one cluster, same rules as the module docstring."""
    x = x.astype(np.float64)
    centres = [x[i].copy() for i in init]
    previous = None
    for _ in range(iters):
        assign = [int(np.argmax([float(c @ f) for c in centres])) for f in x]
        if assign == previous:
            break
        previous = assign
        for s in range(len(centres)):
            members = [f for f, a in zip(x, assign, strict=True) if a == s]
            if members:
                centres[s] = normalise(np.sum(members, axis=0))
    assign = [int(np.argmax([float(c @ f) for c in centres])) for f in x]
    final = []
    for s in range(len(centres)):
        members = [f for f, a in zip(x, assign, strict=True) if a == s]
        if members:
            final.append(normalise(np.sum(members, axis=0)))
    return final, assign


def test_matches_per_cluster_loop_and_masks_small_clusters():
    x, labels, sizes = features_and_labels()
    k, iters = 4, 10
    memory = subcluster(x, labels, k, iters=iters, rng=np.random.default_rng(3))
    assert memory.centres.shape == (len(sizes), k, x.shape[1])
    assert memory.centres.dtype == np.float32 and memory.mask.dtype == bool
    np.testing.assert_array_equal(memory.mask.sum(1), np.minimum(k, sizes))
    assert (memory.assignment[labels < 0] == -1).all()
    keys = np.random.default_rng(3).random(len(labels))
    for c in range(len(sizes)):
        members = np.flatnonzero(labels == c)
        init = members[np.argsort(keys[members], kind="stable")][: min(k, sizes[c])]
        position = {int(m): p for p, m in enumerate(members)}
        centres, assign = reference_kmeans(x[members], k, [position[int(i)] for i in init], iters)
        got = memory.centres[c, : len(centres)]
        np.testing.assert_allclose(got, np.stack(centres), atol=1e-5, rtol=0)
        assert (memory.centres[c, len(centres) :] == 0).all()
        occupied = sorted(set(assign))
        np.testing.assert_array_equal(
            memory.assignment[members], [occupied.index(a) for a in assign]
        )


def test_deterministic_under_a_seed_and_grouping_independent(monkeypatch):
    x, labels, _ = features_and_labels(1)
    a = subcluster(x, labels, 3, rng=np.random.default_rng(7))
    b = subcluster(x, labels, 3, rng=np.random.default_rng(7))
    assert np.array_equal(a.centres, b.centres) and np.array_equal(a.assignment, b.assignment)
    monkeypatch.setattr(subcluster_module, "_GROUP_ELEMENTS", 8 * 30)  # many tiny groups
    c = subcluster(x, labels, 3, rng=np.random.default_rng(7))
    np.testing.assert_allclose(a.centres, c.centres, atol=1e-6, rtol=0)
    assert np.array_equal(a.assignment, c.assignment)
    d = subcluster(x, labels, 3, rng=np.random.default_rng(8))
    assert not np.array_equal(a.assignment, d.assignment)


def test_cluster_smaller_than_k_uses_each_member_as_a_centre():
    x = normalise(np.random.default_rng(0).standard_normal((2, 5)))
    memory = subcluster(x, np.array([0, 0]), 4)
    assert memory.mask.tolist() == [[True, True, False, False]]
    got = {tuple(np.round(memory.centres[0, s], 5)) for s in range(2)}
    assert got == {tuple(np.round(v, 5)) for v in x}


def test_duplicate_members_leave_empty_slots_masked():
    x = normalise(np.ones((5, 3)))  # five identical features
    memory = subcluster(x, np.zeros(5, dtype=np.int64), 4)
    assert memory.mask.tolist() == [[True, False, False, False]]
    assert (memory.assignment == 0).all()
    np.testing.assert_allclose(memory.centres[0, 0], x[0], rtol=1e-6)


def test_recovers_planted_subclusters():
    rng = np.random.default_rng(0)
    directions = normalise(rng.standard_normal((4, 16)))
    x = normalise(np.repeat(directions, 10, axis=0) + 0.05 * rng.standard_normal((40, 16)))
    memory = subcluster(x, np.zeros(40, dtype=np.int64), 4)
    groups = memory.assignment.reshape(4, 10)
    assert all(len(set(g.tolist())) == 1 for g in groups)
    assert len(set(groups[:, 0].tolist())) == 4
    # each centre is the normalised mean of its members, close to its planted direction
    for slot in range(4):
        members = x[memory.assignment == slot]
        np.testing.assert_allclose(memory.centres[0, slot], normalise(members.mean(0)), atol=1e-6)
    assert float((memory.centres[0] @ directions.T).max(axis=1).min()) > 0.99


def test_rejects_clusters_without_members():
    x = normalise(np.ones((3, 2)))
    with pytest.raises(ValueError, match="without members"):
        subcluster(x, np.array([0, 2, 2]), 2)
