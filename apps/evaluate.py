"""Scoring segmentations against dense ground truth on a folder of images.

Layout (as in ../shared/data): ``images/NAME.*``, ``gt/NAME.png`` and a scribble folder
``SCRIBBLES/NAME.png``. Ground truth is either a class index map (0..K-1, 255 void)
with scribbles ``k+1`` for class k, or a binary mask (0 background, 255 foreground,
128 ignored) with scribbles 1 foreground, 2 background, which reads as classes
foreground = 0, background = 1.

With ``prompt="box"`` the engine is prompted instead with a box around class 0 (a binary mask's
foreground), the ground truth's bounding box grown by :data:`BOX_MARGIN` pixels (clipped to the
image), as grabCut's rectangle is drawn a little loose; the scribbles are not read, and the score is
the object (class 0) against the rest.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

VOID = 255
# Pixels the box prompt's rectangle leaves around the object's bounding box on each side: a loose box, as
# drawn by hand (section 13 of benchmarks/RESULTS.md).
BOX_MARGIN = 5
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class Sample:
    name: str
    image: np.ndarray  # (H, W, 3) uint8
    scribbles: np.ndarray | None  # (H, W) uint8, 0 unlabeled, k+1 class k; None when not read
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


def load_dataset(root: str | Path, scribbles: str | None = "scribbles") -> Iterator[Sample]:
    """Every image under ``root/images`` with its ground truth and scribbles (None: none read), by name."""
    root = Path(root)
    folders = (root / "images", root / "gt") + (() if scribbles is None else (root / scribbles,))
    for folder in folders:
        if not folder.is_dir():
            expected = "images/ and gt/" if scribbles is None else f"images/, gt/ and {scribbles}/"
            raise FileNotFoundError(f"{folder} not found: expected {expected} under {root}")
    for path in sorted(p for p in (root / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        yield Sample(
            name=path.stem,
            image=np.array(Image.open(path).convert("RGB")),
            scribbles=None if scribbles is None else np.array(Image.open(root / scribbles / f"{path.stem}.png")),
            truth=read_truth(root / "gt" / f"{path.stem}.png"),
        )


def object_truth(truth: np.ndarray) -> np.ndarray:
    """``truth`` as the object (class 0) against the rest (class 1), VOID kept: what a box or clicks prompt for."""
    return np.where(truth == VOID, VOID, np.minimum(truth, 1)).astype(np.uint8)


def truth_box(truth: np.ndarray, margin: int = BOX_MARGIN):
    """The :class:`gdc.prompts.Box` around class 0 of ``truth``, grown by ``margin`` pixels and clipped."""
    from gdc.prompts import Box

    rows, cols = np.nonzero(truth == 0)
    if rows.size == 0:
        raise ValueError("the ground truth has no object (class 0) to draw a box around")
    height, width = truth.shape
    return Box(
        max(0, int(cols.min()) - margin), max(0, int(rows.min()) - margin),
        min(width, int(cols.max()) + 1 + margin), min(height, int(rows.max()) + 1 + margin),
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


# The per-image mIoU quantiles a report gives beside the mean: a mean hides the tail of photos that fail.
QUANTILES = {"min": 0.0, "10%": 0.1, "25%": 0.25, "median": 0.5}


def per_image_quantiles(runs: list[dict]) -> dict[str, float]:
    """The :data:`QUANTILES` of the images' mIoU, each image's mIoU its mean over the ``runs`` (one per seed)."""
    per_image = np.mean([[image["miou"] for image in run["images"]] for run in runs], axis=0)
    return {name: float(np.quantile(per_image, q)) for name, q in QUANTILES.items()}


def evaluate(
    root: str | Path,
    *,
    scribbles: str = "scribbles",
    prompt: str = "scribbles",
    options=None,
    seeds: tuple[int, ...] | list[int] = (0,),
    limit: int | None = None,
    log=lambda line: None,
) -> dict:
    """Segment every image of a data set once per seed and score it.

    ``prompt``: ``"scribbles"`` segments from the ``scribbles`` folder, ``"box"`` from :func:`truth_box`
    and scores the object against the rest (:func:`object_truth`).

    Returns a JSON-ready report: the options, per-image scores and seconds per seed,
    and per seed and overall means (mean ± std over seeds), and the per-image mIoU's quantiles
    (:func:`per_image_quantiles`).
    """
    from gdc.engine import segment, segment_prompted
    from gdc.options import SegmentOptions

    if prompt not in ("scribbles", "box"):
        raise ValueError(f"prompt must be scribbles or box, got {prompt!r}")
    by_box = prompt == "box"
    options = options or SegmentOptions()
    samples = list(load_dataset(root, None if by_box else scribbles))[:limit]
    runs = []
    for seed in seeds:
        seeded = options.model_copy(update={"seed": seed})
        per_image = []
        for sample in samples:
            started = time.perf_counter()
            if by_box:
                result = segment_prompted(sample.image, options=seeded, box=truth_box(sample.truth))
            else:
                result = segment(sample.image, sample.scribbles, seeded)
            seconds = time.perf_counter() - started
            miou, accuracy = score_labels(result.labels, object_truth(sample.truth) if by_box else sample.truth)
            per_image.append(dict(name=sample.name, miou=miou, accuracy=accuracy, seconds=seconds))
            log(f"seed {seed}  {sample.name:<24} mIoU {100 * miou:5.1f}  acc {100 * accuracy:5.1f}  {seconds:5.2f} s")
        mean = {key: float(np.mean([r[key] for r in per_image])) for key in ("miou", "accuracy", "seconds")}
        log(f"seed {seed}  mean mIoU {100 * mean['miou']:.2f}  acc {100 * mean['accuracy']:.2f}  {mean['seconds']:.2f} s/image")
        runs.append(dict(seed=seed, mean=mean, images=per_image))
    summary = {
        key: dict(mean=float(np.mean([r["mean"][key] for r in runs])), std=float(np.std([r["mean"][key] for r in runs])))
        for key in ("miou", "accuracy", "seconds")
    }
    summary["per_image_miou"] = per_image_quantiles(runs)
    source = f"box +{BOX_MARGIN} px" if by_box else scribbles
    log(
        f"{Path(root).name}/{source}: {len(samples)} images x {len(seeds)} seeds  "
        f"mIoU {100 * summary['miou']['mean']:.2f} ± {100 * summary['miou']['std']:.2f}  "
        f"acc {100 * summary['accuracy']['mean']:.2f}  {summary['seconds']['mean']:.2f} s/image"
    )
    log("per image (mIoU, mean over seeds): " + "  ".join(
        f"{name} {100 * value:.1f}" for name, value in summary["per_image_miou"].items()
    ))
    return dict(
        data=str(root), **(dict(prompt="box", box_margin=BOX_MARGIN) if by_box else dict(scribbles=scribbles)),
        images=len(samples), options=options.model_dump(), summary=summary, runs=runs,
    )
