"""Gaussian dynamic pyramid pooling (GDPP, Sec. IV-B, Fig. 5, Tables VI and IX).

An ASPP-like context module for semantic segmentation: the smallest and largest scales
are fixed dilated convs (1 and 18), the middle scales are variant GDCs (Eq. 4) whose
dilation is ``base + ⌊HalfGaussian(0, Σ)⌋``, drawn afresh on every forward pass. Every
conv is depthwise-separable, as in the paper's MobileNetV2 setting.
"""
from __future__ import annotations

import torch
from torch import nn

from .convs import VariantGaussianDynamicConv2d


class SeparableBranch(nn.Module):
    """Depthwise 3x3 (dilated or variant GDC), then pointwise 1x1, BN and ReLU."""

    def __init__(self, depthwise: nn.Module, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.depthwise = depthwise
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.pointwise(self.depthwise(x))))


class GDPP(nn.Module):
    """Pyramid of a dilation-1 conv, variant GDCs at ``bases`` and a dilation-18 conv, fused by 1x1.

    Arguments:
      in_channels: channels of the backbone's output.
      out_channels: channels of every branch and of the output.
      bases: Δ_base of the middle variant-GDC branches (Table IX: (9,), (6, 12), (6, 9, 12)).
      sigma: Σ of the variant GDCs, in pixels of the map.
      dilations: the fixed smallest and largest dilations.
      generator: drives the variant GDCs' draws, so runs repeat.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 256,
        *,
        bases: tuple[int, ...] = (9,),
        sigma: float = 2.0,
        dilations: tuple[int, int] = (1, 18),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        small, large = dilations
        depthwise = [self._dilated(in_channels, small)]
        depthwise += [
            VariantGaussianDynamicConv2d(
                in_channels, in_channels, base=base, sigma=sigma, groups=in_channels, bias=False, generator=generator
            )
            for base in bases
        ]
        depthwise += [self._dilated(in_channels, large)]
        self.branches = nn.ModuleList(SeparableBranch(conv, in_channels, out_channels) for conv in depthwise)
        self.project = nn.Sequential(
            nn.Conv2d(out_channels * len(self.branches), out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    @staticmethod
    def _dilated(channels: int, dilation: int) -> nn.Conv2d:
        return nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, groups=channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) to (B, out_channels, H, W)."""
        return self.project(torch.cat([branch(x) for branch in self.branches], dim=1))
