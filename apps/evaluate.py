"""Scoring segmentations against dense ground truth on a folder of images.

Layout (as in ../shared/data): ``images/NAME.*``, ``gt/NAME.png`` and a scribble folder
``SCRIBBLES/NAME.png``. Ground truth is either a class index map (0..K-1, 255 void)
with scribbles ``k+1`` for class k, or a binary mask (0 background, 255 foreground,
128 ignored) with scribbles 1 foreground, 2 background, which reads as classes
foreground = 0, background = 1.
"""
from __future__ import annotations

import time
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


def score_labels(labels: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """:func:`score` of a label map in the scribbles' values: scribble value k+1 is class k."""
    return score(labels.astype(np.int64) - 1, truth)


def evaluate(
    root: str | Path,
    *,
    scribbles: str = "scribbles",
    options=None,
    seeds: tuple[int, ...] | list[int] = (0,),
    limit: int | None = None,
    log=lambda line: None,
) -> dict:
    """Segment every image of a data set once per seed and score it.

    Returns a JSON-ready report: the options, per-image scores and seconds per seed,
    and per seed and overall means (mean ± std over seeds).
    """
    from gdc.engine import segment
    from gdc.options import SegmentOptions

    options = options or SegmentOptions()
    samples = list(load_dataset(root, scribbles))[:limit]
    runs = []
    for seed in seeds:
        seeded = options.model_copy(update={"seed": seed})
        per_image = []
        for sample in samples:
            started = time.perf_counter()
            result = segment(sample.image, sample.scribbles, seeded)
            seconds = time.perf_counter() - started
            miou, accuracy = score_labels(result.labels, sample.truth)
            per_image.append(dict(name=sample.name, miou=miou, accuracy=accuracy, seconds=seconds))
            log(f"seed {seed}  {sample.name:<24} mIoU {100 * miou:5.1f}  acc {100 * accuracy:5.1f}  {seconds:5.2f} s")
        mean = {key: float(np.mean([r[key] for r in per_image])) for key in ("miou", "accuracy", "seconds")}
        log(f"seed {seed}  mean mIoU {100 * mean['miou']:.2f}  acc {100 * mean['accuracy']:.2f}  {mean['seconds']:.2f} s/image")
        runs.append(dict(seed=seed, mean=mean, images=per_image))
    summary = {
        key: dict(mean=float(np.mean([r["mean"][key] for r in runs])), std=float(np.std([r["mean"][key] for r in runs])))
        for key in ("miou", "accuracy", "seconds")
    }
    log(
        f"{Path(root).name}/{scribbles}: {len(samples)} images x {len(seeds)} seeds  "
        f"mIoU {100 * summary['miou']['mean']:.2f} ± {100 * summary['miou']['std']:.2f}  "
        f"acc {100 * summary['accuracy']['mean']:.2f}  {summary['seconds']['mean']:.2f} s/image"
    )
    return dict(
        data=str(root), scribbles=scribbles, images=len(samples), options=options.model_dump(), summary=summary, runs=runs
    )
