"""RegDB reader: idx files, trials, and bad input named by file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmm_core.data import DatasetError, regdb


def test_train_manifest(tiny_regdb: Path) -> None:
    manifest = regdb.train_manifest(tiny_regdb, trial=3)
    assert len(manifest) == 2 * 2 * 3  # 2 modalities x 2 train ids x 3 images
    assert manifest.modalities.tolist() == [0] * 6 + [1] * 6
    assert set(manifest.camids[manifest.modalities == 0].tolist()) == {1}
    assert set(manifest.camids[manifest.modalities == 1].tolist()) == {2}
    assert sorted(set(manifest.pids.tolist())) == [0, 1]
    assert all((tiny_regdb / p).is_file() for p in manifest.paths)


@pytest.mark.parametrize("modality", ["visible", "thermal"])
def test_test_set_in_index_order(tiny_regdb: Path, modality: str) -> None:
    paths, pids = regdb.test_set(tiny_regdb, 1, modality)
    lines = (tiny_regdb / "idx" / f"test_{modality}_1.txt").read_text().split("\n")
    expected = [line.split() for line in lines if line]
    assert [str(Path(p).relative_to(tiny_regdb)) for p in paths] == [e[0] for e in expected]
    assert pids.tolist() == [int(e[1]) for e in expected]


def test_bad_label_line(tiny_regdb: Path) -> None:
    index = tiny_regdb / "idx" / "train_thermal_2.txt"
    lines = index.read_text().splitlines()
    lines[2] = lines[2].split()[0] + " three"
    index.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"train_thermal_2.txt:3: label is not an integer"):
        regdb.train_manifest(tiny_regdb, trial=2)


def test_line_with_wrong_field_count(tiny_regdb: Path) -> None:
    index = tiny_regdb / "idx" / "test_visible_1.txt"
    index.write_text(index.read_text() + "just-a-path\n")
    with pytest.raises(DatasetError, match=r"test_visible_1.txt:7: expected '<path> <label>'"):
        regdb.test_set(tiny_regdb, 1, "visible")


def test_duplicate_path(tiny_regdb: Path) -> None:
    index = tiny_regdb / "idx" / "train_visible_1.txt"
    first = index.read_text().splitlines()[0]
    index.write_text(index.read_text() + first + "\n")
    with pytest.raises(DatasetError, match=r"train_visible_1.txt:7: .* already listed on line 1"):
        regdb.train_manifest(tiny_regdb, trial=1)


def test_missing_image(tiny_regdb: Path) -> None:
    index = tiny_regdb / "idx" / "test_thermal_4.txt"
    index.write_text(index.read_text() + "Thermal/9/missing.bmp 9\n")
    with pytest.raises(DatasetError, match=r"test_thermal_4.txt:7: image .* does not exist"):
        regdb.test_set(tiny_regdb, 4, "thermal")


def test_missing_index_file(tiny_regdb: Path) -> None:
    (tiny_regdb / "idx" / "train_visible_5.txt").unlink()
    with pytest.raises(DatasetError, match=r"train_visible_5\.txt: RegDB index file not found"):
        regdb.train_manifest(tiny_regdb, trial=5)


def test_not_a_regdb_root(tmp_path: Path) -> None:
    (tmp_path / "Visible").mkdir()
    with pytest.raises(DatasetError, match="missing folder Thermal/"):
        regdb.train_manifest(tmp_path)


def test_trial_and_modality_checked(tiny_regdb: Path) -> None:
    with pytest.raises(ValueError, match=r"1\.\.10"):
        regdb.test_set(tiny_regdb, 0, "visible")
    with pytest.raises(ValueError, match="unknown RegDB modality"):
        regdb.test_set(tiny_regdb, 1, "infrared")


def test_a_test_id_with_training_images_is_an_error(tiny_regdb: Path) -> None:
    index = tiny_regdb / "idx" / "test_visible_2.txt"
    train_line = (tiny_regdb / "idx" / "train_visible_2.txt").read_text().splitlines()[0]
    index.write_text(index.read_text() + train_line + "\n")
    with pytest.raises(DatasetError, match=r"test_visible_2.txt: 1 test id folder\(s\) also hold"):
        regdb.test_set(tiny_regdb, 2, "visible")
    regdb.test_set(tiny_regdb, 1, "visible")  # the other trials are untouched
