import math

import pytest
import torch
import torch.nn.functional as F

from mmm_core.losses import cluster_nce, masked_cross_entropy, memory_logits, multi_memory_loss


def normalised(*shape, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=generator, dtype=torch.float64), dim=-1)


def loop_ce(logit_rows: list[list[float]], labels: list[int]) -> float:
    losses = []
    for row, label in zip(logit_rows, labels, strict=True):
        if label < 0:
            continue
        log_norm = math.log(sum(math.exp(v) for v in row))
        losses.append(log_norm - row[label])
    return sum(losses) / len(losses) if losses else 0.0


def test_cluster_nce_matches_plain_loop():
    features, memory = normalised(6, 5, seed=0), normalised(4, 5, seed=1)
    labels = torch.tensor([0, 3, -1, 2, 2, -5])
    tau = 0.1
    rows = [
        [sum(float(features[b, i] * memory[c, i]) for i in range(5)) / tau for c in range(4)]
        for b in range(6)
    ]
    expected = loop_ce(rows, labels.tolist())
    assert abs(float(cluster_nce(features, memory, labels, tau)) - expected) < 1e-10


def test_cluster_nce_gradcheck():
    features = normalised(5, 4, seed=2).requires_grad_()
    memory = normalised(3, 4, seed=3).requires_grad_()
    labels = torch.tensor([0, 2, -1, 1, 1])
    assert torch.autograd.gradcheck(lambda f, m: cluster_nce(f, m, labels, 0.2), (features, memory))


def test_ignored_labels_give_zero_with_graph():
    features = normalised(3, 4, seed=4).requires_grad_()
    memory = normalised(2, 4, seed=5)
    loss = cluster_nce(features, memory, torch.full((3,), -1), 0.05)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(features.grad, torch.zeros_like(features))
    # Ignored samples contribute neither to the value nor to the gradient.
    features.grad = None
    labels = torch.tensor([1, -1, 0])
    cluster_nce(features, memory, labels, 0.05).backward()
    assert torch.equal(features.grad[1], torch.zeros(4, dtype=torch.float64))
    kept = cluster_nce(features[[0, 2]], memory, labels[[0, 2]], 0.05)
    torch.testing.assert_close(cluster_nce(features, memory, labels, 0.05), kept)


def test_masked_cross_entropy_equals_torch_when_all_valid():
    logits = torch.randn(7, 5, dtype=torch.float64)
    labels = torch.randint(0, 5, (7,))
    expected = F.cross_entropy(logits, labels)
    torch.testing.assert_close(masked_cross_entropy(logits, labels), expected)


def multi_rows(features, memory, mask, tau):
    rows = []
    for b in range(features.shape[0]):
        row = []
        for c in range(memory.shape[0]):
            sims = [float(features[b] @ memory[c, k]) for k in range(memory.shape[1]) if mask[c, k]]
            row.append(max(sims) / tau)
        rows.append(row)
    return rows


def test_multi_memory_loss_matches_plain_loop():
    features, memory = normalised(8, 5, seed=6), normalised(4, 3, 5, seed=7)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 0, 1]], dtype=torch.bool)
    labels = torch.tensor([0, 1, 2, 3, -1, 3, 1, 0])
    expected = loop_ce(multi_rows(features, memory, mask, 0.05), labels.tolist())
    value = multi_memory_loss(features, memory, mask, labels, 0.05)
    assert abs(float(value) - expected) < 1e-9


def test_multi_memory_loss_ignores_invalid_slots():
    features, memory = normalised(4, 3, seed=8), normalised(2, 2, 3, seed=9)
    mask = torch.tensor([[True, False], [True, True]])
    labels = torch.tensor([0, 1, 1, 0])
    reference = multi_memory_loss(features, memory, mask, labels, 0.05)
    tampered = memory.clone()
    tampered[0, 1] = features[0]  # would be the best match if it counted
    torch.testing.assert_close(multi_memory_loss(features, tampered, mask, labels, 0.05), reference)
    assert not torch.allclose(multi_memory_loss(features, tampered, None, labels, 0.05), reference)


def test_multi_memory_loss_with_one_slot_equals_cluster_nce():
    features, memory = normalised(5, 4, seed=10), normalised(3, 4, seed=11)
    labels = torch.tensor([0, 1, 2, -1, 0])
    torch.testing.assert_close(
        multi_memory_loss(features, memory.unsqueeze(1), None, labels, 0.05),
        cluster_nce(features, memory, labels, 0.05),
    )


def test_multi_memory_loss_gradcheck_and_ignore():
    features = normalised(6, 4, seed=12).requires_grad_()
    memory = normalised(3, 2, 4, seed=13).requires_grad_()
    mask = torch.tensor([[True, True], [True, False], [False, True]])
    labels = torch.tensor([0, 1, 2, -1, 2, 0])
    assert torch.autograd.gradcheck(
        lambda f, m: multi_memory_loss(f, m, mask, labels, 0.3), (features, memory)
    )
    empty = multi_memory_loss(features, memory, mask, torch.full((6,), -1), 0.3)
    assert empty.item() == 0.0 and empty.requires_grad


def test_memory_logits_shape_checks():
    features = normalised(2, 3, seed=14)
    with pytest.raises(ValueError, match="no slot mask"):
        memory_logits(features, normalised(4, 3, seed=0), torch.ones(4, 1, dtype=torch.bool), 1.0)
    labels = torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="needs a"):
        cluster_nce(features, normalised(4, 2, 3, seed=0), labels)
    with pytest.raises(ValueError, match="needs a"):
        multi_memory_loss(features, normalised(4, 3, seed=0), None, labels)
