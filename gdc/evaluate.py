"""Scoring segmentations against dense ground truth on a folder of images.

Layout (as in ../shared/data): ``images/NAME.*``, ``gt/NAME.png`` and a scribble folder
``SCRIBBLES/NAME.png``. Ground truth is either a class index map (0..K-1, 255 void)
with scribbles ``k+1`` for class k, or a binary mask (0 background, 255 foreground,
128 ignored) with scribbles 1 foreground, 2 background, which reads as classes
foreground = 0, background = 1.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

VOID = 255
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class Sample:
    name: str
    image: np.ndarray  # (H, W, 3) uint8
    scribbles: np.ndarray  # (H, W) uint8, 0 unlabeled, k+1 class k
    truth: np.ndarray  # (H, W) uint8 class index, VOID ignored


def read_truth(path: Path) -> np.ndarray:
    """Ground truth as a class index map with VOID; binary masks become fg 0, bg 1."""
    truth = np.array(Image.open(path))
    if truth.ndim == 3:
        truth = truth[..., 0]
    values = set(np.unique(truth).tolist())
    if 255 in values and values <= {0, 128, 255}:
        return np.select([truth == 255, truth == 0], [0, 1], VOID).astype(np.uint8)
    return truth.astype(np.uint8)


def load_dataset(root: str | Path, scribbles: str = "scribbles") -> Iterator[Sample]:
    """Every image under ``root/images`` with its ground truth and scribbles, by name."""
    root = Path(root)
    scribble_dir = root / scribbles
    for folder in (root / "images", root / "gt", scribble_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} not found: expected images/, gt/ and {scribbles}/ under {root}")
    for path in sorted(p for p in (root / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        yield Sample(
            name=path.stem,
            image=np.array(Image.open(path).convert("RGB")),
            scribbles=np.array(Image.open(scribble_dir / f"{path.stem}.png")),
            truth=read_truth(root / "gt" / f"{path.stem}.png"),
        )


def score(prediction: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(mIoU over the classes present in ``truth``, pixel accuracy), void pixels ignored.

    Both maps hold class indices; ``prediction`` may use any value for other classes.
    """
    valid = truth != VOID
    pred, true = prediction[valid], truth[valid]
    ious = []
    for c in np.unique(true):
        intersection = np.count_nonzero((pred == c) & (true == c))
        union = np.count_nonzero((pred == c) | (true == c))
        ious.append(intersection / union)
    return float(np.mean(ious)), float(np.mean(pred == true))
