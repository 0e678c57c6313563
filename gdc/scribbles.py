"""Growing scribbles over SLIC superpixels (Sec. V-A, Fig. 6).

Achanta et al., "SLIC Superpixels Compared to State-of-the-Art Superpixel Methods"
(TPAMI 2012), as implemented by scikit-image. This module knows nothing of training.
"""
from __future__ import annotations

import numpy as np
from skimage.segmentation import slic



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
