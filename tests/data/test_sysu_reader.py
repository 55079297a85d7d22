"""SYSU-MM01 reader: layout, relabelling, the reference test sets, and bad input."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

from mmm_core.data import DatasetError, sysu


def reference_query(root: Path) -> tuple[list[str], list[int], list[int]]:
    """The community reference rule for the IR query, written as a plain loop."""
    ids = [int(x) for x in (root / "exp" / "test_id.txt").read_text().splitlines()[0].split(",")]
    files = []
    for pid in sorted(f"{x:04d}" for x in ids):
        for cam in ["cam3", "cam6"]:
            img_dir = os.path.join(root, cam, pid)
            if os.path.isdir(img_dir):
                files.extend(sorted([img_dir + "/" + i for i in os.listdir(img_dir)]))
    pids = [int(Path(f).parent.name) for f in files]
    cams = [int(Path(f).parent.parent.name[3:]) for f in files]
    return files, pids, cams


def reference_gallery(root: Path, mode: str, trial: int, shots: int):
    """The reference gallery draw: random.seed(trial), ids outer, cameras inner."""
    random.seed(trial)
    cameras = ["cam1", "cam2", "cam4", "cam5"] if mode == "all" else ["cam1", "cam2"]
    ids = [int(x) for x in (root / "exp" / "test_id.txt").read_text().splitlines()[0].split(",")]
    files = []
    for pid in sorted(f"{x:04d}" for x in ids):
        for cam in cameras:
            img_dir = os.path.join(root, cam, pid)
            if os.path.isdir(img_dir):
                new_files = sorted([img_dir + "/" + i for i in os.listdir(img_dir)])
                if not new_files:
                    continue
                if shots == 1:
                    files.append(random.choice(new_files))
                else:
                    files.extend(random.sample(new_files, min(shots, len(new_files))))
    pids = [int(Path(f).parent.name) for f in files]
    cams = [int(Path(f).parent.parent.name[3:]) for f in files]
    return files, pids, cams


def test_train_manifest_reads_train_and_val_ids(tiny_sysu: Path) -> None:
    manifest = sysu.train_manifest(tiny_sysu)
    assert sorted(set(manifest.pids.tolist())) == [1, 2, 3, 4]
    assert manifest.labels.max() == 3 and manifest.labels.min() == 0
    # Relabelling by the sorted union of ids.
    for pid, label in zip(manifest.pids, manifest.labels, strict=True):
        assert label == [1, 2, 3, 4].index(pid)
    infrared = manifest.modalities == 1
    assert set(manifest.camids[infrared].tolist()) == {3, 6}
    assert set(manifest.camids[~infrared].tolist()) == {1, 2, 4, 5}
    # Camera and id parsed from path components.
    for rel, pid, cam in zip(manifest.paths, manifest.pids, manifest.camids, strict=True):
        parts = Path(rel).parts
        assert parts[0] == f"cam{cam}" and int(parts[1]) == pid
        assert (tiny_sysu / rel).is_file()


@pytest.mark.parametrize("mode", ["all", "indoor"])
def test_query_set_matches_reference(tiny_sysu: Path, mode: str) -> None:
    paths, pids, camids = sysu.query_set(tiny_sysu, mode)
    ref_paths, ref_pids, ref_cams = reference_query(tiny_sysu)
    assert [os.path.normpath(p) for p in paths] == [os.path.normpath(p) for p in ref_paths]
    assert pids.tolist() == ref_pids and camids.tolist() == ref_cams
    assert pids.dtype == np.int64


@pytest.mark.parametrize("mode", ["all", "indoor"])
@pytest.mark.parametrize("trial", [0, 1, 5, 9])
@pytest.mark.parametrize("shots", [1, 10])
def test_gallery_set_matches_reference(tiny_sysu: Path, mode: str, trial: int, shots: int) -> None:
    paths, pids, camids = sysu.gallery_set(tiny_sysu, mode, trial, shots=shots)
    ref_paths, ref_pids, ref_cams = reference_gallery(tiny_sysu, mode, trial, shots)
    assert [os.path.normpath(p) for p in paths] == [os.path.normpath(p) for p in ref_paths]
    assert pids.tolist() == ref_pids and camids.tolist() == ref_cams
    if mode == "indoor":
        assert set(camids.tolist()) <= {1, 2}


def test_gallery_trials_differ_and_restore_random_state(sysu_factory, tmp_path: Path) -> None:
    images = {(cam, pid): 8 for cam in range(1, 7) for pid in range(1, 5)}
    root = sysu_factory(tmp_path / "s", images, train=[1], val=[2], test=[3, 4])
    random.seed(1234)
    expected_next = random.random()
    random.seed(1234)
    draws = {tuple(sysu.gallery_set(root, "all", t)[0]) for t in range(10)}
    assert random.random() == expected_next  # callers' random stream is untouched
    assert len(draws) > 1


def test_empty_id_folder_is_skipped_in_gallery(sysu_factory, tmp_path: Path) -> None:
    images = {(cam, pid): 2 for cam in range(1, 7) for pid in (1, 2, 3)}
    root = sysu_factory(tmp_path / "s", images, train=[1], val=[2], test=[3])
    for name in os.listdir(root / "cam4" / "0003"):
        os.remove(root / "cam4" / "0003" / name)
    paths, _, camids = sysu.gallery_set(root, "all", 0)
    assert 4 not in camids.tolist() and len(paths) == 3


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        sysu.train_manifest(tmp_path / "nowhere")


def test_missing_camera_folder(tiny_sysu: Path) -> None:
    for sub in (tiny_sysu / "cam5").iterdir():
        for f in sub.iterdir():
            f.unlink()
        sub.rmdir()
    (tiny_sysu / "cam5").rmdir()
    with pytest.raises(DatasetError, match=r"missing camera folders \['cam5'\]"):
        sysu.train_manifest(tiny_sysu)


def test_empty_camera_folder(sysu_factory, tmp_path: Path) -> None:
    images = {(cam, pid): 2 for cam in (1, 2, 3, 4, 5) for pid in (1, 2, 3)}
    root = sysu_factory(tmp_path / "s", images, train=[1], val=[2], test=[3])
    with pytest.raises(DatasetError, match="cam6: camera folder holds no image"):
        sysu.train_manifest(root)
    # Hidden files and empty id folders do not make a camera folder hold images.
    (root / "cam6" / ".DS_Store").write_bytes(b"finder")
    (root / "cam6" / "0001").mkdir(parents=True)
    (root / "cam6" / "0001" / ".thumbs").write_bytes(b"")
    with pytest.raises(DatasetError, match="cam6: camera folder holds no image"):
        sysu.train_manifest(root)


def test_a_test_id_among_the_training_ids_is_an_error(sysu_factory, tmp_path: Path) -> None:
    images = {(cam, pid): 2 for cam in range(1, 7) for pid in (1, 2, 3)}
    root = sysu_factory(tmp_path / "s", images, train=[1, 3], val=[2], test=[3])
    with pytest.raises(DatasetError, match=r"test_id.txt: 1 test id\(s\) are also training ids"):
        sysu.query_set(root)


def test_bad_id_file_names_file_and_line(tiny_sysu: Path) -> None:
    (tiny_sysu / "exp" / "train_id.txt").write_text("1,2,x3\n")
    with pytest.raises(DatasetError, match=r"train_id.txt:1: not an integer id: 'x3'"):
        sysu.train_manifest(tiny_sysu)


def test_empty_id_file(tiny_sysu: Path) -> None:
    (tiny_sysu / "exp" / "val_id.txt").write_text("\n")
    with pytest.raises(DatasetError, match=r"val_id\.txt: id file is empty"):
        sysu.train_manifest(tiny_sysu)


def test_missing_id_file(tiny_sysu: Path) -> None:
    (tiny_sysu / "exp" / "test_id.txt").unlink()
    with pytest.raises(DatasetError, match=r"test_id\.txt: id file not found"):
        sysu.query_set(tiny_sysu)


def test_id_file_naming_missing_ids(tiny_sysu: Path) -> None:
    (tiny_sysu / "exp" / "test_id.txt").write_text("5,6,77\n")
    with pytest.raises(DatasetError, match=r"test_id.txt: names 1 id\(s\) with no images.*77"):
        sysu.gallery_set(tiny_sysu, "all", 0)


def test_duplicate_ids_in_file(tiny_sysu: Path) -> None:
    (tiny_sysu / "exp" / "train_id.txt").write_text("1,2,2,3\n")
    with pytest.raises(DatasetError, match=r"ids listed twice: \[2\]"):
        sysu.train_manifest(tiny_sysu)


def test_bad_mode(tiny_sysu: Path) -> None:
    with pytest.raises(ValueError, match="unknown SYSU-MM01 mode"):
        sysu.gallery_set(tiny_sysu, "outdoor", 0)


@pytest.fixture(scope="module")
def generated_sysu(tmp_path_factory) -> Path:
    from mmm_core.data.synthetic import generate_sysu

    root = tmp_path_factory.mktemp("generated") / "sysu"
    generate_sysu(root, ids=24, seed=5, preset="tiny")
    return root


@pytest.mark.parametrize("mode", ["all", "indoor"])
@pytest.mark.parametrize("trial", [0, 3, 9])
def test_reference_rule_on_generated_dataset(generated_sysu: Path, mode: str, trial: int) -> None:
    paths, pids, camids = sysu.query_set(generated_sysu, mode)
    ref_paths, ref_pids, ref_cams = reference_query(generated_sysu)
    assert [os.path.normpath(p) for p in paths] == [os.path.normpath(p) for p in ref_paths]
    assert pids.tolist() == ref_pids and camids.tolist() == ref_cams
    for shots in (1, 10):
        paths, pids, camids = sysu.gallery_set(generated_sysu, mode, trial, shots=shots)
        ref_paths, ref_pids, ref_cams = reference_gallery(generated_sysu, mode, trial, shots)
        assert [os.path.normpath(p) for p in paths] == [os.path.normpath(p) for p in ref_paths]
        assert pids.tolist() == ref_pids and camids.tolist() == ref_cams
        assert len(paths) > 0


def test_generated_dataset_train_manifest(generated_sysu: Path) -> None:
    manifest = sysu.train_manifest(generated_sysu)
    summary = manifest.summary()
    assert summary["visible_images"] > 0 and summary["infrared_images"] > 0
    assert set(manifest.camids[manifest.modalities == 1].tolist()) <= {3, 6}
