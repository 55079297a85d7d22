"""Building blocks of the AGW re-ID network: GeM pooling, non-local block, BN-neck.

All modules follow their input's device and dtype; none moves tensors on its own.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["BNNeck", "GeneralizedMeanPooling", "NonLocalBlock"]


class GeneralizedMeanPooling(nn.Module):
    """Generalised-mean (GeM) pooling over the spatial dimensions.

    ``y_c = (mean_{h,w} max(x_chw, eps) ** p) ** (1 / p)``: average pooling at ``p = 1``,
    tending to max pooling as ``p`` grows. The power is computed in at least float32 (half
    inputs are promoted, which keeps ``x ** 3`` from overflowing under autocast).

    Args:
        p: the exponent (AGW's cross-modality baseline uses a fixed 3).
        learnable: if True, ``p`` is an ``nn.Parameter`` trained with the network (the
            single-modality AGW variant); if False (the default, as in the cross-modality
            AGW code MMM builds on) it is a fixed buffer, saved in the state dict.
        eps: inputs are clamped to at least ``eps`` so that the gradient of the root is
            finite where a whole channel is zero after ReLU.

    Shapes: ``(B, C, H, W) -> (B, C)``.
    """

    def __init__(self, p: float = 3.0, learnable: bool = False, eps: float = 1e-6) -> None:
        super().__init__()
        if p <= 0:
            raise ValueError(f"GeM exponent p must be > 0, got {p}")
        self.eps = eps
        self.learnable = learnable
        value = torch.tensor(float(p))
        if learnable:
            self.p = nn.Parameter(value)
        else:
            self.register_buffer("p", value)

    def forward(self, x: Tensor) -> Tensor:
        dtype = torch.promote_types(x.dtype, torch.float32)
        p = self.p.to(dtype)
        pooled = x.to(dtype).clamp(min=self.eps).pow(p).mean(dim=(-2, -1))
        return pooled.pow(1.0 / p)

    def extra_repr(self) -> str:
        return f"p={float(self.p):.4g}, learnable={self.learnable}, eps={self.eps}"


class NonLocalBlock(nn.Module):
    """Non-local block (dot-product form) as used in AGW, residual and identity at init.

    ``z = x + BN(W(y))`` with ``y_i = (1/N) sum_j (theta(x_i) . phi(x_j)) g(x_j)``, ``N = H*W``,
    and theta, phi, g 1x1 convolutions to ``inter_channels`` (default ``C // 2``). The
    output BatchNorm's weight and bias start at zero, so a freshly inserted block is the
    identity and does not disturb pretrained weights.

    Shapes: ``(B, C, H, W) -> (B, C, H, W)``.
    """

    def __init__(self, in_channels: int, inter_channels: int | None = None) -> None:
        super().__init__()
        inter = inter_channels if inter_channels is not None else max(in_channels // 2, 1)
        self.in_channels = in_channels
        self.inter_channels = inter
        self.g = nn.Conv2d(in_channels, inter, kernel_size=1)
        self.theta = nn.Conv2d(in_channels, inter, kernel_size=1)
        self.phi = nn.Conv2d(in_channels, inter, kernel_size=1)
        self.out = nn.Sequential(
            nn.Conv2d(inter, in_channels, kernel_size=1),
            nn.BatchNorm2d(in_channels),
        )
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)

    def forward(self, x: Tensor) -> Tensor:
        batch, _, height, width = x.shape
        positions = height * width
        g = self.g(x).flatten(2).transpose(1, 2)  # (B, N, C')
        theta = self.theta(x).flatten(2).transpose(1, 2)  # (B, N, C')
        phi = self.phi(x).flatten(2)  # (B, C', N)
        affinity = torch.bmm(theta, phi) / positions  # (B, N, N)
        y = torch.bmm(affinity, g)  # (B, N, C')
        y = y.transpose(1, 2).reshape(batch, self.inter_channels, height, width)
        return x + self.out(y)


class BNNeck(nn.BatchNorm1d):
    """BN-neck: ``BatchNorm1d`` with weight initialised to 1 and a bias frozen at zero.

    The bias has ``requires_grad = False`` (build optimisers from parameters that require
    grad). Shapes: ``(B, D) -> (B, D)``.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features)
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)
        self.bias.requires_grad_(False)
