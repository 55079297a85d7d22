"""engine.build.build_network: the config's network, in channels-last layout."""

from __future__ import annotations

import torch

from mmm_core.config import Config
from mmm_core.engine.build import build_network
from mmm_core.models.agw import build_model


def test_network_is_channels_last_and_computes_the_same_function() -> None:
    settings = {"model.arch": "resnet18", "model.width": 8, "model.pretrained": "none"}
    cfg = Config().replace(**settings)
    torch.manual_seed(0)
    network = build_network(cfg, torch.device("cpu"))
    # (a 1x1 kernel is both layouts at once, so only the larger kernels tell)
    kernels = [m.weight for m in network.modules() if isinstance(m, torch.nn.Conv2d)]
    kernels = [w for w in kernels if w.shape[-1] > 1]
    assert len(kernels) >= 9
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in kernels)
    assert not any(w.is_contiguous() for w in kernels)
    # The same weights in the default layout compute the same features.
    plain = build_model("resnet18", "none", width=8)
    plain.load_state_dict(network.state_dict())
    assert all(p.is_contiguous() for p in plain.parameters())
    network.eval(), plain.eval()
    images = torch.rand(6, 3, 32, 16)
    with torch.inference_mode():
        for modality in ("visible", "infrared"):
            torch.testing.assert_close(
                network(images, modality), plain(images, modality), rtol=1e-4, atol=1e-5
            )
