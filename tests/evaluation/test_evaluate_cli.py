"""The `mmm evaluate` subcommand on a features file over tiny real layouts."""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pytest
from PIL import Image

from mmm_cli.commands import evaluate as cli
from mmm_cli.main import main as mmm
from mmm_core.evaluation.protocols import save_feature_file


def read_means(path) -> dict[str, float]:
    """metrics.json (ProtocolResult.to_json) as ``ProtocolResult.metrics()`` names them."""
    data = json.loads(path.read_text())
    return {
        f"{setting}/{name}": value
        for setting, entry in data["settings"].items()
        for name, value in entry["mean"].items()
    }


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.configure_parser(parser)
    return parser.parse_args(argv)


def _identity_features(root, scale: float = 1.0):
    """Features of every image under root, one-hot by id folder; paths relative to root."""
    paths = sorted(
        os.path.relpath(os.path.join(d, f), root)
        for d, _, files in os.walk(root)
        for f in files
        if f.endswith((".jpg", ".bmp"))
    )
    features = np.zeros((len(paths), 16), dtype=np.float32)
    for row, path in enumerate(paths):
        features[row, int(os.path.basename(os.path.dirname(path))) % 16] = scale
    return paths, features


def test_evaluate_sysu_features_writes_outputs(tmp_path, sysu_root, capsys):
    paths, features = _identity_features(sysu_root)
    save_feature_file(tmp_path / "f.npz", paths, features)
    out = tmp_path / "out"
    args = _parse(
        [
            "--features",
            str(tmp_path / "f.npz"),
            "--format",
            "sysu",
            "--root",
            str(sysu_root),
            "--modes",
            "all",
            "--shots",
            "1",
            "10",
            "--trials",
            "2",
            "--out",
            str(out),
            "--ranked-list",
            "3",
        ]
    )
    assert cli.main(args) == 0
    result = read_means(out / "metrics.json")
    settings = sorted({key.rsplit("/", 1)[0] for key in result})
    assert settings == ["sysu/all/multi", "sysu/all/single"]
    assert result["sysu/all/single/rank1"] == 1.0
    assert "100.00" in (out / "table.txt").read_text()
    assert "sysu/all/multi" in capsys.readouterr().out
    for name in ("cmc.png", "ranked_list.png"):
        with Image.open(out / name) as picture:
            assert picture.format == "PNG"
    assert "data:image/png;base64" in (out / "ranked_list.html").read_text()


def test_evaluate_regdb_and_normalize(tmp_path, regdb_root, capsys):
    paths, features = _identity_features(regdb_root, scale=3.0)
    save_feature_file(tmp_path / "f.npz", paths, features)
    argv = [
        "--features",
        str(tmp_path / "f.npz"),
        "--format",
        "regdb",
        "--root",
        str(regdb_root),
        "--trial",
        "1",
        "--out",
        str(tmp_path / "out"),
    ]
    assert mmm(["evaluate", *argv]) == 2
    assert "L2-normalised" in capsys.readouterr().err
    assert cli.main(_parse([*argv, "--normalize", "--ranked-list", "0"])) == 0
    data = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(data["settings"]) == {"regdb/visible->thermal", "regdb/thermal->visible"}
    assert not (tmp_path / "out" / "ranked_list.png").exists()


def test_missing_features_and_checkpoint_errors_are_clear(tmp_path, regdb_root, capsys):
    save_feature_file(tmp_path / "f.npz", ["Visible/1/x.bmp"], np.ones((1, 4)) / 2)
    where = ["--format", "regdb", "--root", str(regdb_root)]
    assert mmm(["evaluate", "--features", str(tmp_path / "f.npz"), *where]) == 2
    err = capsys.readouterr().err
    assert "have no features" in err and "Traceback" not in err
    assert mmm(["evaluate", "--checkpoint", str(tmp_path / "none.pt"), *where]) == 2
    err = capsys.readouterr().err
    assert "checkpoint not found" in err and "Traceback" not in err


@pytest.mark.slow
def test_evaluate_checkpoint(tmp_path, regdb_root):
    torch = pytest.importorskip("torch")
    from mmm_core.engine.checkpoint import TrainingState, save_checkpoint
    from mmm_core.models import build_model

    torch.manual_seed(0)
    model = build_model("resnet18", pretrained="none")
    save_checkpoint(
        tmp_path / "model.pt",
        TrainingState(next_round=1, stage=1, model=model.state_dict(), arch="resnet18"),
    )
    out = tmp_path / "out"
    argv = [
        "--checkpoint",
        str(tmp_path / "model.pt"),
        "--format",
        "regdb",
        "--root",
        str(regdb_root),
        "--device",
        "cpu",
        "--out",
        str(out),
        "--set",
        "data.height=32",
        "--set",
        "data.width=16",
        "--set",
        "data.workers=0",
        "--ranked-list",
        "2",
    ]
    assert cli.main(_parse(argv)) == 0
    result = read_means(out / "metrics.json")
    settings = {key.rsplit("/", 1)[0] for key in result}
    assert settings == {"regdb/visible->thermal", "regdb/thermal->visible"}
    assert (out / "ranked_list.png").is_file()
    # Same numbers as the protocol run directly on the model's flip-averaged features.
    from mmm_core.engine.features import extract_features
    from mmm_core.evaluation.protocols import evaluate_regdb

    def extract(paths, modality):
        return extract_features(
            model, paths, modality, height=32, width=16, device=torch.device("cpu")
        )

    want = evaluate_regdb(extract, regdb_root, trial=1).metrics()
    assert result == pytest.approx(want, abs=1e-9)


def test_evaluate_takes_the_input_size_from_the_checkpoint(
    tmp_path, regdb_root, monkeypatch, capsys
):
    pytest.importorskip("torch")
    from mmm_core.engine import build
    from mmm_core.engine.checkpoint import TrainingState, save_checkpoint
    from mmm_core.models import build_model

    model = build_model("resnet18", pretrained="none", width=16)
    state = TrainingState(
        next_round=1, stage=1, model=model.state_dict(), arch="resnet18", width=16,
        input_size=(32, 16),
    )  # fmt: skip
    save_checkpoint(tmp_path / "model.pt", state)
    seen = []
    real = build.make_extractor

    def spy(cfg, *args, **kwargs):
        seen.append((cfg.data.height, cfg.data.width))
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(build, "make_extractor", spy)
    argv = ["--checkpoint", str(tmp_path / "model.pt"), "--format", "regdb", "--root",
            str(regdb_root), "--device", "cpu", "--out", str(tmp_path / "out")]  # fmt: skip
    assert cli.main(_parse(argv)) == 0  # no config given: the default 288x144 is not used
    assert seen == [(32, 16)]
    assert mmm(["evaluate", *argv, "--set", "data.height=64"]) == 2
    err = capsys.readouterr().err
    assert "is 64x144, but" in err and "was trained at 32x16" in err
