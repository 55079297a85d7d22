"""Features from a trained model outside training, and the registered model's MLflow flavour.

The model a run registers is an MLflow Model (pyfunc, written by
`mmm_core.tracking.MlflowTracker.log_model`) whose ``loader_module`` is this module: its
``data/`` folder holds the weights (``checkpoint.pt``) and the run's resolved config
(``config.yaml``), and MLflow calls `_load_pyfunc` on it. So, with this package installed::

    import mlflow, pandas as pd
    model = mlflow.pyfunc.load_model("models:/mmm-vi-reid@champion")
    frame = pd.DataFrame({"image": [jpeg_bytes, ...], "modality": ["visible", ...]})
    features = model.predict(frame)          # (N, D) float32, rows L2-normalised

Each row is an encoded image file (JPEG, PNG, BMP: what PIL reads) and the camera modality
that took it, ``visible`` or ``infrared``. Preprocessing is the evaluation's: RGB, bicubic
resize to the config's ``data.height x data.width``, ImageNet mean and std; the feature is the
eval-mode BN-neck feature of the modality's stream, averaged with the horizontal mirror's when
``eval.flip`` (as the evaluation does), L2-normalised. Cosine similarity is a dot product.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MODALITIES", "FeatureModel", "model_metadata"]

MODALITIES = ("visible", "infrared")
PREPROCESSING = (
    "RGB; bicubic resize to data.height x data.width; scale to [0, 1]; normalise with the "
    "ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225)"
)


def model_metadata(cfg: Any, feature_dim: int) -> dict[str, Any]:
    """What a registered model says about itself (the MLmodel file's ``metadata``)."""
    from mmm_core.config import fingerprint

    return {
        "arch": cfg.model.arch,
        "width": cfg.model.width,
        "feature_dim": feature_dim,
        "input_size": [cfg.data.height, cfg.data.width],
        "preprocessing": PREPROCESSING,
        "flip_average": cfg.eval.flip,
        "modalities": list(MODALITIES),
        "dataset_format": cfg.data.format,
        "config_fingerprint": fingerprint(cfg),
    }


class FeatureModel:
    """A trained two-stream network and its config: images in, features out.

    Args:
        config_path: the run's resolved config (``config.yaml``).
        checkpoint_path: its weights (a training checkpoint, `mmm_core.engine.checkpoint`).
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ...
    """

    def __init__(
        self, config_path: str | Path, checkpoint_path: str | Path, device: str = "auto"
    ) -> None:
        from mmm_core.config import load_config
        from mmm_core.engine.build import build_network
        from mmm_core.engine.checkpoint import load_checkpoint
        from mmm_core.engine.features import resolve_device

        self.cfg = load_config(config_path)
        self.device = resolve_device(device)
        state = load_checkpoint(checkpoint_path, map_location=self.device)
        self.model = build_network(self.cfg.replace(**{"model.pretrained": "none"}), self.device)
        self.model.load_state_dict(state.model)
        self.model.eval()

    @property
    def feature_dim(self) -> int:
        return int(self.model.feature_dim)

    def features(
        self, images: Sequence[bytes | np.ndarray], modalities: Sequence[str]
    ) -> np.ndarray:
        """``(N, D)`` float32, L2-normalised, one row per image in the order given.

        `images`: encoded image files (bytes) or ``(H, W, 3)`` uint8 RGB arrays; `modalities`:
        ``visible`` or ``infrared`` for each.
        """
        import torch

        from mmm_core.data.transforms import eval_transform
        from mmm_core.models import extract_features

        if len(images) != len(modalities):
            raise ValueError(f"{len(images)} images but {len(modalities)} modalities")
        for row, modality in enumerate(modalities):
            if modality not in MODALITIES:
                raise ValueError(
                    f"row {row}: modality {modality!r}, expected one of {', '.join(MODALITIES)}"
                )
        out = np.empty((len(images), self.feature_dim), dtype=np.float32)
        transform = eval_transform()
        batch = self.cfg.train.batch_size_eval
        for modality in MODALITIES:
            rows = [i for i, m in enumerate(modalities) if m == modality]
            for start in range(0, len(rows), batch):
                chunk = rows[start : start + batch]
                tensors = [transform(self._decode(images[i], i)) for i in chunk]
                inputs = torch.stack(tensors).to(self.device)
                with torch.no_grad():
                    features = extract_features(self.model, inputs, modality, self.cfg.eval.flip)
                out[chunk] = torch.nn.functional.normalize(features.float(), dim=1).cpu().numpy()
        return out

    def _decode(self, image: bytes | np.ndarray, row: int) -> Any:
        from PIL import Image

        from mmm_core.data.cache import decode_image, image_tensor

        height, width = self.cfg.data.height, self.cfg.data.width
        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"row {row}: expected an (H, W, 3) uint8 array, got "
                                 f"{image.dtype} {image.shape}")  # fmt: skip
            return image_tensor(Image.fromarray(image), height, width)
        if not isinstance(image, bytes | bytearray):
            raise ValueError(f"row {row}: expected image file bytes, got {type(image).__name__}")
        try:
            return decode_image(io.BytesIO(bytes(image)), height, width)  # type: ignore[arg-type]
        except Exception as exc:
            raise ValueError(f"row {row}: not a readable image ({exc})") from None


class _PyfuncModel:
    """What ``mlflow.pyfunc.load_model`` returns the predictions of (see the module doc)."""

    def __init__(self, model: FeatureModel) -> None:
        self.model = model

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> np.ndarray:
        columns = getattr(model_input, "columns", ())
        missing = [c for c in ("image", "modality") if c not in columns]
        if missing:
            raise ValueError(
                f"the input needs columns image (encoded image bytes) and modality "
                f"(visible / infrared); missing: {', '.join(missing)}"
            )
        return self.model.features(list(model_input["image"]), list(model_input["modality"]))


def _load_pyfunc(data_path: str) -> _PyfuncModel:
    """MLflow's entry point for the ``loader_module`` flavour: `data_path` is ``data/``."""
    folder = Path(data_path)
    config = folder / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(
            f"{config}: this model was logged without its config and cannot be served"
        )
    return _PyfuncModel(FeatureModel(config, folder / "checkpoint.pt"))
