"""The guard against oneDNN 3.12's wrong AMX bf16 convolutions (`mmm_core.models.onednn`)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mmm_core.models.onednn import AMX_FREE_ISA, cap_onednn_below_amx

# A fresh process: builds a network (which sets the cap), then compares the shape that
# oneDNN 3.12's AMX kernel gets wrong (measured 100 % off on a Xeon with AMX) in bf16
# autocast against float32. Prints the relative error and the variable.
CHECK = """
import os, torch
from mmm_core.models import build_model
build_model("resnet18", "none", width=8)
torch.manual_seed(0)
conv = torch.nn.Conv2d(128, 256, 3, stride=2, padding=1, bias=False)
x = torch.randn(12, 128, 4, 2)
with torch.no_grad():
    reference = conv(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = conv(x).float()
print(float((low - reference).norm() / reference.norm()), os.environ.get("ONEDNN_MAX_CPU_ISA"))
"""


def _fresh_env() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in {"ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"}
    }
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    return env


def test_a_network_built_in_a_fresh_process_gets_right_bf16_convolutions() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHECK],
        env=_fresh_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    error, variable = float(out[0]), out[1]
    assert error < 0.02, f"bf16 convolution {error:.1%} off float32"  # bf16 rounding: ~0.3 %
    if sys.platform.startswith("linux") and os.uname().machine == "x86_64":
        assert variable == AMX_FREE_ISA


def test_the_cap_is_set_once_and_a_users_choice_is_kept(monkeypatch) -> None:
    if os.uname().machine != "x86_64":
        pytest.skip("the cap applies to x86-64 only")
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    assert cap_onednn_below_amx() is True
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == AMX_FREE_ISA
    assert cap_onednn_below_amx() is False  # already set
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")
    assert cap_onednn_below_amx() is False and os.environ["ONEDNN_MAX_CPU_ISA"] == "ALL"
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX2")
    assert cap_onednn_below_amx() is False and "ONEDNN_MAX_CPU_ISA" not in os.environ
