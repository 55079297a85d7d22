"""Multi-memory costs against plain loops."""

from __future__ import annotations

import numpy as np
import pytest

from mmm_core.matching import cost as cost_module
from mmm_core.matching.cost import memory_cost


def normalise(x: np.ndarray, axis: int) -> np.ndarray:
    return x / np.linalg.norm(x, axis=axis, keepdims=True)


def random_memories(clusters: int, k: int, dim: int, seed: int):
    rng = np.random.default_rng(seed)
    memory = normalise(rng.standard_normal((clusters, k, dim)), axis=2).astype(np.float32)
    valid = rng.integers(1, k + 1, clusters)
    mask = np.arange(k)[None, :] < valid[:, None]
    return memory * mask[..., None], mask


def loop_cost(vm, vmask, rm, rmask, variant):
    out = np.zeros((vm.shape[0], rm.shape[0]))
    for a in range(vm.shape[0]):
        va = [vm[a, i].astype(np.float64) for i in range(vm.shape[1]) if vmask[a, i]]
        for b in range(rm.shape[0]):
            rb = [rm[b, i].astype(np.float64) for i in range(rm.shape[1]) if rmask[b, i]]
            d = np.array([[float(np.linalg.norm(p - q)) for q in rb] for p in va])
            if variant == "chamfer":
                out[a, b] = 0.5 * (d.min(axis=1).mean() + d.min(axis=0).mean())
            elif variant == "one_sided":
                out[a, b] = d.min(axis=0).sum()  # sum over the IR slots of the nearest visible
            else:
                ma = normalise(np.mean(va, axis=0), axis=0)
                mb = normalise(np.mean(rb, axis=0), axis=0)
                out[a, b] = float(np.linalg.norm(ma - mb))
    return out


@pytest.mark.parametrize("variant", ["chamfer", "one_sided", "centroid"])
def test_variants_equal_a_plain_loop(variant):
    vm, vmask = random_memories(7, 4, 6, seed=0)
    rm, rmask = random_memories(5, 3, 6, seed=1)  # K may differ between modalities
    got = memory_cost(vm, vmask, rm, rmask, variant=variant)
    assert got.dtype == np.float32 and got.shape == (7, 5)
    np.testing.assert_allclose(got, loop_cost(vm, vmask, rm, rmask, variant), atol=1e-5)


def test_chunking_does_not_change_the_result(monkeypatch):
    vm, vmask = random_memories(9, 4, 5, seed=2)
    rm, rmask = random_memories(6, 4, 5, seed=3)
    full = memory_cost(vm, vmask, rm, rmask)
    monkeypatch.setattr(cost_module, "_CHUNK_ELEMENTS", 1)  # one visible cluster at a time
    np.testing.assert_allclose(memory_cost(vm, vmask, rm, rmask), full, rtol=1e-6, atol=1e-7)


def test_identical_memories_cost_zero_and_single_slot_is_centroid():
    vm, vmask = random_memories(4, 4, 8, seed=4)
    same = memory_cost(vm, vmask, vm, vmask)
    np.testing.assert_allclose(same.diagonal(), np.zeros(4), atol=1e-3)
    single = vmask & (np.arange(4)[None, :] == 0)
    chamfer = memory_cost(vm, single, vm, single)
    centroid = memory_cost(vm, single, vm, single, variant="centroid")
    # distances go through the Gram matrix in float32: ~5e-4 absolute near zero
    np.testing.assert_allclose(chamfer, centroid, atol=1e-3)


def test_rejects_empty_clusters_and_unknown_variant():
    vm, vmask = random_memories(2, 2, 3, seed=5)
    with pytest.raises(ValueError, match="at least one valid"):
        memory_cost(vm, np.zeros_like(vmask), vm, vmask)
    with pytest.raises(ValueError, match="unknown cost variant"):
        memory_cost(vm, vmask, vm, vmask, variant="emd")
