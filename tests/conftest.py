"""Shared fixtures: tiny hand-made dataset trees in the raw release layouts.

`make test` runs the suite in parallel (pytest-xdist, one worker per core). Each worker, and
every process it starts, then uses one thread, so the workers do not fight over the cores,
and the tests of the session's shared servers run in one worker, so the servers start once.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmm_core.models.onednn import cap_onednn_below_amx

if os.environ.get("PYTEST_XDIST_WORKER"):  # set before any test imports torch
    for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_variable, "1")
    # Measured: a worker's torch ran with 2 threads despite the variable, while the step
    # subprocesses it starts get 1. With oneDNN's AVX-512 bf16 kernels the thread count
    # changes the bits of a training step, so the in-process loop and the pipeline's steps
    # must run with the same count to write identical rows.
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
# What every network the product builds does first; here before any test's first convolution
# (some tests run bare layers before they build a network). tests/models/test_onednn.py
# checks the guard in fresh processes.
cap_onednn_below_amx()


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests that use the session's servers go to one xdist worker (``--dist loadgroup``).

    The long tests are handed out first (the servers' tests, the longest chain, then the other
    `slow` ones, each group in collection order), so that the short ones fill the gaps at the
    end instead of one worker finishing a long test alone.
    """
    for item in items:
        if "_servers" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("servers"))

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("xdist_group"):
            return 0
        return 1 if item.get_closest_marker("slow") else 2

    items.sort(key=rank)  # stable


def write_image(path: Path, seed: int, size: tuple[int, int] = (16, 8), mode: str = "RGB") -> None:
    """A small random image (width, height = size) at `path`, parents created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    channels = 3 if mode == "RGB" else 1
    pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode=mode).save(path)


def make_sysu(
    root: Path,
    images: dict[tuple[int, int], int],
    train: list[int],
    val: list[int],
    test: list[int],
) -> Path:
    """A SYSU-MM01 tree: ``images[(camera, pid)] = count`` files named 0001.jpg ...."""
    for cam in range(1, 7):
        (root / f"cam{cam}").mkdir(parents=True, exist_ok=True)
    for (cam, pid), count in sorted(images.items()):
        folder = root / f"cam{cam}" / f"{pid:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        for idx in range(1, count + 1):
            write_image(folder / f"{idx:04d}.jpg", seed=cam * 100_000 + pid * 100 + idx)
    exp = root / "exp"
    exp.mkdir(exist_ok=True)
    for name, ids in (("train", train), ("val", val), ("test", test)):
        (exp / f"{name}_id.txt").write_text(",".join(str(i) for i in ids) + "\n")
    return root


@pytest.fixture
def tiny_sysu(tmp_path: Path) -> Path:
    """6 ids: 1-3 train, 4 val, 5-6 test; uneven camera coverage on purpose."""
    images: dict[tuple[int, int], int] = {}
    for pid in range(1, 7):
        for cam in (1, 2, 3, 4, 5, 6):
            if pid % 2 == 0 and cam in (4, 6):  # even ids never seen outdoors
                continue
            images[(cam, pid)] = 2 + (pid + cam) % 3
    return make_sysu(tmp_path / "sysu", images, train=[1, 2, 3], val=[4], test=[5, 6])


def make_regdb(root: Path, ids: int = 4, per_id: int = 3) -> Path:
    """A RegDB tree with trials 1..10 (first half of ids train, second half test)."""
    for folder in ("Visible", "Thermal", "idx"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[str]] = {"visible": [], "thermal": []}
    for modality, folder in (("visible", "Visible"), ("thermal", "Thermal")):
        for pid in range(ids):
            for idx in range(per_id):
                rel = f"{folder}/{pid}/{modality}_{pid}_{idx}.bmp"
                write_image(root / rel, seed=pid * 10 + idx + (0 if modality == "visible" else 7))
                rows[modality].append(f"{rel} {pid}")
    half = ids // 2 * per_id
    for trial in range(1, 11):
        for modality in ("visible", "thermal"):
            (root / "idx" / f"train_{modality}_{trial}.txt").write_text(
                "\n".join(rows[modality][:half]) + "\n"
            )
            (root / "idx" / f"test_{modality}_{trial}.txt").write_text(
                "\n".join(rows[modality][half:]) + "\n"
            )
    return root


@pytest.fixture
def tiny_regdb(tmp_path: Path) -> Path:
    return make_regdb(tmp_path / "regdb")


@pytest.fixture
def sysu_factory():
    """`make_sysu` for tests that need their own layout."""
    return make_sysu


@pytest.fixture
def regdb_factory():
    """`make_regdb` for tests that need their own layout."""
    return make_regdb


@pytest.fixture
def image_writer():
    """`write_image` for tests that plant their own files."""
    return write_image


# A few seconds per round on CPU: the synthetic tiny preset with a very short schedule.
MICRO_OVERRIDES = [
    # a width-16 ResNet-18: every layer, stride and name of width 64, 1/13 of the compute
    # and 1/16 of the checkpoint (the demo and the ladder test the full width elsewhere)
    "model.width=16",
    "train.stage1_rounds=1",
    "train.stage2_rounds=1",
    "train.iters_per_round=2",
    "sampler.visible_ids=2",
    "sampler.visible_instances=4",
    "sampler.infrared_ids=2",
    "sampler.infrared_instances=4",
    "eval.trials=2",
    "eval.sysu_modes=[all]",
    "train.batch_size_eval=256",
]


@pytest.fixture(scope="session")
def micro_overrides() -> list[str]:
    return list(MICRO_OVERRIDES)


@pytest.fixture(scope="session")
def micro_dataset(tmp_path_factory) -> Path:
    """One generated SYSU-layout dataset (24 ids, tiny preset) shared by the whole session."""
    from mmm_core.data.synthetic import generate_sysu

    root = tmp_path_factory.mktemp("micro") / "sysu"
    generate_sysu(root, ids=24, seed=0, preset="tiny")
    return root


@pytest.fixture
def micro_config(micro_dataset: Path):
    """The synthetic-tiny config on the shared dataset, shortened to 1 + 1 rounds."""
    from mmm_core.config import load_config

    configs = Path(__file__).resolve().parents[1] / "configs"
    return load_config(
        configs / "synthetic-tiny.yaml", [f"data.root={micro_dataset}", *MICRO_OVERRIDES]
    )


@pytest.fixture
def row_keys() -> set[str]:
    """Keys every metrics.jsonl row must hold (mmm train and mmm run alike)."""
    return {
        "round",
        "stage",
        "n_clusters_visible",
        "n_clusters_infrared",
        "noise_visible",
        "noise_infrared",
        "ari_visible",
        "ari_infrared",
        "correspondence_accuracy",
        "oracle_match_accuracy",
        "cross_nn_accuracy",
        "rank1",
        "mAP",
        "mINP",
        "loss",
        "loss_visible",
        "loss_infrared",
        "time_train",
    }
