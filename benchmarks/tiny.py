"""The tiny job of the reliability runs: a 64x48 image with two scribbled classes and options that keep the
engine to a few tens of milliseconds, so what is measured is the service, not the engine."""
from __future__ import annotations

import numpy as np

from gdc.imageio import encode_png

WIDTH, HEIGHT = 64, 48
# A job of a few tens of milliseconds: the service's own overhead dominates.
QUICK = {"steps": 2, "samples": 1, "superpixel_size": 60}


def tiny_image(seed: int) -> np.ndarray:
    """A 64x48 RGB image: a bright disc on a dark noisy background, placed by ``seed``."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    y, x = np.ogrid[:HEIGHT, :WIDTH]
    cy, cx = rng.integers(16, HEIGHT - 16), rng.integers(16, WIDTH - 16)
    image[(y - cy) ** 2 + (x - cx) ** 2 < 100] = (220, 200, 40)
    return image


def tiny_scribbles() -> np.ndarray:
    """Class 1 at the image centre, class 2 in the corners."""
    labels = np.zeros((HEIGHT, WIDTH), np.uint8)
    labels[HEIGHT // 2 - 2 : HEIGHT // 2 + 2, WIDTH // 2 - 2 : WIDTH // 2 + 2] = 1
    labels[:4, :4] = labels[-4:, -4:] = 2
    return labels


def tiny_upload(seed: int = 0) -> dict:
    """Multipart ``files`` for POST /segment: a tiny image and its scribbles."""
    return {
        "image": ("tiny.png", encode_png(tiny_image(seed)), "image/png"),
        "scribbles": ("scribbles.png", encode_png(tiny_scribbles()), "image/png"),
    }
