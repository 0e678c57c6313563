"""The convolution family of the paper: Gaussian dynamic convolution and its ablations.

Sun et al., "Gaussian Dynamic Convolution for Efficient Single-Image Segmentation"
(IEEE TCSVT 2021). Every conv here is a 3x3 kernel whose centre tap sits on the
output pixel c and whose 8 outer taps sit at ``c + Δ ⊙ e`` (Eq. 1), e ranging over
the 8 directions {-1, 0, 1}² \\ {0}. They differ only in where Δ comes from:

    normal      Δ = 1                                     (nn.Conv2d)
    dilated     Δ = 6                                     (nn.Conv2d, dilation 6)
    gdc         Δ ~ ⌊HalfGaussian₂(0, Σ) · s⌋ per pixel and tap (Eq. 1-3, Sec. V-A)
    uniform     Δ ~ Uniform{0 … 2m} per pixel and tap, m the GDC's mean (Table VIII)
    deformable  Δ = base + learned real offsets, bilinear sampling (Eq. 7)
    variantgdc  Δ = Δ_base + ⌊HalfGaussian₂(0, Σ)⌋, one Δ per kernel (Eq. 4)

s is the short side of the input map, so Σ is a fraction of the image. Taps that fall
outside the map read zeros, exactly as zero padding does for nn.Conv2d: with Δ forced
to 1 (or d) a GDC equals a 3x3 (dilation-d) nn.Conv2d with the same weights. With
``padding="border"`` they read the nearest pixel on the map's edge instead (replicate
padding), which keeps far-flung taps from filling border pixels' features with zeros.

Build any of them by name with :func:`create_conv`.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

# The 9 taps of a 3x3 kernel in nn.Conv2d weight order (row-major); index 4 is the centre.
DIRECTIONS = torch.tensor([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
HALF_GAUSSIAN_MEAN = math.sqrt(2 / math.pi)  # E|N(0, 1)|


Padding = Literal["zeros", "border"]


def tap_index(
    offsets: torch.Tensor,
    batch: int,
    height: int,
    width: int,
    taps_apart: int = 1,
    padding: Padding = "zeros",
    at: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rows to read for each output pixel's 9 taps ``c + offsets ⊙ e``, as (N * P, 9) indices.

    The output pixels are the map's P = H * W, or the P flat pixels ``at`` (``row * W + col``),
    whose offsets are then (N, 9, 2, P or 1). The rows number the pixels of ``batch`` maps,
    ``taps_apart`` rows per pixel with tap t at row ``pixel * taps_apart + t`` when ``taps_apart``
    > 1. Output n of the N = offsets.shape[0] reads map ``n % batch``. With zeros padding the maps
    are (H+2) x (W+2), each bordered by one ring of zeros, where taps beyond the map land; with
    ``padding="border"`` they are H x W and such taps land on the map's own edge.
    """
    n = offsets.shape[0]
    device = offsets.device
    ring = 1 if padding == "zeros" else 0
    map_height, map_width = height + 2 * ring, width + 2 * ring
    rows_total = batch * map_height * map_width * taps_apart
    kind = torch.int32 if rows_total < 2**31 else torch.int64  # half the memory traffic when it fits
    if at is None:
        row = torch.arange(height, device=device, dtype=kind).view(1, 1, height, 1)
        col = torch.arange(width, device=device, dtype=kind).view(1, 1, 1, width)
        pixels = (height, width)
    else:
        at = at.to(device, kind)
        row, col = (at // width).view(1, 1, -1), (at % width).view(1, 1, -1)
        pixels = (at.numel(),)
    places = (1,) * len(pixels)
    shift = offsets.to(kind) * DIRECTIONS.to(device, kind).view(1, 9, 2, *places)
    # Clamping onto the zero ring is exact: any tap beyond it would read zero too.
    rows = (shift[:, :, 0] + row).clamp_(-ring, height - 1 + ring)
    cols = (shift[:, :, 1] + col).clamp_(-ring, width - 1 + ring)
    index = (rows + ring) * map_width + (cols + ring)
    if batch > 1:
        image = torch.arange(n, device=device, dtype=kind).view(n, 1, *places) % batch
        index = index + image * (map_height * map_width)
    if taps_apart > 1:
        index = index * taps_apart + torch.arange(9, device=device, dtype=kind).view(1, 9, *places)
    return index.expand(n, 9, *pixels).movedim(1, -1).reshape(-1, 9)


def gather_rows(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    offsets: torch.Tensor,
    padding: Padding = "zeros",
    at: torch.Tensor | None = None,
    plus: torch.Tensor | None = None,
) -> torch.Tensor:
    """3x3 convolution whose taps sit at ``c + offsets ⊙ e`` instead of ``c + e``, as rows of output pixels.

    Arguments:
      x: (B, C, H, W) input.
      weight: (O, C, 3, 3), as nn.Conv2d's.
      bias: (O,) or None.
      offsets: integer Δ of shape (N, 9, 2, H or 1, W or 1), (dy, dx) per tap, broadcast
        over the dimensions given as 1; or (N, 9, 2, P or 1) with ``at``. N is 1 (shared by all
        images) or a multiple of B, output n reading image ``n % B`` (N > B: several draws over
        the same input). The centre row is ignored.
      padding: what taps outside the map read: ``zeros``, or the nearest ``border`` pixel.
      at: (P,) flat indices ``row * W + col`` of the only output pixels to compute, or None
        for all (P = H * W). Training needs the outputs near the cells its loss reads alone, and
        the cost of the gather and its gradient is per output pixel.
      plus: (B, O, H, W) added to the output, to each draw of image b its ``plus[b]`` (a residual branch), or None.

    Returns:
      (N, P, O): output n's pixels in row-major order (or ``at``'s).
    """
    batch, channels, height, width = x.shape
    offsets = offsets.expand(max(offsets.shape[0], batch), *offsets.shape[1:])
    draws, out_channels = offsets.shape[0], weight.shape[0]
    # Rows must be contiguous: gathering rows of a column-major view would touch every channel's
    # cache line (20x slower). A channels-last x already has them, and border padding needs no ring.
    ring = 1 if padding == "zeros" else 0
    pixels = (F.pad(x, (ring,) * 4) if ring else x).permute(0, 2, 3, 1).reshape(-1, channels)
    taps_apart = 1 if draws == batch else 9
    index = tap_index(offsets.to(x.device), batch, height, width, taps_apart=taps_apart, padding=padding, at=at)
    if draws == batch:
        # One draw per image (training): gather the inputs, then one matmul.
        # int64: index_select's gradient (an index_add) runs 3x slower on int32 indices.
        taps = pixels.index_select(0, index.reshape(-1).long()).view(-1, 9 * channels)
        out = taps @ weight.permute(2, 3, 1, 0).reshape(9 * channels, out_channels)
        if plus is not None:
            rows = plus.permute(0, 2, 3, 1).reshape(batch, -1, out_channels)
            out = out + (rows if at is None else rows[:, at.to(x.device)]).reshape(-1, out_channels).to(out.dtype)
        if bias is not None:
            out = out + bias.to(out.dtype)  # under autocast: stay in the matmul's type, no promotion
    else:
        # Many draws (sampling): multiply every pixel by every tap's weights once, then each draw only sums 9 rows
        # of that table. Every draw's centre tap reads its own pixel's row, so what each output adds once (the bias,
        # ``plus``) goes into those rows: once per pixel, not once per draw.
        products = pixels @ weight.permute(1, 2, 3, 0).reshape(channels, 9 * out_channels)
        centre = products.view(batch, height + 2 * ring, width + 2 * ring, 9, out_channels)[
            :, ring : ring + height, ring : ring + width, 4
        ]
        if plus is not None:
            centre += plus.permute(0, 2, 3, 1).to(products.dtype)
        if bias is not None:
            centre += bias.to(products.dtype)
        out = F.embedding_bag(index, products.view(-1, out_channels), mode="sum")
    return out.view(draws, -1, out_channels)


def gather_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    offsets: torch.Tensor,
    padding: Padding = "zeros",
    plus: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`gather_rows` over the whole map, as a map: (B, C, H, W) to (N, O, H, W)."""
    height, width = x.shape[-2:]
    out = gather_rows(x, weight, bias, offsets, padding, plus=plus)
    return out.view(out.shape[0], height, width, -1).permute(0, 3, 1, 2)


def fold_pointwise(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    pointwise: nn.Conv2d,
    padding: Padding,
    inside: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight (O, C, 3, 3) and bias of a 3x3 conv of ``pointwise(x)``, taking ``x`` (C channels) itself.

    Exact where every tap reads a pixel of the map (``padding="border"``): the bias is (O,). With zeros
    padding a tap off the map reads zero, not the pointwise conv's bias, so the bias depends on the output:
    ``inside``, (P, 9) bool, says which taps of each of P outputs are on the map, and the bias is (P, O).
    """
    if padding != "border" and inside is None:
        raise ValueError("a 1x1 conv folds into a zero-padded conv only with the outputs' taps on the map (inside)")
    mix = pointwise.weight[:, :, 0, 0]  # (M, C)
    folded = torch.einsum("omhw,mc->ochw", weight, mix)
    bias = bias if bias is not None else 0
    if pointwise.bias is None:
        return folded, bias
    if padding == "border":
        return folded, torch.einsum("omhw,m->o", weight, pointwise.bias) + bias
    per_tap = torch.einsum("omhw,m->hwo", weight, pointwise.bias).reshape(9, -1)
    return folded, inside.to(per_tap.dtype) @ per_tap + bias


class RandomOffsetConv2d(nn.Module):
    """A 3x3 conv whose outer taps move by random integer offsets on every forward pass.

    Subclasses say how Δ is drawn in :meth:`sample_offsets`; ``forward(x, offsets)``
    takes Δ explicitly instead, which is how tests pin it. The conv is computed as a
    table of per-tap products gathered at the moved taps (:func:`gather_conv2d`), or
    at some pixels alone (:meth:`rows_at`, what training reads).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        sigma: float = 0.2,
        padding: Padding = "zeros",
        bias: bool = True,
        generator: torch.Generator | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        if padding not in get_args(Padding):
            raise ValueError(f"padding must be one of {get_args(Padding)}, got {padding!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.sigma = sigma
        self.padding = padding
        self.generator = generator
        factory = dict(device=device, dtype=dtype)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Conv2d's default initialisation, so swapping convs changes only the taps.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_channels * 9)
            nn.init.uniform_(self.bias, -bound, bound)

    def offset_scale(self, height: int, width: int) -> float:
        """Σ·s: the standard deviation of Δ in pixels of this map."""
        return self.sigma * min(height, width)

    def sample_offsets(self, batch: int, height: int, width: int, points: int | None = None) -> torch.Tensor:
        """Integer Δ of shape (batch, 9, 2, height, width) for an (height, width) map; (batch, 9, 2, points) for
        ``points`` of its pixels alone."""
        raise NotImplementedError

    def _standard_draw(self, shape: tuple[int, ...], kind: str) -> torch.Tensor:
        device = self.generator.device if self.generator is not None else self.weight.device
        draw = torch.randn if kind == "normal" else torch.rand
        return draw(shape, generator=self.generator, device=device)

    def _weights(self, after: nn.Conv2d | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if after is None:
            return self.weight, self.bias
        return fold_pointwise(self.weight, self.bias, after, self.padding)

    def forward(
        self,
        x: torch.Tensor,
        offsets: torch.Tensor | None = None,
        samples: int = 1,
        after: nn.Conv2d | None = None,
        plus: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, C, H, W) to (samples * B, O, H, W): ``samples`` independent draws of offsets.

        The weights multiply the input once, however many draws read it; ``offsets``
        (``samples * B`` first) replaces the draw. ``after``, a 1x1 conv, makes this the conv of
        ``after(x)``, computed on ``x`` with the two convs' weights multiplied into one
        (:func:`fold_pointwise`): where ``x`` needs no gradient (a frozen stem's features),
        training then never scatters one back through the taps. ``plus`` (B, O, H, W) is added
        to every draw's output (a residual branch), at the cost of one draw.
        """
        if offsets is None:
            offsets = self.sample_offsets(samples * x.shape[0], x.shape[2], x.shape[3])
        return gather_conv2d(x, *self._weights(after), offsets, self.padding, plus)

    def rows_at(
        self, x: torch.Tensor, at: torch.Tensor, offsets: torch.Tensor | None = None, after: nn.Conv2d | None = None
    ) -> torch.Tensor:
        """(P, O): the conv of the (1, C, H, W) ``x`` at its P flat pixels ``at`` alone, one draw of offsets
        ((1, 9, 2, P) unless given); ``after`` as in :meth:`forward`. What training reads, at the cost of P."""
        if offsets is None:
            offsets = self.sample_offsets(1, x.shape[2], x.shape[3], points=at.numel())
        return gather_rows(x, *self._weights(after), offsets, self.padding, at)[0]

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, sigma={self.sigma}, padding={self.padding}"


def _places(height: int, width: int, points: int | None) -> tuple[int, ...]:
    return (height, width) if points is None else (points,)


class GaussianDynamicConv2d(RandomOffsetConv2d):
    """GDC (Sec. III-B): per pixel and per tap, Δ = ⌊|N(0, Σ·s)|⌋ on each axis."""

    def sample_offsets(self, batch: int, height: int, width: int, points: int | None = None) -> torch.Tensor:
        normal = self._standard_draw((batch, 9, 2, *_places(height, width, points)), "normal")
        return normal.abs_().mul_(self.offset_scale(height, width)).to(torch.int32)  # truncation: ⌊·⌋ as ≥ 0


class UniformRandomConv2d(RandomOffsetConv2d):
    """Table VIII's random dynamic conv: Δ uniform on {0 … 2m}, m the GDC's mean Σ·s·√(2/π).

    Matching the mean isolates the shape of the distribution, which is what the
    paper's experiment asks about.
    """

    def sample_offsets(self, batch: int, height: int, width: int, points: int | None = None) -> torch.Tensor:
        high = math.floor(2 * HALF_GAUSSIAN_MEAN * self.offset_scale(height, width)) + 1
        uniform = self._standard_draw((batch, 9, 2, *_places(height, width, points)), "uniform")
        return uniform.mul_(high).to(torch.int32)


class VariantGaussianDynamicConv2d(nn.Conv2d):
    """Variant GDC (Eq. 4, Fig. 4): one Δ for the whole kernel, drawn per forward pass.

    The taps sit at ``c + (Δ_base + Δ) ⊙ e`` with Δ = ⌊HalfGaussian₂(0, Σ)⌋ in pixels
    (not scaled by the map: it serves fixed-scale pyramids such as GDPP), so each pass
    is a dilated conv with dilation (Δ_base + Δy, Δ_base + Δx); Σ = 0 is a plain
    dilation-Δ_base conv. One draw serves the whole batch.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        base: int = 9,
        sigma: float = 2.0,
        groups: int = 1,
        bias: bool = True,
        generator: torch.Generator | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(
            in_channels, out_channels, 3, groups=groups, bias=bias, device=device, dtype=dtype
        )
        if base < 1 or sigma < 0:
            raise ValueError(f"need base >= 1 and sigma >= 0, got base={base}, sigma={sigma}")
        self.base = base
        self.sigma = sigma
        self.generator = generator

    def sample_dilation(self) -> tuple[int, int]:
        device = self.generator.device if self.generator is not None else "cpu"
        normal = torch.randn(2, generator=self.generator, device=device)
        delta = (normal.abs() * self.sigma).floor().long().tolist()
        return self.base + delta[0], self.base + delta[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dilation = self.sample_dilation()
        return F.conv2d(x, self.weight, self.bias, 1, dilation, dilation, self.groups)


class DeformableConv2d(nn.Module):
    """Deformable conv (Dai et al., ICCV 2017; the paper's Eq. 7) without torchvision.

    A 3x3 conv on the input predicts a real (dy, dx) per tap and pixel, added to the
    regular grid ``c + base · e``; features are read by bilinear interpolation with
    zeros outside. The offset predictor starts at zero, so training starts from a
    plain (dilation-``base``) conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        base: int = 1,
        bias: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        factory = dict(device=device, dtype=dtype)
        self.base = base
        self.conv = nn.Conv2d(in_channels, out_channels, 3, bias=bias, **factory)
        self.offset = nn.Conv2d(in_channels, 18, 3, padding=1, **factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.conv.reset_parameters()
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        learned = self.offset(x).view(batch, 9, 2, height, width)
        grid_y = torch.arange(height, device=x.device, dtype=x.dtype).view(1, 1, height, 1)
        grid_x = torch.arange(width, device=x.device, dtype=x.dtype).view(1, 1, 1, width)
        directions = DIRECTIONS.to(device=x.device, dtype=x.dtype) * self.base
        y = grid_y + directions[:, 0].view(1, 9, 1, 1) + learned[:, :, 0]
        x_pos = grid_x + directions[:, 1].view(1, 9, 1, 1) + learned[:, :, 1]
        # grid_sample wants (x, y) in [-1, 1] with align_corners=True mapping 0 and size-1.
        grid = torch.stack(
            (2 * x_pos / max(width - 1, 1) - 1, 2 * y / max(height - 1, 1) - 1), dim=-1
        )
        taps = F.grid_sample(
            x, grid.view(batch, 9 * height, width, 2), align_corners=True, padding_mode="zeros"
        ).view(batch, channels, 9, height, width)
        out = torch.einsum("bcthw,oct->bohw", taps, self.conv.weight.flatten(2))
        if self.conv.bias is not None:
            out = out + self.conv.bias.view(1, -1, 1, 1)
        return out


def _plain_conv(in_channels: int, out_channels: int, *, dilation: int = 1, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation, **kwargs)


_CONV_MAP = dict(
    normal=_plain_conv,
    dilated=partial(_plain_conv, dilation=6),
    deformable=DeformableConv2d,
    uniform=UniformRandomConv2d,
    gdc=GaussianDynamicConv2d,
    variantgdc=VariantGaussianDynamicConv2d,
)
CONV_NAMES = tuple(_CONV_MAP)
# Convs with per-pixel random taps: they take sigma and a generator, and draw
# ``samples`` sets of offsets in one forward pass.
RANDOM_CONVS = frozenset({"gdc", "uniform"})


def normalize_conv_name(name: str) -> str:
    key = name.replace("_", "").replace("-", "").lower()
    if key not in _CONV_MAP:
        raise ValueError(f"unknown conv {name!r}; known: {', '.join(CONV_NAMES)}")
    return key


def create_conv(name: str, in_channels: int, out_channels: int, **kwargs) -> nn.Module:
    """Build a conv of the family by name (see the module docstring), e.g. ``create_conv('gdc', 32, 32, sigma=0.2)``."""
    return _CONV_MAP[normalize_conv_name(name)](in_channels, out_channels, **kwargs)
