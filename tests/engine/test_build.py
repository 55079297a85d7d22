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


def test_a_network_whose_weights_follow_draws_no_random_weights(tmp_path) -> None:
    """`load_network` lays the network out on the meta device and fills it from the
    checkpoint: the same network as building it with random weights and loading, the random
    generators untouched, every tensor on the device and in channels-last layout."""
    import pytest

    from mmm_core.engine.build import load_network
    from mmm_core.engine.checkpoint import TrainingState, save_checkpoint

    cfg = Config().replace(
        **{"model.arch": "resnet18", "model.width": 8, "model.pretrained": "none"}
    )
    torch.manual_seed(1)
    trained = build_network(cfg, torch.device("cpu"))
    with torch.no_grad():  # weights and buffers no initialisation gives
        for tensor in [*trained.parameters(), *trained.buffers()]:
            if tensor.is_floating_point():
                tensor.add_(0.01 * torch.randn_like(tensor))
    save_checkpoint(tmp_path / "c.pt", TrainingState(1, 1, trained.state_dict()))

    before = torch.get_rng_state()
    loaded = load_network(cfg, tmp_path / "c.pt", torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), before)
    state = loaded.state_dict()
    assert state.keys() == trained.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in trained.state_dict().items())
    assert not any(t.is_meta for t in [*loaded.parameters(), *loaded.buffers()])
    kernels = [m.weight for m in loaded.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in kernels)
    frozen = [n for n, p in trained.named_parameters() if not p.requires_grad]
    assert frozen and frozen == [n for n, p in loaded.named_parameters() if not p.requires_grad]
    trained.eval(), loaded.eval()
    images = torch.rand(4, 3, 32, 16)
    with torch.inference_mode():
        features = trained(images, "infrared")
        assert torch.isfinite(features).all() and torch.equal(features, loaded(images, "infrared"))
    with_file = cfg.replace(**{"model.pretrained": str(tmp_path / "c.pt")})
    with pytest.raises(ValueError, match="replace pretrained"):
        build_network(with_file, torch.device("cpu"), weights_follow=True)
