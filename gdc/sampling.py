"""The sample step and the result: the trained head's mean prediction, brought to full resolution."""
from __future__ import annotations

import math

import numpy as np
import torch

from .hooks import Hooks
from .net import GDCHead, head_input

SAMPLE_CHUNK = 10  # stochastic passes run as one batch; bounds inference memory
BAND_ELEMENTS = 1 << 24  # full-resolution values produced at once; bounds output memory


@torch.no_grad()
def sample_mean(head: GDCHead, features: torch.Tensor, samples: int, dtype: torch.dtype, hooks: Hooks) -> torch.Tensor:
    """(K, h, w) float32 class probabilities averaged over ``samples`` draws of the head's random offsets.

    ``features`` is (1, C, h, w); ``dtype`` the head's compute type.
    """
    mixed = dict(device_type=features.device.type, dtype=dtype, enabled=dtype != torch.float32)
    head.eval()
    features = head_input(features, dtype)
    mean = torch.zeros(head.classifier[-1].out_channels, *features.shape[-2:], device=features.device)
    for done in range(0, samples, SAMPLE_CHUNK):
        hooks.report("sample", done, samples)
        chunk = min(SAMPLE_CHUNK, samples - done)
        with torch.autocast(**mixed):
            logits = head(features, samples=chunk)
        mean += logits.float().softmax(1).sum(0)
        hooks.check_cancel()
    hooks.report("sample", samples, samples)
    mean /= samples
    return mean


def bilinear_taps(source: int, target: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(low, high, weight of high) per target index: F.interpolate's bilinear, align_corners=False."""
    position = ((torch.arange(target, device=device) + 0.5) * source / target - 0.5).clamp(min=0)
    low = position.floor().long().clamp(max=source - 1)
    return low, (low + 1).clamp(max=source - 1), (position - low).unsqueeze(-1)


def upsample_bands(maps: torch.Tensor, height: int, width: int):
    """Yield (rows, band): ``maps`` (K, h, w) bilinearly resized to (K, height, width), a band of rows at a time."""
    rows_low, rows_high, rows_weight = bilinear_taps(maps.shape[1], height, maps.device)
    cols_low, cols_high, cols_weight = bilinear_taps(maps.shape[2], width, maps.device)
    band_rows = max(1, BAND_ELEMENTS // (maps.shape[0] * width))
    for start in range(0, height, band_rows):
        rows = slice(start, min(start + band_rows, height))
        weight = rows_weight[rows]
        band = maps[:, rows_low[rows]] * (1 - weight) + maps[:, rows_high[rows]] * weight
        yield rows, band[..., cols_low] * (1 - cols_weight.T) + band[..., cols_high] * cols_weight.T


def top_class(maps: torch.Tensor) -> torch.Tensor:
    """(H, W) int64 index of each pixel's largest of the (K, H, W) ``maps``, the first on ties, as argmax(0).

    K - 1 comparisons: torch's argmax over a short leading dimension is a strided reduction that took
    20 s of a 12 MP photo's upsampling on a busy core.
    """
    best, top = maps[0], torch.zeros(maps.shape[1:], dtype=torch.long, device=maps.device)
    for k in range(1, maps.shape[0]):
        top.masked_fill_(maps[k] > best, k)
        best = torch.maximum(best, maps[k])
    return top


def full_resolution(mean: torch.Tensor, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probabilities, uncertainty, top) at (height, width), a band at a time, so memory beyond them stays bounded.

    Arguments:
      mean: (K, h, w) class probabilities from :func:`sample_mean`.

    Returns:
      (K, H, W) float32 probabilities; (H, W) float32 entropy over log K in [0, 1]; (H, W) uint8 index
      of each pixel's most probable class.
    """
    k = mean.shape[0]
    probabilities = np.empty((k, height, width), dtype=np.float32)
    uncertainty = np.empty((height, width), dtype=np.float32)
    top = np.empty((height, width), dtype=np.uint8)
    for rows, band in upsample_bands(mean, height, width):
        entropy = -(band * band.clamp(min=1e-12).log()).sum(0) / math.log(k)
        probabilities[:, rows] = band.cpu().numpy()
        uncertainty[rows] = entropy.clamp(0, 1).cpu().numpy()
        top[rows] = top_class(band).to(torch.uint8).cpu().numpy()
    return probabilities, uncertainty, top
