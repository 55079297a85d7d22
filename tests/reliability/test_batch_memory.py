"""Batches that fit the machine: the step-memory estimate is a true lower bound of what
backpropagation keeps, and a batch whose estimate exceeds the machine is refused up front."""

from __future__ import annotations

import torch

from mmm_core.config import load_config
from mmm_core.engine.budget import check_batch_fits, estimate_step_memory
from mmm_core.models import build_model
from tests.reliability.test_error_boundary import CONFIGS, one_error_line, run, train_argv

TINY = ["model.arch=resnet18", "model.width=16", "data.height=64", "data.width=32"]


def saved_bytes_per_image(images: int = 4) -> int:
    """What autograd really keeps for backward, per image, in one fp32 forward pass."""
    model = build_model("resnet18", "none", width=16)
    model.train()
    weights = {p.data_ptr() for p in model.parameters()}
    seen: set[tuple[int, tuple[int, ...]]] = set()
    saved = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        key = (tensor.data_ptr(), tuple(tensor.shape))
        if tensor.data_ptr() not in weights and key not in seen:  # activations, once each
            seen.add(key)
            saved += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(torch.randn(images, 3, 64, 32), "visible")
    return saved // images


def test_the_estimate_is_a_lower_bound_of_what_backward_keeps():
    cfg = load_config(CONFIGS / "synthetic-tiny.yaml", [*TINY, "train.amp=none"])
    estimate = estimate_step_memory(cfg, torch.device("cpu"))
    real = saved_bytes_per_image()
    assert 0.25 * real < estimate.activations_per_image <= real


def test_bf16_halves_the_activations():
    fp32 = load_config(CONFIGS / "synthetic-tiny.yaml", [*TINY, "train.amp=none"])
    bf16 = load_config(CONFIGS / "synthetic-tiny.yaml", [*TINY, "train.amp=bf16"])
    cpu = torch.device("cpu")
    a, b = estimate_step_memory(fp32, cpu), estimate_step_memory(bf16, cpu)
    assert b.activations_per_image * 2 == a.activations_per_image


def test_an_absurd_batch_is_refused_before_anything_is_written(capsys, micro_dataset, tmp_path):
    out = tmp_path / "run"
    argv = train_argv(micro_dataset, out)
    for item in ("sampler.visible_ids=4000", "sampler.visible_instances=64", "data.height=288",
                 "data.width=144", "train.amp=none"):  # fmt: skip
        argv += ["--set", item]
    code, err = run(capsys, argv)
    assert code == 2
    line = one_error_line(err)
    assert "'sampler': a training step of 512" in line and "GiB, but cpu has" in line
    assert not out.exists()


def test_the_shipped_configs_fit_a_24_gib_gpu_in_bf16(monkeypatch):
    from mmm_core.engine import budget

    monkeypatch.setattr(budget, "device_memory_bytes", lambda device: 24 * budget.GIB)
    for name in ("sysu.yaml", "regdb.yaml", "synthetic-bench.yaml"):
        cfg = load_config(CONFIGS / name, ["train.amp=bf16"])
        assert check_batch_fits(cfg, torch.device("cpu")).total < 24 * budget.GIB
