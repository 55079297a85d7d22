"""``mmm pretrain``: a torchvision ResNet state dict the two-stream model can load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmm_cli import main as cli
from mmm_core.engine import pretrain
from mmm_core.models import build_model
from mmm_core.models.weights import load_resnet_state_dict


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train(tiny_sysu: Path, seed: int) -> tuple[dict[str, torch.Tensor], pretrain.PretrainResult]:
    from mmm_core.data import sysu

    visible = sysu.train_manifest(tiny_sysu).modality("visible")
    return pretrain.pretrain_classifier(
        visible.full_paths(),
        visible.pids,
        height=32,
        width=16,
        pad=2,
        iterations=3,
        batch_size=4,
        seed=seed,
    )


def test_state_dict_loads_into_both_stems_and_is_seeded(tiny_sysu: Path) -> None:
    state, result = _train(tiny_sysu, seed=3)
    assert result.identities == 4  # train ids 1-3 + val id 4
    assert state["fc.weight"].shape == (4, 512)
    model = build_model("resnet18", "none")
    report = load_resnet_state_dict(model, state, source="test")
    assert not report.unexpected
    for stem in ("visible_stem", "infrared_stem"):
        assert torch.equal(model.state_dict()[f"{stem}.conv1.weight"], state["conv1.weight"])
    assert torch.equal(model.state_dict()["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])
    again, _ = _train(tiny_sysu, seed=3)
    other, _ = _train(tiny_sysu, seed=4)
    assert all(torch.equal(state[k], again[k]) for k in state)
    assert not torch.equal(state["conv1.weight"], other["conv1.weight"])


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="arch"):
        pretrain.pretrain_classifier(["a.jpg"], np.array([1]), arch="vgg")
    with pytest.raises(ValueError, match="paths/labels"):
        pretrain.pretrain_classifier(["a.jpg", "b.jpg"], np.array([1]))


def test_command_writes_weights_and_provenance(tiny_sysu: Path, tmp_path: Path) -> None:
    out = tmp_path / "weights" / "r18.pt"
    argv = ["pretrain", "--out", str(out), "--data", str(tiny_sysu), "--iters", "2"]
    argv += ["--batch-size", "4", "--height", "32", "--width", "16", "--no-progress"]
    assert cli.main(argv) == 0
    provenance = json.loads(Path(f"{out}.json").read_text())
    assert provenance["iterations"] == 2 and provenance["source"] == str(tiny_sysu)
    assert provenance["images"] == len(list(tiny_sysu.glob("cam[1245]/000[1-4]/*.jpg")))
    model = build_model("resnet18", str(out))  # the path form of model.pretrained
    saved = torch.load(out, weights_only=True)
    assert torch.equal(model.state_dict()["infrared_stem.bn1.weight"], saved["bn1.weight"])


def test_generated_data_of_an_older_world_is_made_again(tmp_path: Path, capsys) -> None:
    from mmm_core.data.synthetic import SYNTH_VERSION

    out = tmp_path / "weights" / "r18.pt"
    argv = ["pretrain", "--out", str(out), "--ids", "4", "--iters", "1", "--batch-size", "4"]
    argv += ["--height", "32", "--width", "16", "--no-progress"]
    assert cli.main(argv) == 0
    meta = tmp_path / "weights" / "pretrain-data-tiny-4ids-seed1000" / "synthetic.json"
    assert json.loads(meta.read_text())["version"] == SYNTH_VERSION
    capsys.readouterr()
    meta.write_text(meta.read_text().replace(f'"version": {SYNTH_VERSION}', '"version": 0'))
    assert cli.main(argv) == 0
    assert f"version 0 -> {SYNTH_VERSION}" in capsys.readouterr().out
    assert json.loads(meta.read_text())["version"] == SYNTH_VERSION
    assert cli.main(argv) == 0  # a current tree is reused
    assert "generating" not in capsys.readouterr().out
