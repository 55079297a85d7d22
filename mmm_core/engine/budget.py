"""Batches that fit the machine: a training step's memory, estimated before any training.

The network is built on the CPU and one forward pass of one image records the output size
of every convolution and linear layer (a third of a second for the tiny preset's
ResNet-18). Backpropagation keeps each of those outputs (the batch norm after a convolution
saves it), so their sum per image, times the images of a step, is a lower bound of the
step's activation memory; the parameters, their gradients and Adam's two moments add four
copies of the weights. The real step needs more (batch-norm outputs, the memory banks, the
allocator's slack), so a step whose *lower bound* already exceeds the device's memory
cannot run: `check_batch_fits` refuses it with the numbers and the keys to change, instead
of an out-of-memory kill after the data is loaded. Above half of it, a warning says the
step may not fit.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from mmm_core.config import Config, ConfigError
from mmm_core.engine.build import build_network
from mmm_core.engine.features import amp_dtype

__all__ = ["StepMemory", "check_batch_fits", "device_memory_bytes", "estimate_step_memory"]

log = logging.getLogger(__name__)

GIB = 2**30


@dataclass(frozen=True)
class StepMemory:
    """A training step's estimated memory (bytes): a lower bound of what it needs."""

    images: int
    activations_per_image: int
    weights: int

    @property
    def total(self) -> int:
        return self.images * self.activations_per_image + self.weights


def images_per_step(cfg: Config) -> int:
    """Visible P x K images in two views each, plus infrared P x K."""
    s = cfg.sampler
    return 2 * s.visible_ids * s.visible_instances + s.infrared_ids * s.infrared_instances


def estimate_step_memory(cfg: Config, device: torch.device) -> StepMemory:
    """The lower bound of one training step's memory for `cfg` on `device` (see the module)."""
    # The layer outputs of one image, from a forward pass on the CPU (0.3 s for the tiny
    # preset, 0.75 s for the paper's ResNet-50 at 288x144 here). On the meta device the batch
    # norms' decompositions import torch._dynamo (1.7 s in a fresh process; a train task's
    # Adam imports it later anyway, other callers need not).
    model = build_network(cfg.replace(**{"model.pretrained": "none"}), torch.device("cpu"))
    model.eval()  # (the same convolutions and layers as in training, one image suffices)
    elements = 0

    def count(module: torch.nn.Module, inputs: object, output: object) -> None:
        nonlocal elements
        if isinstance(output, torch.Tensor):
            elements += output.numel()

    hooks = [
        m.register_forward_hook(count)
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
    ]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, cfg.data.height, cfg.data.width), "visible")
    finally:
        for hook in hooks:
            hook.remove()
    autocast = amp_dtype(cfg.train.amp, device)
    bytes_per_element = 4 if autocast is None else torch.finfo(autocast).bits // 8
    weights = sum(p.numel() for p in model.parameters()) * 4
    return StepMemory(images_per_step(cfg), elements * bytes_per_element, 4 * weights)


def _cgroup_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            return int(text)
    return None


def device_memory_bytes(device: torch.device) -> int | None:
    """The memory a step on `device` can use: the GPU's, or the machine's RAM (within the
    container's limit); None when unknown."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    if device.type != "cpu":
        return None
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    limit = _cgroup_limit()
    return min(ram, limit) if limit else ram


def check_batch_fits(cfg: Config, device: torch.device) -> StepMemory:
    """Refuse (ConfigError) a batch whose estimated step memory exceeds the device's; warn
    above half of it. Returns the estimate."""
    need = estimate_step_memory(cfg, device)
    have = device_memory_bytes(device)
    if have is None:
        return need
    s = cfg.sampler
    what = (
        f"a training step of {need.images} images ({s.visible_ids} x {s.visible_instances} "
        f"visible in two views + {s.infrared_ids} x {s.infrared_instances} infrared, "
        f"{cfg.data.height}x{cfg.data.width}, {cfg.model.arch} width {cfg.model.width}) needs "
        f"at least {need.total / GIB:.1f} GiB"
    )
    if need.total > have:
        raise ConfigError(
            "sampler",
            f"{what}, but {device} has {have / GIB:.1f} GiB; lower sampler.*_ids / "
            "sampler.*_instances or data.height / data.width, or set train.amp=bf16",
        )
    if need.total > have / 2:
        log.warning("%s of the %.1f GiB of %s: it may not fit", what, have / GIB, device)
    return need
