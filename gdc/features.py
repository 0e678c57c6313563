"""The features step: the frozen stem's features of the working-size image, standardised per image."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from .stem import MobileNetV2Stem, load_stem


@lru_cache(maxsize=4)
def cached_stem(weights: str, device: str) -> MobileNetV2Stem:
    """The frozen stem, loaded once per process and device (workers keep it warm)."""
    return load_stem(weights, device)


@torch.no_grad()
def stem_features(image: np.ndarray, weights: str, stride: int, device: torch.device) -> torch.Tensor:
    """(1, C, h, w) float32 features of an (H, W, 3) uint8 image, each channel at zero mean and unit spread.

    ``h, w`` are ``H, W`` over ``stride`` (2 or 4), rounded up.
    """
    stem = cached_stem(weights, str(device))
    pixels = torch.tensor(image, device=device).permute(2, 0, 1)[None].float() / 255
    features = stem(pixels, stride=stride)
    # Per-image standardisation puts every channel on the scale SGD at lr 0.01 expects.
    return (features - features.mean((2, 3), keepdim=True)) / (features.std((2, 3), keepdim=True) + 1e-5)
