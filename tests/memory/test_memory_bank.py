import pytest
import torch
import torch.nn.functional as F

from mmm_core.memory import ClusterMemory, occurrence_waves


def sequential_update(vectors: torch.Tensor, features, labels, momentum: float) -> torch.Tensor:
    """The reference: one sample at a time, in batch order."""
    vectors = vectors.clone()
    for feature, label in zip(features, labels.tolist(), strict=True):
        if label < 0:
            continue
        blended = momentum * vectors[label] + (1 - momentum) * feature
        vectors[label] = blended / blended.norm()
    return vectors


def random_batch(seed: int, clusters: int, batch: int, dim: int, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=generator, dtype=dtype)
    features = F.normalize(torch.randn(batch, dim, generator=generator, dtype=dtype), dim=1)
    # Few clusters and a big batch: every label repeats, some many times; -1 is noise.
    labels = torch.randint(-1, clusters, (batch,), generator=generator)
    return centres, features, labels


def test_occurrence_waves_by_hand():
    labels = torch.tensor([3, 1, 3, -1, 3, 1, 0, -2])
    waves = [sorted(w.tolist()) for w in occurrence_waves(labels)]
    assert waves == [[0, 1, 6], [2, 5], [4]]
    assert occurrence_waves(torch.tensor([-1, -1])) == []
    assert occurrence_waves(torch.tensor([], dtype=torch.long)) == []


def test_occurrence_waves_properties_on_random_labels():
    labels = torch.randint(-1, 6, (200,), generator=torch.Generator().manual_seed(0))
    waves = occurrence_waves(labels)
    positions = torch.cat(waves).tolist()
    assert sorted(positions) == (labels >= 0).nonzero().squeeze(1).tolist()
    assert len(waves) == int(torch.bincount(labels[labels >= 0]).max())
    seen: dict[int, int] = {}
    for wave in waves:
        wave_labels = labels[wave].tolist()
        assert len(set(wave_labels)) == len(wave_labels)  # distinct labels in a wave
        for position, label in zip(wave.tolist(), wave_labels, strict=True):
            assert position > seen.get(label, -1)  # batch order within a label
            seen[label] = position


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("momentum", [0.0, 0.1, 0.7])
def test_update_equals_sequential_loop(seed, momentum):
    centres, features, labels = random_batch(seed, clusters=5, batch=40, dim=8)
    memory = ClusterMemory(8, momentum=momentum)
    memory.reset(centres)
    expected = sequential_update(memory.vectors, features, labels, momentum)
    memory.update(features, labels)
    torch.testing.assert_close(memory.vectors, expected, rtol=0, atol=1e-12)
    assert not torch.allclose(memory.vectors, F.normalize(centres, dim=1))


def test_update_equals_sequential_loop_float32():
    centres, features, labels = random_batch(7, clusters=16, batch=128, dim=32, dtype=torch.float32)
    memory = ClusterMemory(32)
    memory.reset(centres)
    expected = sequential_update(memory.vectors, features, labels, 0.1)
    memory.update(features, labels)
    torch.testing.assert_close(memory.vectors, expected, rtol=0, atol=1e-6)


def test_update_by_hand():
    memory = ClusterMemory(2, momentum=0.1)
    memory.reset(torch.tensor([[2.0, 0.0], [0.0, 3.0]]))
    memory.update(torch.tensor([[0.0, 1.0], [0.0, 1.0]]), torch.tensor([0, -1]))
    torch.testing.assert_close(memory.vectors[0], F.normalize(torch.tensor([0.1, 0.9]), dim=0))
    torch.testing.assert_close(memory.vectors[1], torch.tensor([0.0, 1.0]))


def test_negative_labels_are_ignored_and_no_grad_is_tracked():
    centres, features, _ = random_batch(1, clusters=3, batch=6, dim=4)
    memory = ClusterMemory(4)
    memory.reset(centres)
    before = memory.vectors.clone()
    memory.update(features.requires_grad_(), torch.full((6,), -1))
    assert torch.equal(memory.vectors, before)
    memory.update(features, torch.zeros(6, dtype=torch.long))
    assert not memory.vectors.requires_grad and memory.vectors.grad_fn is None


def test_reset_normalises_and_copies():
    centres = torch.tensor([[3.0, 4.0], [0.0, -2.0]])
    memory = ClusterMemory(2)
    memory.reset(centres)
    torch.testing.assert_close(memory.vectors, torch.tensor([[0.6, 0.8], [0.0, -1.0]]))
    centres.zero_()
    assert memory.vectors.abs().sum() > 0
    assert memory.num_clusters == 2
    with pytest.raises(ValueError, match="shape"):
        memory.reset(torch.zeros(3, 5))


def test_out_of_range_labels_are_rejected():
    memory = ClusterMemory(2)
    memory.reset(torch.eye(2))
    with pytest.raises(ValueError, match="out of range"):
        memory.update(torch.eye(2), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="shape"):
        memory.update(torch.eye(2), torch.tensor([0]))


def test_state_dict_round_trip_resizes():
    memory = ClusterMemory(4)
    memory.reset(torch.randn(7, 4))
    fresh = ClusterMemory(4)
    fresh.load_state_dict(memory.state_dict())
    assert torch.equal(fresh.vectors, memory.vectors)
    assert list(fresh.parameters()) == []
