import pytest
import torch
import torch.nn.functional as F

from mmm_core.models import (
    FeatureOutput,
    NonLocalBlock,
    TwoStreamAGW,
    build_model,
    extract_features,
)


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny inputs gain nothing from intra-op threads, and on a loaded 2-core machine
    thread contention makes each forward many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def model() -> TwoStreamAGW:
    torch.manual_seed(0)
    net = build_model("resnet18", pretrained="none")
    # Freshly built stems are identical copies; make them differ so routing is observable.
    with torch.no_grad():
        net.infrared_stem.conv1.weight.mul_(-0.5)
    return net


def images(batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, 32, 16, generator=torch.Generator().manual_seed(seed))


def test_resnet18_train_mode_returns_pooled_and_neck(model):
    out = model.train()(images(), "visible")
    assert isinstance(out, FeatureOutput)
    assert out.pooled.shape == (2, 512) and out.neck.shape == (2, 512)
    assert model.feature_dim == 512
    assert not torch.allclose(out.pooled, out.neck)


def test_resnet18_eval_mode_returns_normalised_neck(model):
    model.eval()
    out = model(images(), "infrared")
    assert out.shape == (2, 512)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))
    neck = model.bnneck(model.pool(model.backbone(model.stems(images(), "infrared"))))
    torch.testing.assert_close(out, F.normalize(neck, dim=1))


@pytest.mark.parametrize(("stride", "expected"), [(1, (4, 2)), (2, (2, 1))])
def test_last_stride(stride, expected):
    net = build_model("resnet18", pretrained="none", last_stride=stride).eval()
    x = torch.randn(1, 3, 64, 32)
    assert net.backbone(net.stems(x, "visible")).shape[-2:] == expected


def test_modalities_use_different_stems(model):
    model.eval()
    assert not torch.allclose(model(images(), "visible"), model(images(), "infrared"))


def test_mixed_batch_equals_separate_forwards_in_eval(model):
    model.eval()
    x = images(5)
    modality = torch.tensor([0, 1, 1, 0, 1])
    mixed = model(x, modality)
    visible = model(x[[0, 3]], "visible")
    infrared = model(x[[1, 2, 4]], "infrared")
    torch.testing.assert_close(mixed[[0, 3]], visible)
    torch.testing.assert_close(mixed[[1, 2, 4]], infrared)
    torch.testing.assert_close(model(x, modality.bool()), mixed)
    torch.testing.assert_close(model(x, torch.zeros(5, dtype=torch.long)), model(x, "visible"))
    torch.testing.assert_close(model(x, torch.ones(5, dtype=torch.bool)), model(x, "infrared"))


def stem_grads(net: TwoStreamAGW) -> tuple[float, float]:
    def total(stem):
        return sum(p.grad.abs().sum().item() for p in stem.parameters() if p.grad is not None)

    return total(net.visible_stem), total(net.infrared_stem)


def test_stems_receive_gradient_only_from_their_modality(model):
    model.train()
    model(images(), "visible").neck.sum().backward()
    visible, infrared = stem_grads(model)
    assert visible > 0 and infrared == 0

    model.zero_grad(set_to_none=True)
    model(images(), "infrared").neck.sum().backward()
    visible, infrared = stem_grads(model)
    assert visible == 0 and infrared > 0

    # Mixed batch, eval mode (no batch coupling through BatchNorm): a loss on the visible
    # samples only reaches the visible stem.
    model.eval()
    model.zero_grad(set_to_none=True)
    out = model(images(4), torch.tensor([0, 1, 0, 1]))
    out[[0, 2]].sum().backward()
    visible, infrared = stem_grads(model)
    assert visible > 0 and infrared == 0


def test_stem_batchnorm_statistics_are_per_modality(model):
    model.train()
    before_visible = model.visible_stem.bn1.running_mean.clone()
    before_infrared = model.infrared_stem.bn1.running_mean.clone()
    model(images(), "visible")
    assert not torch.equal(model.visible_stem.bn1.running_mean, before_visible)
    assert torch.equal(model.infrared_stem.bn1.running_mean, before_infrared)


def test_bnneck_bias_frozen_in_model(model):
    assert not model.bnneck.bias.requires_grad
    assert torch.count_nonzero(model.bnneck.bias) == 0
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(trainable, lr=1e-2, weight_decay=5e-4)
    model.train()
    model(images(4), torch.tensor([0, 1, 0, 1])).neck.pow(2).sum().backward()
    optimiser.step()
    assert torch.count_nonzero(model.bnneck.bias) == 0


def test_non_local_blocks_placement_and_shapes():
    net = build_model("resnet18", pretrained="none", non_local=True)
    assert net.non_local_positions == {
        "layer1": (),
        "layer2": (1,),
        "layer3": (1,),
        "layer4": (),
    }
    seen = []
    for name, blocks in net.non_local.items():
        for block in blocks:
            assert isinstance(block, NonLocalBlock)
            assert block.inter_channels == block.in_channels // 2
            block.register_forward_hook(
                lambda _m, inputs, output, name=name: seen.append(
                    (name, tuple(inputs[0].shape), tuple(output.shape))
                )
            )
    net.eval()(images(), "visible")
    assert seen == [
        ("layer2", (2, 128, 4, 2), (2, 128, 4, 2)),
        ("layer3", (2, 256, 2, 1), (2, 256, 2, 1)),
    ]


def test_resnet50_dimension_and_non_local_placement_follow_agw():
    net = build_model("resnet50", pretrained="none", non_local=True).eval()
    assert net.feature_dim == 2048
    assert net.non_local_positions["layer2"] == (2, 3)
    assert net.non_local_positions["layer3"] == (3, 4, 5)
    assert [b.inter_channels for b in net.non_local["layer2"]] == [256, 256]
    assert [b.inter_channels for b in net.non_local["layer3"]] == [512, 512, 512]
    assert net(images(), "visible").shape == (2, 2048)


def test_non_local_blocks_start_as_identity():
    torch.manual_seed(0)
    plain = build_model("resnet18", pretrained="none").eval()
    with_non_local = build_model("resnet18", pretrained="none", non_local=True).eval()
    missing, unexpected = with_non_local.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(key.startswith("non_local.") for key in missing)
    torch.testing.assert_close(with_non_local(images(), "visible"), plain(images(), "visible"))


def test_bad_modality_is_rejected(model):
    with pytest.raises(ValueError, match="modality"):
        model(images(), "rgb")
    with pytest.raises(ValueError, match="shape"):
        model(images(), torch.tensor([0, 1, 1]))


def test_extract_features_flip_average(model):
    model.train()
    x = images(3)
    features = extract_features(model, x, "infrared", flip=True)
    assert model.training  # mode restored
    assert not features.requires_grad
    torch.testing.assert_close(features.norm(dim=1), torch.ones(3))
    model.eval()
    expected = F.normalize(model(x, "infrared") + model(x.flip(3), "infrared"), dim=1)
    torch.testing.assert_close(features, expected)
    unflipped = extract_features(model, x, "infrared", flip=False)
    torch.testing.assert_close(unflipped, model(x, "infrared"))
    assert not torch.allclose(unflipped, features)


@pytest.mark.parametrize(("width", "dim"), [(16, 128), (32, 256), (64, 512)])
def test_width_scales_channels_and_keeps_the_structure(width: int, dim: int) -> None:
    narrow = build_model("resnet18", "none", width=width)
    reference = build_model("resnet18", "none")
    assert narrow.feature_dim == dim and narrow.width == width
    # same module names and tensor ranks; channel counts scaled by width / 64
    narrow_state, reference_state = narrow.state_dict(), reference.state_dict()
    assert list(narrow_state) == list(reference_state)
    conv = narrow.visible_stem.conv1
    assert conv.out_channels == width and conv.kernel_size == (7, 7) and conv.stride == (2, 2)
    assert narrow.layer4[0].conv1.stride == (1, 1)  # last stride 1 at every width
    for key, tensor in narrow_state.items():
        assert tensor.dim() == reference_state[key].dim(), key
    narrow.train()
    out = narrow(torch.randn(4, 3, 32, 16), torch.tensor([0, 0, 1, 1]))
    assert out.neck.shape == (4, dim) and out.pooled.shape == (4, dim)


def test_width_64_is_torchvisions_network() -> None:
    import torchvision

    from mmm_core.models.backbone import random_resnet

    ours = random_resnet("resnet18", 64).state_dict()
    theirs = torchvision.models.resnet18(weights=None).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    with pytest.raises(ValueError, match="ImageNet weights exist only for width 64"):
        build_model("resnet18", "imagenet", width=32)


def test_weights_file_of_a_narrow_width_loads(tmp_path) -> None:
    from mmm_core.models.backbone import random_resnet

    source = random_resnet("resnet18", 16, num_classes=7)
    torch.save(source.state_dict(), tmp_path / "w16.pt")
    model = build_model("resnet18", str(tmp_path / "w16.pt"), width=16)
    assert torch.equal(model.layer3[1].conv2.weight, source.layer3[1].conv2.weight)
    assert torch.equal(model.infrared_stem.conv1.weight, source.conv1.weight)
