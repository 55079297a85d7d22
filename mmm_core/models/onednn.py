"""A guard against a wrong-result bug of oneDNN's AMX convolutions in the pinned torch.

torch 2.14.1 bundles oneDNN 3.12. On a CPU with AMX (Intel Xeon 4th generation and later),
its brgemm forward convolution for AMX (``brg_conv_fwd:*_amx`` in ``ONEDNN_VERBOSE=1``)
returns wrong numbers for some strided shapes, silently. Measured on such a Xeon: a bf16
``Conv2d(128, 256, 3, stride=2, padding=1)`` over a (12, 128, 4, 2) batch is 100 % off its
float32 result (0.3 % is bf16's rounding), and one stage-2 training step of the width-64
ResNet-18 at 32x16 gave a NaN loss, or a loss 14 % off, changing from run to run. A fix of
this kernel's scratch-buffer sizing for strided shapes landed in oneDNN after 3.12
(uxlfoundation/oneDNN#5494); whether it covers these shapes was not checked here.

The cure is to keep oneDNN below AMX: ``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16`` (AVX-512 with
its bf16 instructions, which autocast then uses). The same step then matches float32 to
0.5 %. oneDNN reads the variable once, at its first primitive, so it must be set before the
process's first convolution: `TwoStreamAGW` sets it when it is built. A value the user set
(``ONEDNN_MAX_CPU_ISA``, or the older ``DNNL_MAX_CPU_ISA``) is kept: ``ALL`` lifts the cap,
for a torch whose oneDNN is fixed.
"""

from __future__ import annotations

import os
import platform

__all__ = ["AMX_FREE_ISA", "cap_onednn_below_amx"]

AMX_FREE_ISA = "AVX512_CORE_BF16"
_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")


def cap_onednn_below_amx() -> bool:
    """Set ``ONEDNN_MAX_CPU_ISA`` to `AMX_FREE_ISA` on x86-64 unless a cap is already set.

    Returns whether it set the variable. A cap only lowers the ISA: a CPU without AVX-512 or
    bf16 runs what it ran before. It takes effect only if no oneDNN primitive ran yet in
    this process.
    """
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        return False
    if any(os.environ.get(name) for name in _VARIABLES):
        return False
    os.environ[_VARIABLES[0]] = AMX_FREE_ISA
    return True
