"""Bad images are found before training: `mmm data` decodes every image and lists every
unreadable one; `mmm train` decodes every image of the run before round 1 and writes
nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mmm_cli.main import main
from mmm_core.data import check
from mmm_core.data.manifest import DatasetError
from tests.reliability.test_error_boundary import one_error_line, run, train_argv


def corrupt(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 3])
    elif how == "empty":
        path.write_bytes(b"")
    else:  # a text file named .jpg
        path.write_text("<html>not an image</html>")


@pytest.fixture
def dataset(micro_dataset: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(micro_dataset, copy)
    return copy


def test_each_kind_of_bad_file_is_named(dataset):
    paths = check.test_images("sysu", dataset)
    picked = {paths[0]: "truncated", paths[3]: "empty", paths[-1]: "fake"}
    for path, how in picked.items():
        corrupt(Path(path), how)
    bad = dict(check.unreadable_images(paths, workers=2))
    assert set(bad) == set(picked)
    assert all(reason for reason in bad.values())
    assert check.unreadable_images(check.test_images("sysu", dataset)[4:-1]) == []


def test_mmm_data_lists_every_unreadable_image(capsys, dataset):
    images = sorted((dataset / "cam1").rglob("*.jpg"))[:3] + sorted(dataset.rglob("*.jpg"))[-2:]
    for path in images:
        corrupt(path, "truncated")
    code = main(["data", "--format", "sysu", "--root", str(dataset)])
    out, err = capsys.readouterr()
    assert code == 2
    listed = [line for line in out.splitlines() if line.startswith("unreadable: ")]
    assert sorted(line.split(": ")[1] for line in listed) == sorted(map(str, images))
    assert "5 of " in one_error_line(err) and "cannot be read" in err


def test_mmm_data_on_good_data_decodes_everything(capsys, micro_dataset):
    assert main(["data", "--format", "sysu", "--root", str(micro_dataset)]) == 0
    assert "(all readable)" in capsys.readouterr().out


@pytest.mark.parametrize("split", ["test", "train"])
def test_a_bad_image_stops_train_before_anything_is_written(capsys, dataset, tmp_path, split):
    images = check.test_images("sysu", dataset)
    if split == "train":
        images = [p for p in check.run_images("sysu", dataset) if p not in set(images)]
    victim = Path(images[5])
    corrupt(victim, "truncated")
    out = tmp_path / "run"
    code, err = run(capsys, train_argv(dataset, out))
    assert code == 2
    line = one_error_line(err)
    assert "1 of" in line and "images (training and test) cannot be read" in line
    assert str(victim) in line
    assert not out.exists()  # nothing of the run was written


def test_check_run_images_counts_and_caps_the_list(dataset):
    paths = check.run_images("sysu", dataset)
    assert len(set(paths)) == len(paths) and set(check.test_images("sysu", dataset)) < set(paths)
    assert check.check_run_images("sysu", dataset) == len(paths)
    for path in paths[:7]:
        corrupt(Path(path), "empty")
    with pytest.raises(DatasetError, match=r"7 of \d+ images .*and 2 more: `mmm data`"):
        check.check_run_images("sysu", dataset)


def test_regdb_test_images_are_both_modalities_of_the_trial(tiny_regdb):
    paths = check.test_images("regdb", tiny_regdb, trial=2)
    assert {Path(p).parts[-3] for p in paths} == {"Visible", "Thermal"}
    assert len(paths) == 2 * 2 * 3
