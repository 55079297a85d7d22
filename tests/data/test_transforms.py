"""Transforms and image loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from mmm_core.data import DatasetError
from mmm_core.data.cache import ImageCache, decode_image
from mmm_core.data.datasets import ViewsDataset, eval_loader, train_loader
from mmm_core.data.transforms import (
    ERASING_FILL,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ChannelAdaptiveGray,
    ChannelExchange,
    ChannelRandomErasing,
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


def test_channel_adaptive_gray_changes_a_normalised_infrared_image() -> None:
    """Raw IR channels are equal; after normalisation they differ, so the gray is not a no-op
    (the released code's order: normalise, then channel-adaptive gray)."""
    raw = torch.rand(1, 6, 5).expand(3, 6, 5)
    normalised = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)(raw)
    assert not torch.equal(normalised[0], normalised[1])
    torch.manual_seed(0)
    changed = sum(
        not torch.equal(ChannelAdaptiveGray(1.0)(normalised), normalised) for _ in range(40)
    )
    # p = 1: R/G/B copies (3/4) always change it, the gray branch (1/4) half the time.
    assert 25 <= changed <= 40


def test_channel_adaptive_gray_choice_frequencies() -> None:
    """p: kept 1 - p; each of R, G, B copied p/4; gray p/8; kept inside the gray branch p/8."""
    image = torch.arange(3.0).view(3, 1, 1).expand(3, 2, 2).clone()
    torch.manual_seed(1)
    counts = {"kept": 0, "r": 0, "g": 0, "b": 0, "gray": 0}
    gray = (0.2989 * 0 + 0.5870 * 1 + 0.1140 * 2) * torch.ones(3, 2, 2)
    trials = 8000
    for _ in range(trials):
        out = ChannelAdaptiveGray(0.5)(image)
        if torch.equal(out, image):
            counts["kept"] += 1
        elif torch.allclose(out, gray):
            counts["gray"] += 1
        else:
            counts["rgb"[int(out[0, 0, 0])]] += 1
    expected = {"kept": 0.5 + 0.5 / 8, "r": 0.125, "g": 0.125, "b": 0.125, "gray": 0.5 / 8}
    for key, share in expected.items():
        assert abs(counts[key] / trials - share) < 0.02, (key, counts)


def test_channel_random_erasing_fills_one_rectangle_with_the_released_values() -> None:
    torch.manual_seed(3)
    image = torch.full((3, 40, 20), -5.0)
    erase = ChannelRandomErasing(p=1.0)
    areas = []
    for _ in range(200):
        out = erase(image)
        changed = out != image
        assert changed.any()
        for c in range(3):
            assert torch.all(out[c][changed[c]] == torch.tensor(ERASING_FILL[c]))
        rows = changed[0].any(1).nonzero().squeeze(1)
        cols = changed[0].any(0).nonzero().squeeze(1)
        # one axis-aligned rectangle, the same in every channel
        assert changed[0].sum() == len(rows) * len(cols)
        assert torch.equal(changed[0], changed[1]) and torch.equal(changed[1], changed[2])
        areas.append(len(rows) * len(cols) / 800)
    assert min(areas) > 0.01 and max(areas) < 0.5
    assert torch.equal(ChannelRandomErasing(p=0.0)(image), image)


def test_train_views_shapes_and_determinism(tmp_path: Path, image_writer) -> None:
    paths = []
    for i in range(6):
        image_writer(tmp_path / f"{i}.jpg", seed=i, size=(20, 40))
        paths.append(str(tmp_path / f"{i}.jpg"))
    views = train_transforms(32, 16, pad=2, erasing_p=0.0)
    loader = train_loader(
        paths,
        np.array([0, 0, 1, 1, 2, 2]),
        np.array([1, 2, 1, 2, 1, 2]),
        [views["visible"], views["visible_exchange"]],
        ImageCache(32, 16, 0),
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
    # The exchanged view copies one normalised channel into all three.
    exchanged = images[:, 1]
    assert torch.equal(exchanged[:, 0], exchanged[:, 1])
    assert torch.equal(exchanged[:, 1], exchanged[:, 2])
    assert not torch.allclose(images[:, 0, 0], images[:, 0, 1], atol=1e-3)
    for (x1, y1), (x2, y2) in zip(first, second, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_geometry_on_decoded_tensors_equals_the_pil_pipeline(tmp_path: Path, image_writer) -> None:
    """Decode-once keeps the augmentation distribution: with the same random state, pad +
    crop + flip on the cached uint8 tensor give exactly what torchvision gives on the PIL
    image decoded at every step (bicubic resize first in both)."""
    image_writer(tmp_path / "a.jpg", seed=4, size=(30, 50))
    height, width, pad = 32, 16, 4
    tensor_view = train_transforms(height, width, pad=pad, erasing_p=0.0)["visible"]
    pil_view = T.Compose(
        [
            T.Resize((height, width), interpolation=T.InterpolationMode.BICUBIC),
            T.Pad(pad),
            T.RandomCrop((height, width)),
            T.RandomHorizontalFlip(0.5),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    decoded = decode_image(tmp_path / "a.jpg", height, width)
    pil = Image.open(tmp_path / "a.jpg").convert("RGB")
    for seed in range(30):
        torch.manual_seed(seed)
        from_tensor = tensor_view(decoded)
        torch.manual_seed(seed)
        from_pil = pil_view(pil)
        torch.testing.assert_close(from_tensor, from_pil, atol=1e-6, rtol=0)


def test_cached_and_uncached_images_give_identical_batches(tmp_path: Path, image_writer) -> None:
    paths = []
    for i in range(6):
        image_writer(tmp_path / f"{i}.jpg", seed=i, size=(20, 40))
        paths.append(str(tmp_path / f"{i}.jpg"))
    views = train_transforms(32, 16, pad=2)
    cache = ImageCache(32, 16, budget_mb=1)
    assert cache.fill(paths) == 6 and len(cache) == 6
    batches = []
    for images in (cache, ImageCache(32, 16, 0)):
        loader = train_loader(
            paths,
            np.array([0, 0, 1, 1, 2, 2]),
            np.array([1, 2, 1, 2, 1, 2]),
            [views["visible"], views["infrared"]],
            images,
            num_ids=2,
            num_instances=2,
            num_batches=3,
            seed=5,
        )
        torch.manual_seed(0)
        batches.append([b[0].clone() for b in loader])
    for cached, uncached in zip(*batches, strict=True):
        assert torch.equal(cached, uncached)


def test_cache_respects_its_budget_and_decodes_the_rest_from_disk(
    tmp_path: Path, image_writer
) -> None:
    paths = []
    for i in range(5):
        image_writer(tmp_path / f"{i}.png", seed=i, size=(10, 20))
        paths.append(str(tmp_path / f"{i}.png"))
    per_image = 3 * 20 * 10
    cache = ImageCache(20, 10, budget_mb=2.5 * per_image / 2**20)
    assert cache.capacity == 2
    assert cache.fill(paths) == 2
    assert paths[0] in cache and paths[1] in cache and paths[2] not in cache
    assert cache.nbytes == 2 * per_image
    assert cache.fill(paths) == 0  # full: nothing more, nothing twice
    for path in paths:
        expected = torch.from_numpy(np.asarray(load_image(path).resize((10, 20), 3)).copy())
        assert torch.equal(cache.get(path), expected.permute(2, 0, 1))
    # Decoded once: a cached entry is served from RAM even after the file is gone.
    Path(paths[0]).unlink()
    assert cache.get(paths[0]).shape == (3, 20, 10)
    with pytest.raises(DatasetError, match="image file not found"):
        ImageCache(20, 10, 0).get(paths[0])


def test_eval_loader_keeps_order(tmp_path: Path, image_writer) -> None:
    paths = []
    for i in range(5):
        image_writer(tmp_path / f"{i}.png", seed=i)
        paths.append(str(tmp_path / f"{i}.png"))
    batches = list(eval_loader(paths, eval_transform(), ImageCache(16, 8, 0), batch_size=2))
    assert [b[1].tolist() for b in batches] == [[0, 1], [2, 3], [4]]
    assert batches[0][0].shape == (2, 3, 16, 8)


def test_views_dataset_length_mismatch() -> None:
    with pytest.raises(ValueError, match="3 paths but 2 labels"):
        ViewsDataset(["a", "b", "c"], np.array([0, 1]), [], ImageCache(4, 4, 0))


def test_eval_transform_equals_torchvisions() -> None:
    """`EvalView` does torchvision's ConvertImageDtype + Normalize, bit for bit."""
    reference = T.Compose(
        [T.ConvertImageDtype(torch.float32), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 24, 12), dtype=torch.uint8, generator=generator)
    ours = eval_transform()(image)
    assert ours.dtype == torch.float32 and ours.shape == (3, 24, 12)
    assert torch.equal(ours, reference(image))
    assert image.dtype == torch.uint8  # the input is left alone
    scaled = image.float() / 255
    assert torch.equal(eval_transform()(scaled), reference(scaled))
    assert torch.equal(scaled, image.float() / 255)  # a float input is not changed in place
