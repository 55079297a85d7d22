"""A bad image met in a DataLoader worker reaches the user as the one line a worker-less run
prints, not as a RuntimeError wrapping the worker's traceback."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from mmm_core.data.cache import ImageCache
from mmm_core.data.datasets import ImageDataset
from mmm_core.data.manifest import DatasetError


@pytest.mark.parametrize("workers", [0, 1])
def test_a_truncated_image_is_named_from_a_worker(tmp_path, workers):
    good, bad = tmp_path / "good.jpg", tmp_path / "bad.jpg"
    Image.new("RGB", (32, 64), (120, 30, 200)).save(good)
    bad.write_bytes(good.read_bytes()[:40])
    dataset = ImageDataset([str(good), str(bad)], lambda image: image, ImageCache(64, 32, 0))
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=workers)
    with pytest.raises(DatasetError) as caught:
        next(iter(loader))
    message = str(caught.value)
    assert message.startswith(f"{bad}: cannot read image")
    assert "\n" not in message and "Traceback" not in message
    assert caught.value.path == str(bad)


def test_a_batch_larger_than_the_labels_warns_once(caplog, monkeypatch):
    import numpy as np

    from mmm_core.data import samplers

    monkeypatch.setattr(samplers, "_WARNED", set())
    labels = np.array([0, 0, 1, 1, 1, 1, 2])
    cams = np.zeros_like(labels)
    for _ in range(3):  # every round builds a sampler: one warning of each kind in all
        sampler = samplers.IdentitySampler(labels, cams, num_ids=5, num_instances=4, num_batches=2)
        batches = list(sampler)
    assert all(len(batch) == 20 for batch in batches)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2
    assert "asks for 5 identities but the labels hold 3" in warnings[0]
    assert "2 of 3 identities have fewer than 4 samples" in warnings[1]
