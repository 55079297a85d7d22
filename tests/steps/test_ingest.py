"""The ingest step: what counts as new, the threshold, the state, the skip path, the warm start."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mmm_core.steps import ingest
from mmm_core.steps.ingest import (
    Decision,
    ImageChanges,
    compare_images,
    decide,
    default_state_uri,
    list_images,
    read_state,
    write_state,
)


def test_compare_images_against_a_plain_loop() -> None:
    previous = {"a.jpg": "1", "b.jpg": "2", "c.jpg": "3"}
    current = {"a.jpg": "1", "b.jpg": "9", "d.jpg": "4", "e.jpg": "5"}
    changes = compare_images(current, previous)
    expected_new, expected_changed, expected_removed = [], [], []
    for path, print_ in current.items():
        if path not in previous:
            expected_new.append(path)
        elif previous[path] != print_:
            expected_changed.append(path)
    for path in previous:
        if path not in current:
            expected_removed.append(path)
    assert changes.new == tuple(expected_new) == ("d.jpg", "e.jpg")
    assert changes.changed == tuple(expected_changed) == ("b.jpg",)
    assert changes.removed == tuple(expected_removed) == ("c.jpg",)
    assert changes.total == 4 and changes.arrived == 3
    assert compare_images(current, {}).new == tuple(sorted(current))


@pytest.mark.parametrize(
    "new,changed,total,threshold,train",
    [
        (3, 0, 10, 3, True),  # exactly the threshold
        (2, 0, 10, 3, False),
        (1, 2, 10, 3, True),  # changed images count too
        (0, 0, 10, 1, False),
        (0, 0, 10, 0, True),  # 0 forces a run
        (0, 0, 0, 0, False),  # never on an empty dataset
    ],
)
def test_decide_threshold(new: int, changed: int, total: int, threshold: int, train: bool) -> None:
    changes = ImageChanges(
        tuple(f"n{i}" for i in range(new)), tuple(f"c{i}" for i in range(changed)), (), total
    )
    decided, reason = decide(changes, threshold)
    assert decided is train
    assert str(threshold) in reason or total == 0


def test_list_images_local_skips_state_hidden_and_other_files(tmp_path: Path, image_writer) -> None:
    root = tmp_path / "data"
    image_writer(root / "cam1" / "0001" / "0001.jpg", seed=1)
    image_writer(root / "cam3" / "0001" / "0001.png", seed=2)
    image_writer(root / "cam1" / "0001" / ".hidden.jpg", seed=3)
    image_writer(root / ".mmm" / "thumb.jpg", seed=4)
    (root / "exp").mkdir()
    (root / "exp" / "train_id.txt").write_text("1\n")
    found = list_images(root)
    assert list(found) == ["cam1/0001/0001.jpg", "cam3/0001/0001.png"]
    for relative, fingerprint in found.items():
        assert fingerprint == hashlib.md5((root / relative).read_bytes()).hexdigest()
    with pytest.raises(FileNotFoundError):
        list_images(tmp_path / "missing")


def test_default_state_uri() -> None:
    assert default_state_uri("s3://cams/sysu/", "mmm") == "s3://cams/sysu/.mmm/retrain-mmm.json"
    assert default_state_uri("/data/sysu", "team/model 1") == (
        "/data/sysu/.mmm/retrain-team_model_1.json"
    )


def test_state_round_trip_local(tmp_path: Path) -> None:
    uri = str(tmp_path / "state" / "s.json")
    assert read_state(uri) is None
    state = {"version": 1, "source": "x", "images": {"a.jpg": "1"}}
    write_state(uri, state)
    assert read_state(uri) == state
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["s.json"]  # no temporary left
    Path(uri).write_text(json.dumps({"version": 7, "images": {}}))
    with pytest.raises(ValueError, match="version 1"):
        read_state(uri)


def test_skip_outputs_writes_empty_files_and_skipped_metric(tmp_path: Path) -> None:
    logged: dict[str, float] = {}

    class FakeMetrics:
        path = str(tmp_path / "m" / "metrics")

        def log_metric(self, key: str, value: float) -> None:
            logged[key] = value

    (tmp_path / "old").write_text("stale")
    ingest.skip_outputs("train", [tmp_path / "old", tmp_path / "new" / "ckpt"], FakeMetrics())
    assert (tmp_path / "old").read_bytes() == b"" and (
        tmp_path / "new" / "ckpt"
    ).read_bytes() == b""
    assert json.loads(Path(FakeMetrics.path).read_text()) == {"skipped": 1.0}
    assert logged == {"skipped": 1.0}


def _outputs(folder: Path) -> dict[str, Path]:
    names = ("decision", "snapshot", "config", "manifest", "checkpoint", "history")
    return {name: folder / name for name in names}


def test_run_skips_below_threshold_without_touching_mlflow(
    tmp_path: Path, tiny_sysu: Path, monkeypatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # skipping needs no server
    state_uri = str(tmp_path / "state.json")
    listing = list_images(tiny_sysu)
    consumed = dict(list(listing.items())[:-2])  # two images arrived since
    write_state(state_uri, {"version": 1, "source": str(tiny_sysu), "images": consumed})
    out = _outputs(tmp_path / "out")
    out["decision"].parent.mkdir()
    metrics = ingest.run(
        [],
        [f"data.root={tiny_sysu}"],
        2,
        3,
        state_uri,
        *out.values(),
    )
    decision = Decision.read(out["decision"])
    assert not decision.train and metrics["train"] == 0.0
    assert (decision.new_images, decision.total_images, decision.min_new_images) == (
        2,
        len(listing),
        3,
    )
    assert decision.run_id == "" and decision.champion_version == ""
    assert json.loads(out["snapshot"].read_text())["images"] == listing
    for name in ("manifest", "checkpoint", "history"):
        assert out[name].read_bytes() == b""
    from mmm_core.config import load_config

    resolved = load_config(out["config"])
    assert (resolved.train.stage1_rounds, resolved.train.stage2_rounds) == (0, 2)
    assert resolved.tracking.enabled and resolved.tracking.run_id == ""
    assert read_state(state_uri)["images"] == consumed  # ingest never writes the state


def test_step_cli_ingest(tmp_path: Path, tiny_sysu: Path, capsys) -> None:
    from mmm_cli.main import main

    state = tmp_path / "state.json"
    write_state(str(state), {"version": 1, "source": "", "images": list_images(tiny_sysu)})
    out = _outputs(tmp_path)
    argv = ["step", "ingest", "--set", f"data.root={tiny_sysu}", "--rounds", "1"]
    argv += ["--min-new-images", "1", "--state-uri", str(state)]
    for name, path in out.items():
        argv += [f"--out-{name}", str(path)]
    assert main(argv) == 0
    assert "train: 0.0" in capsys.readouterr().out
    assert Decision.read(out["decision"]).reason.startswith("only 0 new")


@pytest.mark.slow
def test_run_warm_starts_from_the_champion(tmp_path: Path, micro_config) -> None:
    import torch

    from mmm_core.config import dump_config, load_config
    from mmm_core.engine.checkpoint import TrainingState, load_checkpoint, save_checkpoint
    from mmm_core.tracking import make_tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = micro_config.replace(
        **{"tracking.uri": uri, "tracking.model_name": "tiny", "tracking.experiment": "rt"}
    )
    base = tmp_path / "base.yaml"
    dump_config(cfg, base)
    state_uri = str(tmp_path / "state.json")

    # First retraining: no champion, the config's initialisation.
    first = _outputs(tmp_path / "first")
    first["decision"].parent.mkdir()
    ingest.run([base], [], 1, 1, state_uri, *first.values())
    decision = Decision.read(first["decision"])
    assert decision.train and decision.champion_version == "" and decision.run_id
    assert decision.new_images == decision.total_images > 0
    pending = decision.new_images
    resolved = load_config(first["config"])
    assert resolved.tracking.run_id == decision.run_id

    # Make a champion with recognisable weights, registered like the register step does.
    state = load_checkpoint(first["checkpoint"])
    marked = {
        k: torch.full_like(v, 0.5) if v.is_floating_point() else v for k, v in state.model.items()
    }
    champion_file = tmp_path / "new_checkpoint"
    save_checkpoint(
        champion_file,
        TrainingState(next_round=7, stage=2, model=marked, optimizer={"x": 1}, arch=state.arch),
    )
    tracker = make_tracker(True, uri, "rt")
    tracker.resume(decision.run_id)
    tracker.log_model(champion_file, "model", metadata={"note": "champion"})
    version = tracker.register_model("tiny", "champion")
    tracker.end()

    second = _outputs(tmp_path / "second")
    second["decision"].parent.mkdir()
    ingest.run([base], [], 1, 1, state_uri, *second.values())
    decision = Decision.read(second["decision"])
    assert decision.train and decision.champion_version == version
    assert decision.new_images == pending  # nothing committed the first snapshot: still new
    warm = load_checkpoint(second["checkpoint"])
    assert (warm.next_round, warm.stage, warm.optimizer) == (0, 0, None)
    for key, value in marked.items():
        assert torch.equal(warm.model[key], value), key
    assert load_config(second["config"]).model.pretrained == "none"  # weights come from v1
    logged = make_tracker(True, uri, "rt").get_run_metrics(decision.run_id)
    assert logged["retrain/train"] == 1.0 and logged["retrain/new_images"] == pending
