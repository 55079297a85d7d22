import pytest
import torch
import torch.nn.functional as F

from mmm_core.memory import MultiMemory, multi_memory_logits, slot_similarities


def sequential_update(vectors, mask, features, labels, momentum):
    """The reference: one sample at a time; move the own cluster's nearest valid slot."""
    vectors = vectors.clone()
    for feature, label in zip(features, labels.tolist(), strict=True):
        if label < 0:
            continue
        best_slot, best_sim = None, float("-inf")
        for slot in range(vectors.shape[1]):
            if not mask[label, slot]:
                continue
            sim = float(vectors[label, slot] @ feature)
            if sim > best_sim:
                best_slot, best_sim = slot, sim
        blended = momentum * vectors[label, best_slot] + (1 - momentum) * feature
        vectors[label, best_slot] = blended / blended.norm()
    return vectors


def random_bank(seed: int, clusters: int, slots: int, dim: int, batch: int, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, slots, dim, generator=generator, dtype=dtype)
    counts = torch.randint(1, slots + 1, (clusters,), generator=generator)
    mask = torch.arange(slots).unsqueeze(0) < counts.unsqueeze(1)
    features = F.normalize(torch.randn(batch, dim, generator=generator, dtype=dtype), dim=1)
    labels = torch.randint(-1, clusters, (batch,), generator=generator)
    return centres, mask, features, labels


@pytest.mark.parametrize("seed", range(6))
def test_update_equals_sequential_loop(seed):
    centres, mask, features, labels = random_bank(seed, clusters=4, slots=3, dim=6, batch=48)
    memory = MultiMemory(6, momentum=0.2)
    memory.reset(centres, mask)
    expected = sequential_update(memory.vectors, mask, features, labels, 0.2)
    memory.update(features, labels)
    torch.testing.assert_close(memory.vectors, expected, rtol=0, atol=1e-12)
    assert torch.equal(memory.vectors[~mask], torch.zeros_like(memory.vectors[~mask]))


def test_update_equals_sequential_loop_float32():
    centres, mask, features, labels = random_bank(
        11, clusters=10, slots=4, dim=16, batch=96, dtype=torch.float32
    )
    memory = MultiMemory(16)
    memory.reset(centres, mask)
    expected = sequential_update(memory.vectors, mask, features, labels, 0.1)
    memory.update(features, labels)
    torch.testing.assert_close(memory.vectors, expected, rtol=0, atol=1e-6)


def test_update_picks_the_nearest_valid_slot_by_hand():
    centres = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]])
    mask = torch.tensor([[True, False, True]])
    memory = MultiMemory(2, momentum=0.5)
    memory.reset(centres, mask)
    # Nearest overall is the (invalid) slot 1; among valid slots it is slot 0.
    memory.update(torch.tensor([[0.6, 0.8]]), torch.tensor([0]))
    torch.testing.assert_close(memory.vectors[0, 0], F.normalize(torch.tensor([0.8, 0.4]), dim=0))
    torch.testing.assert_close(memory.vectors[0, 1], torch.zeros(2))
    torch.testing.assert_close(memory.vectors[0, 2], torch.tensor([0.0, -1.0]))


def test_reset_normalises_valid_and_zeroes_invalid_slots():
    centres = torch.full((2, 2, 3), 2.0)
    mask = torch.tensor([[True, False], [True, True]])
    memory = MultiMemory(3)
    memory.reset(centres, mask)
    torch.testing.assert_close(memory.vectors[mask].norm(dim=1), torch.ones(3))
    assert memory.vectors[0, 1].abs().sum() == 0
    assert memory.num_clusters == 2 and memory.num_slots == 2
    memory.reset(centres)  # no mask: all slots valid
    assert bool(memory.mask.all())
    with pytest.raises(ValueError, match="no valid memory slot"):
        memory.reset(centres, torch.tensor([[True, False], [False, False]]))
    with pytest.raises(ValueError, match="mask must have shape"):
        memory.reset(centres, torch.ones(2, 3, dtype=torch.bool))


def test_logits_are_max_over_valid_slots():
    centres, mask, features, _ = random_bank(3, clusters=5, slots=3, dim=4, batch=7)
    memory = MultiMemory(4, temperature=0.1)
    memory.reset(centres, mask)
    logits = multi_memory_logits(features, memory.vectors, memory.mask, 0.1)
    slots = slot_similarities(features, memory.vectors, memory.mask)
    assert logits.shape == (7, 5) and slots.shape == (7, 5, 3)
    for b in range(7):
        for c in range(5):
            sims = [float(features[b] @ memory.vectors[c, k]) / 0.1 for k in range(3) if mask[c, k]]
            assert abs(float(logits[b, c]) - max(sims)) < 1e-12
            for k in range(3):
                if not mask[c, k]:
                    assert slots[b, c, k] == float("-inf")


def test_invalid_slots_never_win_even_when_closest():
    centres = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    memory = MultiMemory(2, temperature=1.0)
    memory.reset(centres, torch.tensor([[True, False]]))
    memory.vectors[0, 1] = torch.tensor([0.0, 1.0])  # a stale value in an invalid slot
    logits = multi_memory_logits(torch.tensor([[0.0, 1.0]]), memory.vectors, memory.mask, 1.0)
    assert float(logits[0, 0]) == 0.0


def test_mean_memories():
    centres, mask, _, _ = random_bank(4, clusters=6, slots=4, dim=5, batch=1)
    memory = MultiMemory(5)
    memory.reset(centres, mask)
    means = memory.mean_memories()
    assert means.shape == (6, 5)
    for c in range(6):
        valid = [memory.vectors[c, k] for k in range(4) if mask[c, k]]
        expected = F.normalize(sum(valid) / len(valid), dim=0)
        torch.testing.assert_close(means[c], expected)


def test_negative_labels_ignored_and_state_dict_round_trip():
    centres, mask, features, _ = random_bank(5, clusters=3, slots=2, dim=4, batch=5)
    memory = MultiMemory(4)
    memory.reset(centres.float(), mask)
    before = memory.vectors.clone()
    memory.update(features.float(), torch.full((5,), -1))
    assert torch.equal(memory.vectors, before)
    fresh = MultiMemory(4)
    fresh.load_state_dict(memory.state_dict())
    assert torch.equal(fresh.vectors, memory.vectors)
    assert torch.equal(fresh.mask, memory.mask) and fresh.mask.dtype == torch.bool
