"""Checking an image and its scribbles before any work: numpy only, so the web API can call it too."""
from __future__ import annotations

import numpy as np

from .errors import InputError

MIN_SIDE = 8  # pixels: the stem halves the image twice and the 3x3 convs need room


def check_image(image: np.ndarray) -> np.ndarray:
    """The image as (H, W, 3) uint8 RGB; grey (H, W) images are stacked to three channels."""
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"image must be RGB (H, W, 3), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise InputError(f"image must be uint8 in [0, 255], got {image.dtype}")
    check_size(image.shape[1], image.shape[0])
    return image


def check_size(width: int, height: int) -> None:
    """Refuse an image too small for the engine (the web API checks it from the file's header)."""
    if min(width, height) < MIN_SIDE:
        raise InputError(f"image is {width}x{height}; both sides must be at least {MIN_SIDE} pixels")


def scribble_classes(scribbles: np.ndarray, image_shape: tuple[int, ...], max_classes: int | None = None) -> np.ndarray:
    """The sorted class values present in ``scribbles``, after checking it fits the image.

    Arguments:
      scribbles: (H, W) integer label map, 0 unlabeled.
      image_shape: the image's shape, (H, W, 3).
      max_classes: the most classes accepted, if any limit.

    Raises:
      InputError: wrong size or type, labels outside 0..255, fewer than two classes or
        more than ``max_classes``.
    """
    if scribbles.ndim != 2:
        raise InputError(f"scribbles must be a single-channel label map, got shape {scribbles.shape}")
    if scribbles.shape != tuple(image_shape[:2]):
        h, w = image_shape[:2]
        sh, sw = scribbles.shape
        raise InputError(f"scribbles are {sw}x{sh} but the image is {w}x{h}; they must be the same size")
    if not np.issubdtype(scribbles.dtype, np.integer):
        raise InputError(f"scribbles must hold integer labels, got {scribbles.dtype}")
    if scribbles.min() < 0 or scribbles.max() > 255:
        raise InputError("scribble labels must be 0 (unlabeled) or classes 1 to at most 255")
    classes = np.unique(scribbles[scribbles > 0])
    if classes.size < 2:
        found = "no labels" if classes.size == 0 else f"only class {classes[0]}"
        raise InputError(f"scribbles need at least two classes (0 is unlabeled, 1..K are classes); found {found}")
    if max_classes is not None and classes.size > max_classes:
        raise InputError(f"scribbles have {classes.size} classes; at most {max_classes} are accepted")
    return classes
