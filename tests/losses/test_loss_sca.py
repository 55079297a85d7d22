import torch
import torch.nn.functional as F

from mmm_core.losses import batch_centroids, sca_loss, soft_alignment


def normalised(*shape, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=generator, dtype=torch.float64), dim=-1)


def soft_weights(rows: int, cols: int, seed: int) -> torch.Tensor:
    """Row-stochastic weights with zeros, like top-k softmax weights."""
    generator = torch.Generator().manual_seed(seed)
    weights = torch.rand(rows, cols, generator=generator, dtype=torch.float64)
    weights[weights < 0.4] = 0
    weights[:, 0] += 0.1  # keep every row non-empty
    return weights / weights.sum(dim=1, keepdim=True)


def loop_direction(features, labels, weights, memory) -> float:
    per_identity = []
    for identity in sorted(set(labels.tolist()) - {lab for lab in labels.tolist() if lab < 0}):
        members = [features[b] for b in range(len(labels)) if int(labels[b]) == identity]
        centroid = sum(members) / len(members)
        total = 0.0
        for b in range(memory.shape[0]):
            diff = centroid - memory[b]
            total += float(weights[identity, b]) * float(diff @ diff)
        per_identity.append(total)
    return sum(per_identity) / len(per_identity) if per_identity else 0.0


def setting():
    features_v, features_r = normalised(8, 5, seed=0), normalised(7, 5, seed=1)
    labels_v = torch.tensor([0, 2, 2, -1, 3, 0, 2, -1])  # cluster 1 absent
    labels_r = torch.tensor([1, 1, 0, -1, 2, 1, 0])
    weights_v2r, weights_r2v = soft_weights(4, 3, seed=2), soft_weights(3, 4, seed=3)
    mean_v, mean_r = normalised(4, 5, seed=4), normalised(3, 5, seed=5)
    return features_v, labels_v, features_r, labels_r, weights_v2r, weights_r2v, mean_v, mean_r


def sca(fv, yv, fr, yr, wv2r, wr2v, mv, mr):
    """`sca_loss` with its arguments in the order `setting` returns them."""
    return sca_loss(
        features_v=fv,
        labels_v=yv,
        features_r=fr,
        labels_r=yr,
        weights_v2r=wv2r,
        weights_r2v=wr2v,
        mean_memory_v=mv,
        mean_memory_r=mr,
    )


def test_sca_loss_matches_plain_loop():
    fv, yv, fr, yr, wv2r, wr2v, mv, mr = setting()
    expected = loop_direction(fv, yv, wv2r, mr) + loop_direction(fr, yr, wr2v, mv)
    value = sca(fv, yv, fr, yr, wv2r, wr2v, mv, mr)
    assert abs(float(value) - expected) < 1e-10
    one_way = soft_alignment(fv, yv, wv2r, mr)
    assert abs(float(one_way) - loop_direction(fv, yv, wv2r, mr)) < 1e-10


def test_batch_centroids():
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 3.0], [5.0, 5.0]])
    ids, centroids = batch_centroids(features, torch.tensor([4, 4, -1, 1]))
    assert ids.tolist() == [1, 4]
    torch.testing.assert_close(centroids, torch.tensor([[5.0, 5.0], [0.5, 0.5]]))


def test_sca_gradcheck_and_memories_detached():
    fv, yv, fr, yr, wv2r, wr2v, mv, mr = setting()
    fv.requires_grad_()
    fr.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b: sca(a, yv, b, yr, wv2r, wr2v, mv, mr),
        (fv, fr),
    )
    mv.requires_grad_()
    mr.requires_grad_()
    wv2r.requires_grad_()
    sca(fv, yv, fr, yr, wv2r, wr2v, mv, mr).backward()
    assert mv.grad is None and mr.grad is None and wv2r.grad is None
    assert fv.grad[[3, 7]].abs().sum() == 0 and fv.grad[[0, 1]].abs().sum() > 0


def test_sca_ignored_labels():
    fv, yv, fr, yr, wv2r, wr2v, mv, mr = setting()
    fv.requires_grad_()
    no_visible = torch.full_like(yv, -1)
    value = sca(fv, no_visible, fr, yr, wv2r, wr2v, mv, mr)
    torch.testing.assert_close(value, soft_alignment(fr, yr, wr2v, mv))
    nothing = sca_loss(
        features_v=fv,
        labels_v=no_visible,
        features_r=fr,
        labels_r=torch.full_like(yr, -1),
        weights_v2r=wv2r,
        weights_r2v=wr2v,
        mean_memory_v=mv,
        mean_memory_r=mr,
    )
    assert nothing.item() == 0.0
    nothing.backward()
    assert torch.equal(fv.grad, torch.zeros_like(fv))


def test_sca_is_zero_when_centroids_sit_on_their_only_target():
    memory_r = normalised(2, 3, seed=6)
    features_v = memory_r[[1, 1, 0]]
    labels_v = torch.tensor([0, 0, 1])
    weights = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    assert abs(float(soft_alignment(features_v, labels_v, weights, memory_r))) < 1e-12
