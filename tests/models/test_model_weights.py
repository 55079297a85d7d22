import logging
import urllib.error
from types import SimpleNamespace

import pytest
import torch
import torchvision

from mmm_core.models import (
    PretrainedWeightsError,
    build_model,
    imagenet_state_dict,
    load_resnet_state_dict,
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
def resnet18_state(tmp_path):
    torch.manual_seed(3)
    state = torchvision.models.resnet18(weights=None).state_dict()
    # Non-default BatchNorm statistics, so that buffers are checked too.
    state["bn1.running_mean"] = torch.randn(64)
    state["bn1.bias"] = torch.randn(64)
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    return path, state


def test_torchvision_state_dict_maps_into_both_stems_and_shared_layers(resnet18_state):
    path, state = resnet18_state
    model = build_model("resnet18", pretrained=str(path))
    own = model.state_dict()
    stem_keys = [k for k in state if k.startswith(("conv1.", "bn1."))]
    assert len(stem_keys) == 6
    for stem in ("visible_stem", "infrared_stem"):
        for key in stem_keys:
            assert torch.equal(own[f"{stem}.{key}"], state[key]), (stem, key)
    layer_keys = [k for k in state if k.startswith("layer")]
    assert len(layer_keys) > 50
    for key in layer_keys:
        assert torch.equal(own[key], state[key]), key


def test_load_report_lists_missing_and_unexpected(resnet18_state, caplog):
    _, state = resnet18_state
    model = build_model("resnet18", pretrained="none", non_local=True)
    state = dict(state, **{"extra.weight": torch.zeros(1)})
    with caplog.at_level(logging.INFO, logger="mmm_core.models.weights"):
        report = load_resnet_state_dict(model, state, source="test file")
    assert report.unexpected == ["extra.weight"]  # fc.* is ignored silently
    assert "bnneck.weight" in report.missing and "pool.p" in report.missing
    assert any(k.startswith("non_local.") for k in report.missing)
    assert not any(k.startswith(("layer", "visible_stem", "infrared_stem")) for k in report.missing)
    assert "visible_stem.conv1.weight" in report.loaded
    assert "extra.weight" in caplog.text


def test_wrapped_and_prefixed_state_dict(tmp_path, resnet18_state):
    _, state = resnet18_state
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    model = build_model("resnet18", pretrained=str(path))
    assert torch.equal(model.infrared_stem.conv1.weight, state["conv1.weight"])


def test_bad_weight_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="imagenet"):
        build_model("resnet18", pretrained=str(tmp_path / "missing.pth"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(PretrainedWeightsError, match=r"garbage\.pth"):
        build_model("resnet18", pretrained=str(garbage))
    unrelated = tmp_path / "unrelated.pth"
    torch.save({"something.else": torch.zeros(2)}, unrelated)
    with pytest.raises(PretrainedWeightsError, match="no key matches"):
        build_model("resnet18", pretrained=str(unrelated))
    wrong_shape = tmp_path / "wrong.pth"
    torch.save({"conv1.weight": torch.zeros(10, 3, 7, 7)}, wrong_shape)
    with pytest.raises(PretrainedWeightsError, match="do not fit"):
        build_model("resnet18", pretrained=str(wrong_shape))


def test_imagenet_without_network_tells_user_to_pass_a_file(monkeypatch):
    class Unreachable:
        url = "https://download.pytorch.org/models/resnet18-f37072fd.pth"

        def get_state_dict(self, **_kwargs):
            raise urllib.error.URLError("no network")

    monkeypatch.setattr(
        torchvision.models, "ResNet18_Weights", SimpleNamespace(IMAGENET1K_V1=Unreachable())
    )
    with pytest.raises(PretrainedWeightsError, match=r"model\.pretrained=/path/to/resnet18-f37"):
        build_model("resnet18", pretrained="imagenet")
    with pytest.raises(ValueError, match="no ImageNet weights"):
        imagenet_state_dict("vgg16")
