"""`mmm_core.models.resnet` builds torchvision's ResNets without importing torchvision.

Compared with torchvision itself: the same random weights under a seed (bit for bit, at
width 64 and at a reduced width), the same outputs, the same state-dict keys; and the
steps that build a network do not import torchvision.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torchvision

from mmm_core.models import backbone
from mmm_core.models.backbone import random_resnet

TORCHVISION = {"resnet18": torchvision.models.resnet18, "resnet50": torchvision.models.resnet50}


def torchvision_resnet(monkeypatch, arch: str, width: int, num_classes: int):
    """`random_resnet` as it was when it built torchvision's class."""
    spec = backbone.ARCHITECTURES[arch]
    factory = TORCHVISION[arch]
    monkeypatch.setitem(
        backbone.ARCHITECTURES,
        arch,
        spec.__class__(
            lambda num_classes: factory(weights=None, num_classes=num_classes),
            spec.feature_dim,
            spec.non_local_layers,
        ),
    )
    try:
        return random_resnet(arch, width, num_classes)
    finally:
        monkeypatch.undo()


@pytest.mark.parametrize(("arch", "width"), [("resnet18", 64), ("resnet18", 16), ("resnet50", 8)])
def test_same_weights_and_outputs_as_torchvision_under_a_seed(monkeypatch, arch, width) -> None:
    torch.manual_seed(3)
    ours = random_resnet(arch, width, num_classes=10)
    after_ours = torch.rand(1)
    torch.manual_seed(3)
    theirs = torchvision_resnet(monkeypatch, arch, width, 10)
    assert isinstance(theirs, torchvision.models.ResNet)
    assert not isinstance(ours, torchvision.models.ResNet)
    # the same random numbers were drawn, in the same order
    assert torch.equal(torch.rand(1), after_ours)

    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert list(ours_state) == list(theirs_state)
    for key, value in theirs_state.items():
        assert ours_state[key].shape == value.shape, key
        assert torch.equal(ours_state[key], value), key
    assert [type(m).__name__ for m in ours.modules()][1:] == [
        type(m).__name__ for m in theirs.modules()
    ][1:]

    images = torch.randn(2, 3, 64, 32)
    for train in (True, False):  # batch statistics, then the running ones they updated
        ours.train(train)
        theirs.train(train)
        with torch.no_grad():
            assert torch.equal(ours(images), theirs(images))
    for key, value in theirs.state_dict().items():  # running statistics moved alike
        assert torch.equal(ours.state_dict()[key], value), key


def test_torchvision_imagenet_layout_loads_strictly() -> None:
    """A torchvision state dict (the ImageNet weights' layout) loads with no key left over."""
    for arch, factory in TORCHVISION.items():
        state = factory(weights=None).state_dict()
        ours = random_resnet(arch)
        ours.load_state_dict(state, strict=True)
        assert all(torch.equal(ours.state_dict()[k], v) for k, v in state.items())


def test_building_the_network_in_a_step_imports_no_torchvision() -> None:
    """The extract, train and evaluate steps build the network; none imports torchvision
    (2-3 s per task). The ImageNet weights alone still come through it."""
    code = (
        "import sys\n"
        "import mmm_core.steps.extract, mmm_core.steps.train, mmm_core.steps.evaluate\n"
        "import mmm_core.steps.start, mmm_core.serving\n"
        "from mmm_core.models import build_model\n"
        "from mmm_core.data.transforms import eval_transform, train_transforms\n"
        "build_model('resnet18', width=8, pretrained='none')\n"
        "eval_transform(); train_transforms(32, 16)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torchvision'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "[]", result.stdout[-2000:]
