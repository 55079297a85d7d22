import itertools

import pytest
import torch

from mmm_core.models.layers import BNNeck, GeneralizedMeanPooling, NonLocalBlock


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny inputs gain nothing from intra-op threads, and on a loaded 2-core machine
    thread contention makes each forward many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_gem_at_p1_is_average_pooling():
    x = torch.rand(2, 5, 4, 3, dtype=torch.float64) + 0.1
    pooled = GeneralizedMeanPooling(p=1.0)(x)
    torch.testing.assert_close(pooled, x.mean(dim=(2, 3)))


def test_gem_matches_formula_at_p3():
    x = torch.rand(2, 5, 4, 3, dtype=torch.float64) + 0.1
    expected = torch.empty(2, 5, dtype=torch.float64)
    for b in range(2):
        for c in range(5):
            values = [float(v) ** 3 for v in x[b, c].flatten()]
            expected[b, c] = (sum(values) / len(values)) ** (1 / 3)
    torch.testing.assert_close(GeneralizedMeanPooling(p=3.0)(x), expected)


def test_gem_approaches_max_pooling_for_large_p():
    x = torch.rand(2, 4, 8, 4, dtype=torch.float64) * 0.9 + 0.1
    maxima = x.amax(dim=(2, 3))
    gaps = [(maxima - GeneralizedMeanPooling(p=p)(x)).max().item() for p in (1, 3, 10, 50, 500)]
    assert all(a > b for a, b in itertools.pairwise(gaps)), gaps
    assert all(g >= 0 for g in gaps)
    assert gaps[-1] < 0.01 * maxima.min().item()


def test_gem_learnable_p_is_a_parameter_and_fixed_p_a_buffer():
    learnable = GeneralizedMeanPooling(p=3.0, learnable=True)
    fixed = GeneralizedMeanPooling(p=3.0)
    assert [name for name, _ in learnable.named_parameters()] == ["p"]
    assert list(fixed.parameters()) == [] and "p" in fixed.state_dict()
    learnable(torch.rand(2, 3, 4, 4) + 0.1).sum().backward()
    assert learnable.p.grad is not None and learnable.p.grad.abs() > 0


def test_gem_keeps_float64_and_promotes_half():
    assert GeneralizedMeanPooling()(torch.rand(1, 2, 3, 3, dtype=torch.float64)).dtype == (
        torch.float64
    )
    assert GeneralizedMeanPooling()(torch.rand(1, 2, 3, 3).half()).dtype == torch.float32


def test_non_local_shapes_and_identity_at_initialisation():
    block = NonLocalBlock(8)
    assert block.inter_channels == 4
    assert block.g.out_channels == block.theta.out_channels == block.phi.out_channels == 4
    x = torch.randn(2, 8, 5, 3)
    y = block(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, x)


@torch.no_grad()
def test_non_local_matches_plain_loop():
    torch.manual_seed(0)
    block = NonLocalBlock(4).double().eval()
    bn = block.out[1]
    torch.nn.init.ones_(bn.weight)
    torch.nn.init.constant_(bn.bias, 0.25)
    bn.running_mean.normal_()
    x = torch.randn(1, 4, 2, 3, dtype=torch.float64)

    theta = block.theta(x)[0].flatten(1)  # (C', N)
    phi = block.phi(x)[0].flatten(1)
    g = block.g(x)[0].flatten(1)
    n = theta.shape[1]
    y = torch.zeros_like(g)
    for i in range(n):
        for j in range(n):
            y[:, i] += (theta[:, i] @ phi[:, j]).item() / n * g[:, j]
    w_y = block.out[0](y.view(1, 2, 2, 3))
    mean = bn.running_mean.view(1, -1, 1, 1)
    std = torch.sqrt(bn.running_var.view(1, -1, 1, 1) + bn.eps)
    expected = x + (w_y - mean) / std + 0.25
    torch.testing.assert_close(block(x), expected)


def test_bnneck_bias_is_frozen_at_zero():
    neck = BNNeck(6)
    assert not neck.bias.requires_grad
    torch.testing.assert_close(neck.bias, torch.zeros(6))
    torch.testing.assert_close(neck.weight, torch.ones(6))
    optimiser = torch.optim.Adam([p for p in neck.parameters() if p.requires_grad], lr=0.1)
    for _ in range(3):
        optimiser.zero_grad()
        (neck(torch.randn(4, 6)) ** 2).sum().backward()
        optimiser.step()
    torch.testing.assert_close(neck.bias, torch.zeros(6))
    assert not torch.equal(neck.weight, torch.ones(6))
