"""Scribbles: checking a label map and growing it over SLIC superpixels (Sec. V-A, Fig. 6).

Achanta et al., "SLIC Superpixels Compared to State-of-the-Art Superpixel Methods"
(TPAMI 2012), as implemented by scikit-image. Scribble maps hold 0 for unlabeled
pixels and a positive value per class; this module knows nothing of training.
"""
from __future__ import annotations

import numpy as np
from skimage.segmentation import slic

from .errors import InputError


def scribble_classes(scribbles: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
    """The sorted class values present in ``scribbles``, after checking it fits the image.

    Arguments:
      scribbles: (H, W) integer label map, 0 unlabeled.
      image_shape: the image's shape, (H, W, 3).

    Raises:
      InputError: wrong size or type, labels outside 0..255, or fewer than two classes.
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
    return classes


def expand_scribbles(
    image: np.ndarray,
    labels: np.ndarray,
    *,
    n_segments: int = 1000,
    compactness: float = 10.0,
) -> np.ndarray:
    """Grow scribbles over the SLIC superpixels they touch.

    A superpixel touched by scribbles of exactly one class takes that class; one touched
    by several classes keeps only its scribbled pixels; untouched ones stay unlabeled.

    Arguments:
      image: (H, W, 3) uint8 RGB.
      labels: (H, W) integer map, -1 unlabeled and 0..K-1 the classes.
      n_segments: the approximate number of superpixels; 0 returns ``labels`` unchanged.
      compactness: SLIC's balance of colour against space (higher: squarer superpixels).

    Returns:
      (H, W) int64 map in the same encoding.
    """
    if n_segments == 0:
        return labels.astype(np.int64)
    segments = slic(image, n_segments=n_segments, compactness=compactness, start_label=0)
    n_classes = int(labels.max()) + 1
    scribbled = labels >= 0
    # votes[s, k]: how many pixels of class k superpixel s holds.
    votes = np.zeros((segments.max() + 1, n_classes), dtype=np.int64)
    np.add.at(votes, (segments[scribbled], labels[scribbled]), 1)
    touched_by = (votes > 0).sum(axis=1)
    segment_label = np.where(touched_by == 1, votes.argmax(axis=1), -1)
    expanded = segment_label[segments]
    return np.where(scribbled, labels, expanded).astype(np.int64)
