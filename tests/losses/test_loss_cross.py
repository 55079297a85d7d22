import math

import torch
import torch.nn.functional as F

from mmm_core.losses import cross_modality_loss, cross_modality_nce


def normalised(*shape, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=generator, dtype=torch.float64), dim=-1)


def loop_direction(features, labels, memory, mask, mapping, tau) -> float:
    """Mean over samples with a label and a partner of -log softmax(z)[mapping[y]]."""
    losses = []
    for b in range(features.shape[0]):
        label = int(labels[b])
        if label < 0 or int(mapping[label]) < 0:
            continue
        z = []
        for c in range(memory.shape[0]):
            sims = [float(features[b] @ memory[c, k]) for k in range(memory.shape[1]) if mask[c, k]]
            z.append(max(sims) / tau)
        target = int(mapping[label])
        losses.append(math.log(sum(math.exp(v) for v in z)) - z[target])
    return sum(losses) / len(losses) if losses else 0.0


def setting():
    features_v, features_r = normalised(7, 4, seed=0), normalised(6, 4, seed=1)
    memory_v, memory_r = normalised(3, 2, 4, seed=2), normalised(4, 3, 4, seed=3)
    mask_v = torch.tensor([[True, True], [True, False], [True, True]])
    mask_r = torch.tensor(
        [[True, False, False], [True, True, True], [True, True, False], [True, True, True]]
    )
    labels_v = torch.tensor([0, 1, 2, -1, 2, 0, 1])
    labels_r = torch.tensor([3, 0, -1, 1, 2, 3])
    v2r = torch.tensor([2, -1, 0])  # visible cluster 1 has no partner
    r2v = torch.tensor([2, 0, 1, 0])
    return features_v, labels_v, memory_r, mask_r, v2r, features_r, labels_r, memory_v, mask_v, r2v


def test_cross_modality_loss_matches_plain_loop():
    fv, yv, mr, kr, v2r, fr, yr, mv, kv, r2v = setting()
    tau = 0.1
    expected = loop_direction(fv, yv, mr, kr, v2r, tau) + loop_direction(fr, yr, mv, kv, r2v, tau)
    value = cross_modality_loss(
        features_v=fv,
        labels_v=yv,
        memory_r=mr,
        mask_r=kr,
        v2r=v2r,
        features_r=fr,
        labels_r=yr,
        memory_v=mv,
        mask_v=kv,
        r2v=r2v,
        temperature=tau,
    )
    assert abs(float(value) - expected) < 1e-9
    one_way = cross_modality_nce(fv, yv, mr, kr, v2r, tau)
    assert abs(float(one_way) - loop_direction(fv, yv, mr, kr, v2r, tau)) < 1e-9


def test_single_memory_equals_one_slot_multi_memory():
    fv, yv, _, _, v2r, *_ = setting()
    memory_r = normalised(4, 4, seed=5)
    torch.testing.assert_close(
        cross_modality_nce(fv, yv, memory_r, None, v2r, 0.05),
        cross_modality_nce(fv, yv, memory_r.unsqueeze(1), None, v2r, 0.05),
    )


def test_cross_modality_loss_gradcheck():
    fv, yv, mr, kr, v2r, fr, yr, mv, kv, r2v = setting()
    fv.requires_grad_()
    fr.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b: cross_modality_loss(
            features_v=a,
            labels_v=yv,
            memory_r=mr,
            mask_r=kr,
            v2r=v2r,
            features_r=b,
            labels_r=yr,
            memory_v=mv,
            mask_v=kv,
            r2v=r2v,
            temperature=0.2,
        ),
        (fv, fr),
    )


def test_ignored_labels_and_unmatched_clusters():
    fv, yv, mr, kr, v2r, *_ = setting()
    fv.requires_grad_()
    none = cross_modality_nce(fv, torch.full_like(yv, -1), mr, kr, v2r, 0.05)
    assert none.item() == 0.0 and none.requires_grad
    # All visible samples of cluster 1 (unmatched) contribute nothing.
    only_unmatched = cross_modality_nce(fv, torch.ones_like(yv), mr, kr, v2r, 0.05)
    assert only_unmatched.item() == 0.0
    cross_modality_nce(fv, yv, mr, kr, v2r, 0.05).backward()
    assert torch.equal(fv.grad[[1, 3, 6]], torch.zeros(3, 4, dtype=torch.float64))
    assert fv.grad[[0, 2, 4, 5]].abs().sum() > 0
