"""mmm_core.serving's input decoding (the served model's predict is tested against a real
MLflow server in tests/integration/test_pipeline_servers.py)."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from mmm_core.serving import FeatureModel


def decoder(height: int = 16, width: int = 8) -> FeatureModel:
    model = FeatureModel.__new__(FeatureModel)  # only the config is needed to decode
    model.cfg = SimpleNamespace(data=SimpleNamespace(height=height, width=width))
    return model


def test_an_array_decodes_as_the_same_pixels_in_a_file() -> None:
    pixels = (np.random.default_rng(0).random((40, 20, 3)) * 255).astype(np.uint8)
    encoded = io.BytesIO()
    Image.fromarray(pixels).save(encoded, format="PNG")
    model = decoder()
    from_array, from_file = model._decode(pixels, 0), model._decode(encoded.getvalue(), 1)
    assert tuple(from_array.shape) == (3, 16, 8) and bool((from_array == from_file).all())


@pytest.mark.parametrize(
    "bad,message",
    [
        (np.zeros((4, 4), dtype=np.uint8), "row 3: expected an \\(H, W, 3\\) uint8 array"),
        (np.zeros((4, 4, 3), dtype=np.float32), "row 3: expected an \\(H, W, 3\\) uint8 array"),
        ("a.jpg", "row 3: expected image file bytes, got str"),
        (b"not an image", "row 3: not a readable image"),
    ],
)
def test_bad_input_names_its_row(bad, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decoder()._decode(bad, 3)
