"""Batched spherical k-means against a plain per-cluster loop."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmm_core.clustering.subcluster import subcluster

subcluster_module = importlib.import_module("mmm_core.clustering.subcluster")


def features_and_labels(seed: int = 0, dim: int = 8):
    rng = np.random.default_rng(seed)
    sizes = [1, 2, 3, 4, 5, 9, 17, 30]
    labels = np.concatenate([np.full(s, c) for c, s in enumerate(sizes)])
    labels = np.concatenate([labels, np.full(6, -1)])  # noise
    rng.shuffle(labels)
    x = torch.from_numpy(rng.standard_normal((labels.size, dim))).float()
    return F.normalize(x, dim=1), labels, sizes


def reference_kmeans(x: torch.Tensor, k: int, init: list[int], iters: int):
    """Plain spherical k-means on one cluster, same rules as the module docstring."""
    centres = [x[i].clone() for i in init]
    previous = None
    for _ in range(iters):
        assign = [int(np.argmax([float(c @ f) for c in centres])) for f in x]
        if assign == previous:
            break
        previous = assign
        for s in range(len(centres)):
            members = [f for f, a in zip(x, assign, strict=True) if a == s]
            if members:
                centres[s] = F.normalize(torch.stack(members).sum(0), dim=0)
    assign = [int(np.argmax([float(c @ f) for c in centres])) for f in x]
    final = []
    for s in range(len(centres)):
        members = [f for f, a in zip(x, assign, strict=True) if a == s]
        if members:
            final.append(F.normalize(torch.stack(members).sum(0), dim=0))
    return final, assign


def test_matches_per_cluster_loop_and_masks_small_clusters():
    x, labels, sizes = features_and_labels()
    k, iters = 4, 10
    memory = subcluster(x, labels, k, iters=iters, generator=torch.Generator().manual_seed(3))
    assert memory.centres.shape == (len(sizes), k, x.shape[1])
    assert memory.mask.dtype == torch.bool
    np.testing.assert_array_equal(memory.mask.sum(1).numpy(), np.minimum(k, sizes))
    assert (memory.assignment[torch.from_numpy(labels) < 0] == -1).all()
    keys = torch.rand(len(labels), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for c in range(len(sizes)):
        members = np.flatnonzero(labels == c)
        init = members[np.argsort(keys[members].numpy(), kind="stable")][: min(k, sizes[c])]
        position = {int(m): p for p, m in enumerate(members)}
        centres, assign = reference_kmeans(x[members], k, [position[int(i)] for i in init], iters)
        got = memory.centres[c, : len(centres)]
        torch.testing.assert_close(got, torch.stack(centres), atol=1e-5, rtol=0)
        assert (memory.centres[c, len(centres) :] == 0).all()
        occupied = sorted(set(assign))
        np.testing.assert_array_equal(
            memory.assignment[members].numpy(), [occupied.index(a) for a in assign]
        )


def test_deterministic_under_a_seed_and_grouping_independent(monkeypatch):
    x, labels, _ = features_and_labels(1)
    a = subcluster(x, labels, 3, generator=torch.Generator().manual_seed(7))
    b = subcluster(x, labels, 3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.centres, b.centres) and torch.equal(a.assignment, b.assignment)
    monkeypatch.setattr(subcluster_module, "_GROUP_ELEMENTS", 8 * 30)  # many tiny groups
    c = subcluster(x, labels, 3, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a.centres, c.centres, atol=1e-6, rtol=0)
    assert torch.equal(a.assignment, c.assignment)
    d = subcluster(x, labels, 3, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(a.assignment, d.assignment)


def test_cluster_smaller_than_k_uses_each_member_as_a_centre():
    x = F.normalize(torch.randn(2, 5, generator=torch.Generator().manual_seed(0)), dim=1)
    memory = subcluster(x, np.array([0, 0]), 4)
    assert memory.mask.tolist() == [[True, True, False, False]]
    got = {tuple(np.round(memory.centres[0, s].numpy(), 5)) for s in range(2)}
    assert got == {tuple(np.round(v.numpy(), 5)) for v in x}


def test_duplicate_members_leave_empty_slots_masked():
    x = F.normalize(torch.ones(5, 3), dim=1)  # five identical features
    memory = subcluster(x, np.zeros(5, dtype=np.int64), 4)
    assert memory.mask.tolist() == [[True, False, False, False]]
    assert (memory.assignment == 0).all()
    torch.testing.assert_close(memory.centres[0, 0], x[0])


def test_recovers_planted_subclusters():
    gen = torch.Generator().manual_seed(0)
    directions = F.normalize(torch.randn(4, 16, generator=gen), dim=1)
    x = F.normalize(
        directions.repeat_interleave(10, 0) + 0.05 * torch.randn(40, 16, generator=gen), dim=1
    )
    memory = subcluster(x, np.zeros(40, dtype=np.int64), 4)
    groups = memory.assignment.view(4, 10)
    assert all(len(set(g.tolist())) == 1 for g in groups)
    assert len(set(groups[:, 0].tolist())) == 4
    # each centre is the normalised mean of its members, close to its planted direction
    for slot in range(4):
        members = x[memory.assignment == slot]
        torch.testing.assert_close(memory.centres[0, slot], F.normalize(members.mean(0), dim=0))
    assert float((memory.centres[0] @ directions.t()).max(dim=1).values.min()) > 0.99


def test_rejects_clusters_without_members():
    x = F.normalize(torch.ones(3, 2), dim=1)
    with pytest.raises(ValueError, match="without members"):
        subcluster(x, np.array([0, 2, 2]), 2)
