"""Transforms and image loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmm_core.data import DatasetError
from mmm_core.data.datasets import ViewsDataset, eval_loader, train_loader
from mmm_core.data.transforms import (
    ChannelAdaptiveGray,
    ChannelExchange,
    eval_transform,
    load_image,
    train_transforms,
)


def test_one_channel_image_is_converted_to_rgb(tmp_path: Path, image_writer) -> None:
    image_writer(tmp_path / "gray.png", seed=0, mode="L")
    image = load_image(tmp_path / "gray.png")
    assert image.mode == "RGB"
    array = np.asarray(image)
    assert (array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all()


def test_unreadable_image_names_file(tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=r"broken.jpg: cannot read image"):
        load_image(tmp_path / "broken.jpg")
    with pytest.raises(DatasetError, match=r"gone.jpg: image file not found"):
        load_image(tmp_path / "gone.jpg")


def test_channel_exchange_copies_one_channel() -> None:
    torch.manual_seed(0)
    image = torch.rand(3, 4, 5)
    out = ChannelExchange()(image)
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    assert any(torch.equal(out[0], image[c]) for c in range(3))


def test_channel_adaptive_gray_probability_zero_is_identity() -> None:
    image = torch.rand(3, 4, 5)
    assert torch.equal(ChannelAdaptiveGray(0.0)(image), image)
    out = ChannelAdaptiveGray(1.0)(image)
    assert torch.equal(out[0], out[2])


def test_train_views_shapes_and_determinism(tmp_path: Path, image_writer) -> None:
    paths = []
    for i in range(6):
        image_writer(tmp_path / f"{i}.jpg", seed=i, size=(20, 40))
        paths.append(str(tmp_path / f"{i}.jpg"))
    views = train_transforms(32, 16, pad=2)
    loader = train_loader(
        paths,
        np.array([0, 0, 1, 1, 2, 2]),
        np.array([1, 2, 1, 2, 1, 2]),
        [views["visible"], views["visible_exchange"]],
        num_ids=2,
        num_instances=2,
        num_batches=3,
        seed=11,
    )
    torch.manual_seed(0)
    first = [(b[0].clone(), b[1].clone()) for b in loader]
    torch.manual_seed(0)
    second = [(b[0].clone(), b[1].clone()) for b in loader]
    assert len(first) == 3
    images, labels = first[0]
    assert images.shape == (4, 2, 3, 32, 16) and labels.shape == (4,)
    exchanged = images[:, 1].clone()
    # The exchanged view has one channel's intensities in all channels (before normalising).
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    raw = exchanged * std + mean
    erased = (exchanged == 0).all(1, keepdim=True)  # random erasing zeroes all channels
    raw = torch.where(erased, torch.zeros_like(raw), raw)
    assert torch.allclose(raw[:, 0], raw[:, 1], atol=1e-6)
    assert torch.allclose(raw[:, 1], raw[:, 2], atol=1e-6)
    plain = images[:, 0] * std + mean
    assert not torch.allclose(plain[:, 0], plain[:, 1], atol=1e-3)
    for (x1, y1), (x2, y2) in zip(first, second, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_eval_loader_keeps_order(tmp_path: Path, image_writer) -> None:
    paths = []
    for i in range(5):
        image_writer(tmp_path / f"{i}.png", seed=i)
        paths.append(str(tmp_path / f"{i}.png"))
    batches = list(eval_loader(paths, eval_transform(16, 8), batch_size=2))
    assert [b[1].tolist() for b in batches] == [[0, 1], [2, 3], [4]]
    assert batches[0][0].shape == (2, 3, 16, 8)


def test_views_dataset_length_mismatch() -> None:
    with pytest.raises(ValueError, match="3 paths but 2 labels"):
        ViewsDataset(["a", "b", "c"], np.array([0, 1]), [])
