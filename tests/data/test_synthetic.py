"""The synthetic generator: exact layouts, determinism, and a real (not toy) modality gap."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmm_cli.commands.synth import configure_parser, main
from mmm_cli.main import main as mmm
from mmm_core.data import regdb, sysu
from mmm_core.data.synthetic import (
    PRESETS,
    SynthPreset,
    generate_regdb,
    generate_sysu,
    identity_traits,
    render_identity,
    sysu_plan,
)
from mmm_core.data.synthetic_render import SKIN, UPPER, luma

RGB_CAMERAS = ("cam1", "cam2", "cam4", "cam5")
IR_CAMERAS = ("cam3", "cam6")


@pytest.fixture(scope="module")
def sysu_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "sysu"
    generate_sysu(root, ids=12, seed=3)
    return root


@pytest.fixture(scope="module")
def regdb_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "regdb"
    generate_regdb(root, ids=12, seed=3)
    return root


def read_ids(path: Path) -> list[int]:
    lines = path.read_text().splitlines()
    assert len(lines) == 1, f"{path} must hold one line"
    assert re.fullmatch(r"\d+(,\d+)*", lines[0]), lines[0]
    return [int(token) for token in lines[0].split(",")]


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def decoded(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(np.int16)


def equal_channels(pixels: np.ndarray) -> bool:
    return bool(
        (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    )


# ----------------------------------------------------------------------------- SYSU layout


def test_sysu_tree_has_the_release_layout(sysu_root: Path) -> None:
    files = [p.relative_to(sysu_root).as_posix() for p in sysu_root.rglob("*") if p.is_file()]
    images = [f for f in files if f.endswith(".jpg")]
    assert sorted(set(files) - set(images)) == [
        "exp/test_id.txt",
        "exp/train_id.txt",
        "exp/val_id.txt",
        "synthetic.json",
    ]
    assert all(re.fullmatch(r"cam[1-6]/\d{4}/\d{4}\.jpg", f) for f in images)
    lo, hi = PRESETS["tiny"].images_per_camera
    seen: dict[int, set[str]] = {}
    for camera in (*RGB_CAMERAS, *IR_CAMERAS):
        folders = sorted((sysu_root / camera).iterdir())
        assert folders, f"{camera} is empty"
        for folder in folders:
            names = sorted(p.name for p in folder.iterdir())
            assert names == [f"{i:04d}.jpg" for i in range(1, len(names) + 1)]
            assert lo <= len(names) <= hi
            seen.setdefault(int(folder.name), set()).add(camera)
            with Image.open(folder / names[0]) as image:
                assert image.format == "JPEG" and image.size == (32, 64)
    assert sorted(seen) == list(range(1, 13))
    for pid, cameras in seen.items():
        assert cameras & set(RGB_CAMERAS) and cameras & set(IR_CAMERAS), pid
    assert any(len(cameras) < 6 for cameras in seen.values()), "every id in every camera"


def test_sysu_split_files_partition_the_ids(sysu_root: Path) -> None:
    train = read_ids(sysu_root / "exp" / "train_id.txt")
    val = read_ids(sysu_root / "exp" / "val_id.txt")
    test = read_ids(sysu_root / "exp" / "test_id.txt")
    present = {int(p.name) for camera in sysu_root.glob("cam*") for p in camera.iterdir()}
    assert set(train) | set(val) | set(test) == present
    assert len(train) + len(val) + len(test) == len(present)  # disjoint, no repeats
    assert len(test) >= 2 and len(val) >= 1 and len(train) > len(test)


def test_sysu_plan_matches_the_real_protocol_needs() -> None:
    for seed in range(5):
        plan = sysu_plan(24, seed)
        assert len(plan.test) >= 6
        indoor = [p for p in plan.test if (1, p) in plan.images or (2, p) in plan.images]
        assert len(indoor) >= 2
        assert any((1, p) in plan.images for p in plan.test)  # cam3 queries need cam1
        training = set(plan.train) | set(plan.val)
        for camera in range(1, 7):
            assert any((camera, p) in plan.images for p in training)
    with pytest.raises(ValueError, match="ids"):
        sysu_plan(3, 0)


def test_sysu_readers_accept_the_tree(sysu_root: Path) -> None:
    manifest = sysu.train_manifest(sysu_root)
    training = set(read_ids(sysu_root / "exp" / "train_id.txt")) | set(
        read_ids(sysu_root / "exp" / "val_id.txt")
    )
    assert set(manifest.pids.tolist()) == training
    assert set(manifest.modalities.tolist()) == {0, 1}
    _, query_pids, query_cams = sysu.query_set(sysu_root)
    assert set(query_cams.tolist()) <= {3, 6} and len(query_pids) > 0
    _, gallery_pids, _ = sysu.gallery_set(sysu_root, "indoor", trial=0)
    assert len(gallery_pids) >= 2


# ----------------------------------------------------------------------------- RegDB layout


def test_regdb_tree_has_the_release_layout(regdb_root: Path) -> None:
    for modality, folder in (("visible", "Visible"), ("thermal", "Thermal")):
        ids = sorted(int(p.name) for p in (regdb_root / folder).iterdir())
        assert ids == list(range(1, 13))
        for pid in ids:
            files = sorted((regdb_root / folder / str(pid)).iterdir())
            assert len(files) == 10 and all(f.suffix == ".bmp" for f in files)
        splits = []
        for trial in range(1, 11):
            train_paths, train_labels = regdb.read_index_file(
                regdb_root, regdb_root / "idx" / f"train_{modality}_{trial}.txt"
            )
            test_paths, test_labels = regdb.read_index_file(
                regdb_root, regdb_root / "idx" / f"test_{modality}_{trial}.txt"
            )
            train_ids = [int(Path(p).parts[1]) for p in train_paths]
            test_ids = [int(Path(p).parts[1]) for p in test_paths]
            assert len(set(train_ids)) == 6 and len(set(test_ids)) == 6
            assert not set(train_ids) & set(test_ids)
            assert all(Path(p).parts[0] == folder for p in train_paths + test_paths)
            assert len(train_paths) == 60 and len(test_paths) == 60
            # Train labels: ids relabelled 0..5 in sorted order; test labels: the ids.
            ranks = {pid: rank for rank, pid in enumerate(sorted(set(train_ids)))}
            assert train_labels == [ranks[pid] for pid in train_ids]
            assert test_labels == test_ids
            splits.append(tuple(sorted(set(train_ids))))
        assert len(set(splits)) > 1, "every trial has the same split"


def test_regdb_trials_pair_visible_and_thermal(regdb_root: Path) -> None:
    for trial in (1, 7):
        for split in ("train", "test"):
            visible = regdb.read_index_file(
                regdb_root, regdb_root / f"idx/{split}_visible_{trial}.txt"
            )
            thermal = regdb.read_index_file(
                regdb_root, regdb_root / f"idx/{split}_thermal_{trial}.txt"
            )
            assert visible[1] == thermal[1]
    manifest = regdb.train_manifest(regdb_root, trial=4)
    assert manifest.summary()["visible_images"] == manifest.summary()["infrared_images"] == 60


def test_thermal_is_lower_resolution_than_visible(regdb_root: Path) -> None:
    """Thermal crops are smoother (fewer high frequencies) than visible ones, on average."""

    def sharpness(folder: str) -> float:
        values = []
        for path in sorted((regdb_root / folder).rglob("*.bmp"))[:40]:
            gray = decoded(path).mean(axis=2)
            values.append(np.abs(np.diff(gray, axis=1)).mean())
        return float(np.mean(values))

    assert sharpness("Thermal") < sharpness("Visible")


# ----------------------------------------------------------------------------- pixels


def test_infrared_images_decode_with_equal_channels(sysu_root: Path, regdb_root: Path) -> None:
    infrared = [p for c in IR_CAMERAS for p in (sysu_root / c).rglob("*.jpg")]
    infrared += list((regdb_root / "Thermal").rglob("*.bmp"))
    visible = [p for c in RGB_CAMERAS for p in (sysu_root / c).rglob("*.jpg")]
    visible += list((regdb_root / "Visible").rglob("*.bmp"))
    assert len(infrared) > 100 and len(visible) > 100
    assert all(equal_channels(decoded(p)) for p in infrared)
    assert not any(equal_channels(decoded(p)) for p in visible)


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    for generate, ids in ((generate_sysu, 5), (generate_regdb, 3)):
        first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
        generate(first, ids=ids, seed=11)
        generate(second, ids=ids, seed=11)
        generate(other, ids=ids, seed=12)
        hashes = tree_hashes(first)
        assert len(hashes) > 30
        assert hashes == tree_hashes(second)
        other_hashes = tree_hashes(other)
        images = [k for k in hashes if k.endswith((".jpg", ".bmp"))]
        changed = [k for k in images if other_hashes.get(k) != hashes[k]]
        assert len(changed) == len(images)
        for path in (first, second, other):
            for child in sorted(path.rglob("*"), reverse=True):
                child.unlink() if child.is_file() else child.rmdir()


# ----------------------------------------------------------------------------- the problem is real


def test_colour_identifies_people_within_the_visible_modality(sysu_root: Path) -> None:
    """Mean colour of the body area is closer within an id (across RGB cameras) than across."""
    features, pids, cameras = [], [], []
    for camera in RGB_CAMERAS:
        for path in sorted((sysu_root / camera).rglob("*.jpg")):
            pixels = decoded(path)[16:48, 8:24].reshape(-1, 3).astype(np.float64)
            features.append(pixels.mean(axis=0) / 255)
            pids.append(int(path.parent.name))
            cameras.append(camera)
    features, pids, cameras = np.array(features), np.array(pids), np.array(cameras)
    distance = np.linalg.norm(features[:, None] - features[None], axis=2)
    cross_camera = cameras[:, None] != cameras[None]
    same_id = (pids[:, None] == pids[None]) & cross_camera
    other_id = (pids[:, None] != pids[None]) & cross_camera
    assert same_id.sum() > 50
    assert distance[same_id].mean() < 0.85 * distance[other_id].mean()
    # Nearest neighbour in another camera: well above chance, far from solved.
    nearest = np.where(cross_camera, distance, np.inf).argmin(axis=1)
    rank1 = (pids[nearest] == pids).mean()
    assert 2 / len(set(pids)) < rank1 < 0.9


def _torso_levels(preset: SynthPreset, ids: int, cameras: tuple[str, ...]) -> np.ndarray:
    """Mean brightness of the upper garment region per (id, camera): (ids, cameras)."""
    rows = []
    for identity in identity_traits(ids, seed=5, preset=preset):
        row = []
        for seed, camera in enumerate(cameras):
            crop = render_identity(identity, camera, preset, seed=seed, view="front")
            torso = crop.image[crop.regions == UPPER].astype(np.float64) / 255
            row.append(float(luma(torso.mean(axis=0))) if len(torso) > 5 else np.nan)
        rows.append(row)
    levels = np.array(rows)
    return levels[~np.isnan(levels).any(axis=1)]


def test_infrared_does_not_reveal_colour_brightness() -> None:
    """Over ids, a garment's IR level barely follows its RGB brightness, while each modality
    agrees with itself across cameras; with IR = grayscale of colour the same check fails."""
    levels = _torso_levels(PRESETS["tiny"], 50, ("cam1", "cam4", "cam3", "cam6"))
    assert len(levels) >= 40
    corr = np.corrcoef(levels.T)
    assert corr[0, 1] > 0.8  # RGB vs RGB
    assert corr[2, 3] > 0.8  # IR vs IR
    assert abs(corr[0, 2]) < 0.5 and abs(corr[1, 3]) < 0.5  # RGB vs IR
    gray_world = SynthPreset(name="gray", height=64, width=32, ir_colour_correlation=1.0)
    control = np.corrcoef(_torso_levels(gray_world, 30, ("cam1", "cam3")).T)
    assert control[0, 1] > 0.7


def test_ir_colour_correlation_changes_only_infrared_images(tmp_path: Path) -> None:
    """Visible images do not depend on the thermal signature (stand-in pretraining reads
    visible images only, so its data are the same for every value)."""
    trees = {}
    for rho in (0.3, 1.0):
        preset = dataclasses.replace(PRESETS["tiny"], ir_colour_correlation=rho)
        generate_sysu(tmp_path / str(rho), ids=6, seed=3, preset=preset)
        trees[rho] = tree_hashes(tmp_path / str(rho))
    images = [k for k in trees[0.3] if k.endswith(".jpg")]
    visible = [k for k in images if k.split("/")[0] in ("cam1", "cam2", "cam4", "cam5")]
    infrared = [k for k in images if k.split("/")[0] in ("cam3", "cam6")]
    assert visible and infrared
    assert all(trees[0.3][k] == trees[1.0][k] for k in visible)
    assert sum(trees[0.3][k] != trees[1.0][k] for k in infrared) > 0.9 * len(infrared)


def test_hidden_thermal_signature_statistics() -> None:
    identities = identity_traits(200, seed=1)
    garments = [g for i in identities for g in (i.upper, i.lower)]
    brightness = np.array([float(luma(g.colour)) for g in garments])
    signature = np.array([g.ir for g in garments])
    assert abs(np.corrcoef(brightness, signature)[0, 1]) < 0.5
    assert signature.std() > 0.1  # IR still separates garments
    printed = [g for g in garments if g.pattern != "solid"]
    vanished = np.mean([g.print_ir == g.ir for g in printed])
    assert 0.2 < vanished < 0.8
    patterns = {g.pattern for g in garments}
    assert patterns == {"solid", "stripes", "checks", "dots", "logo"}
    assert {i.bag for i in identities} == {"none", "backpack", "shoulder", "handbag"}


def test_skin_is_warm_in_infrared() -> None:
    for camera in ("cam3", "thermal"):
        warmer = []
        for identity in identity_traits(12, seed=2):
            crop = render_identity(identity, camera, seed=1, view="front")
            gray = crop.image[..., 0].astype(np.float64)
            skin, upper = gray[crop.regions == SKIN], gray[crop.regions == UPPER]
            if len(skin) > 3 and len(upper) > 3:
                warmer.append(skin.mean() > upper.mean())
        assert np.mean(warmer) > 0.75, camera


def test_backpack_shows_only_from_some_viewpoints() -> None:
    identity = next(i for i in identity_traits(60, seed=0) if i.bag == "backpack")
    from mmm_core.data.synthetic_render import BAG

    areas = {
        view: int((render_identity(identity, "cam4", seed=0, view=view).regions == BAG).sum())
        for view in ("front", "back", "side")
    }
    assert areas["back"] > 2 * max(areas["front"], 1)
    assert areas["side"] > 0


# ----------------------------------------------------------------------------- CLI


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mmm synth")
    configure_parser(parser)
    return parser.parse_args(argv)


def test_cli_refuses_a_non_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert mmm(["synth", "--format", "regdb", "--out", str(out), "--ids", "2", "--seed", "1"]) == 2
    error = capsys.readouterr().err
    assert "not empty" in error and "--overwrite" in error and str(out) in error
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    overwrite = ["synth", *map(str, ["--format", "regdb", "--out", out, "--ids", 2]), "--overwrite"]
    assert mmm(overwrite) == 2  # not a generated dataset: nothing is deleted
    assert "holds no synthetic.json" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    (out / "keep.txt").unlink()
    assert mmm(overwrite[:-1]) == 0  # generated, then regenerated over itself
    (out / "keep.txt").write_text("mine")
    capsys.readouterr()
    assert mmm(overwrite) == 0
    printed = capsys.readouterr().out
    assert "regdb" in printed and "visible 20" in printed and "train 1" in printed
    assert (out / "keep.txt").read_text() == "mine"
    assert (out / "idx" / "test_thermal_10.txt").is_file()


def test_cli_writes_sysu_and_prints_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "new" / "sysu"
    assert main(parse(["--format", "sysu", "--out", str(out), "--ids", "4", "--seed", "0"])) == 0
    printed = capsys.readouterr().out
    on_disk = {c: len(list((out / c).rglob("*.jpg"))) for c in (*RGB_CAMERAS, *IR_CAMERAS)}
    for camera, count in on_disk.items():
        assert f"{camera} {count} " in printed
    assert "train 1, val 1, test 2" in printed


def test_dataset_root_regenerates_a_stale_tree_and_leaves_others(tmp_path: Path) -> None:
    from mmm_core.config import load_config
    from mmm_core.data.synthetic import SYNTH_VERSION, stale_reason
    from mmm_core.engine.build import dataset_root

    root = tmp_path / "tiny"
    sets = [f"data.root={root}", "data.synthetic.ids=5", "data.synthetic.seed=4"]
    cfg = load_config(["configs/synthetic-tiny.yaml"], sets)
    assert dataset_root(cfg) == root
    fresh = tree_hashes(root)
    assert stale_reason(root, "sysu", 5, 4, "tiny") is None
    assert stale_reason(root, "sysu", 6, 4, PRESETS["tiny"]) == "ids 5 -> 6"
    # A tree written by an older world model is generated again, byte for byte as new.
    meta = root / "synthetic.json"
    old = meta.read_text().replace(f'"version": {SYNTH_VERSION}', f'"version": {SYNTH_VERSION - 1}')
    meta.write_text(old)
    (root / "cam3").rename(root / "cam3-old")
    assert (
        stale_reason(root, "sysu", 5, 4, "tiny")
        == f"version {SYNTH_VERSION - 1} -> {SYNTH_VERSION}"
    )
    dataset_root(cfg)
    assert {k: v for k, v in tree_hashes(root).items() if "cam3-old" not in k} == fresh
    # Asking for other ids regenerates instead of silently reusing the old tree.
    dataset_root(cfg.replace(**{"data.synthetic.ids": 6}))
    split = [(root / "exp" / f"{part}_id.txt").read_text() for part in ("train", "val", "test")]
    assert sorted(int(i) for text in split for i in text.strip().split(",")) == list(range(1, 7))
    assert stale_reason(root, "sysu", 6, 4, "tiny") is None
    # A folder that is not a generated tree is never touched.
    own = tmp_path / "own"
    (own / "cam1").mkdir(parents=True)
    assert stale_reason(own, "sysu", 5, 4, "tiny") is None
    cfg = load_config(["configs/synthetic-tiny.yaml"], [f"data.root={own}"])
    assert dataset_root(cfg) == own and [p.name for p in own.iterdir()] == ["cam1"]


def test_camera_variation_moves_cameras_to_their_modality_mean():
    from mmm_core.data.synthetic_render import SYSU_CAMERAS, _toward_mean

    cams = SYSU_CAMERAS
    assert _toward_mean(cams["cam1"], 1.0) is cams["cam1"]  # the table itself: same images
    alike = [_toward_mean(cams[name], 0.0) for name in ("cam1", "cam2", "cam4", "cam5")]
    for field in ("gains", "saturation", "brightness", "gamma", "blur", "resolution", "noise"):
        values = {getattr(c, field) for c in alike}
        assert len(values) == 1, field
    nir = [_toward_mean(cams[name], 0.0) for name in ("cam3", "cam6")]
    assert nir[0].gamma == nir[1].gamma == pytest.approx((0.9 + 1.2) / 2)
    assert nir[0].background != nir[1].background  # scenes still differ
    half = _toward_mean(cams["cam6"], 0.5)
    assert half.resolution == pytest.approx(0.6 + 0.5 * (0.675 - 0.6))
    with pytest.raises(ValueError, match="camera_variation"):
        dataclasses.replace(PRESETS["bench"], camera_variation=-0.1)


def test_ir_background_gain_lights_only_the_infrared_scenes():
    from mmm_core.data.synthetic import render_identity
    from mmm_core.data.synthetic_render import BACKGROUND, sample_identity

    base = PRESETS["tiny"]
    lit = dataclasses.replace(base, ir_background_gain=2.5)
    person = sample_identity(3, 0, base)
    for camera in ("cam1", "cam4", "visible"):  # visible crops: byte-identical
        same = render_identity(person, camera, base).image
        assert np.array_equal(same, render_identity(person, camera, lit).image)
    for camera in ("cam3", "cam6", "thermal"):
        dark, bright = render_identity(person, camera, base), render_identity(person, camera, lit)
        scene = dark.regions == BACKGROUND
        assert bright.image[scene].mean() > 1.5 * dark.image[scene].mean()
        # the person is drawn as before away from the silhouette's edge (blur mixes the edge
        # with the scene)
        body = dark.regions != BACKGROUND
        core = body.copy()
        for axis in (0, 1):
            for shift in (-2, 2):
                core &= np.roll(body, shift, axis=axis)
        assert core.sum() > 50
        assert abs(float(bright.image[core].mean()) - float(dark.image[core].mean())) < 8
    with pytest.raises(ValueError, match="ir_background_gain"):
        dataclasses.replace(base, ir_background_gain=0.0)
