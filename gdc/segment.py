"""``segment()``: an image and its scribbles in, a label map with probabilities out.

The one public entry point of the engine: numpy in, numpy out, tensors only inside.
It knows nothing of files, HTTP or queues; the CLI and the worker call it.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .errors import Cancelled, InputError
from .net import GDCHead
from .options import SegmentOptions
from .scribbles import expand_scribbles, scribble_classes
from .stem import MobileNetV2Stem, load_stem

# progress(phase, step, total): phases are "superpixels", "features", "optimise", "sample".
ProgressHook = Callable[[str, int, int], None]
CancelHook = Callable[[], bool]

SAMPLE_CHUNK = 10  # stochastic passes run as one batch; bounds inference memory


@dataclass
class SegmentResult:
    """What :func:`segment` returns.

    Attributes:
      labels: (H, W) uint8 label map holding the scribbles' own class values.
      probabilities: (K, H, W) float32 per-class probabilities, summing to 1 per pixel.
      uncertainty: (H, W) float32 in [0, 1]: entropy of the mean prediction over log K.
      classes: the K class values, in the order of ``probabilities``.
      timings: seconds spent per phase.
    """

    labels: np.ndarray
    probabilities: np.ndarray
    uncertainty: np.ndarray
    classes: tuple[int, ...]
    timings: dict[str, float] = field(default_factory=dict)


@lru_cache(maxsize=4)
def cached_stem(weights: str, device: str) -> MobileNetV2Stem:
    """The frozen stem, loaded once per process and device (workers keep it warm)."""
    return load_stem(weights, device)


def check_image(image: np.ndarray) -> np.ndarray:
    """The image as (H, W, 3) uint8 RGB; grey (H, W) images are stacked to three channels."""
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"image must be RGB (H, W, 3), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise InputError(f"image must be uint8 in [0, 255], got {image.dtype}")
    if min(image.shape[:2]) < 8:
        raise InputError(f"image is {image.shape[1]}x{image.shape[0]}; both sides must be at least 8 pixels")
    return image


def class_weights(targets: torch.Tensor, classes: int, scheme: str) -> torch.Tensor | None:
    """Cross-entropy weights from the labelled pixels' class counts n_c (N = Σ n_c).

    ``paper`` is Eq. 6 as printed, w_c = n_c / N; ``inverse`` is N / (K n_c), which
    balances rare and frequent classes; ``none`` weighs every pixel alike.
    """
    if scheme == "none":
        return None
    counts = torch.bincount(targets, minlength=classes).float()
    if scheme == "paper":
        return counts / counts.sum()
    return counts.sum() / (classes * counts.clamp(min=1))


@contextmanager
def _timed(timings: dict[str, float], phase: str):
    start = time.perf_counter()
    yield
    timings[phase] = timings.get(phase, 0.0) + time.perf_counter() - start


def segment(
    image: np.ndarray,
    scribbles: np.ndarray,
    options: SegmentOptions | None = None,
    *,
    progress: ProgressHook | None = None,
    cancel: CancelHook | None = None,
) -> SegmentResult:
    """Segment one image from its scribbles with a freshly trained GDC head.

    Arguments:
      image: (H, W, 3) uint8 RGB, pixel values in [0, 255] (or (H, W) grey).
      scribbles: (H, W) integer label map: 0 unlabeled, each positive value one class;
        at least two classes.
      options: see :class:`SegmentOptions`; the paper's defaults when None.
      progress: called as ``progress(phase, step, total)`` as work advances.
      cancel: polled between steps; when it returns True, :class:`Cancelled` is raised.

    Returns:
      A :class:`SegmentResult` at the image's full resolution.

    Raises:
      InputError: the image or scribbles cannot be used (the message says why).
      Cancelled: ``cancel`` asked to stop.
    """
    options = options or SegmentOptions()
    image = check_image(np.asarray(image))
    scribbles = np.asarray(scribbles)
    classes = scribble_classes(scribbles, image.shape)
    report = progress or (lambda phase, step, total: None)
    timings: dict[str, float] = {}

    def check_cancel() -> None:
        if cancel is not None and cancel():
            raise Cancelled("segmentation cancelled")

    device = torch.device(options.device)
    seed = options.seed if options.seed is not None else int(torch.seed() % 2**63)
    generator = torch.Generator(device=device).manual_seed(seed)
    torch.manual_seed(seed)  # the head's initialisation

    report("superpixels", 0, 1)
    with _timed(timings, "superpixels"):
        labels = np.where(scribbles > 0, np.searchsorted(classes, scribbles), -1)
        expanded = expand_scribbles(
            image, labels, n_segments=options.superpixels, compactness=options.compactness
        )
    check_cancel()

    report("features", 0, 1)
    with _timed(timings, "features"), torch.no_grad():
        stem = cached_stem(options.weights, str(device))
        pixels = torch.from_numpy(image).to(device).permute(2, 0, 1)[None].float() / 255
        features = stem(pixels, stride=options.feature_stride)
        # Per-image standardisation puts every channel on the scale SGD at lr 0.01 expects.
        features = (features - features.mean((2, 3), keepdim=True)) / (features.std((2, 3), keepdim=True) + 1e-5)
    check_cancel()

    k = len(classes)
    height, width = image.shape[:2]
    head = GDCHead(k, conv=options.conv, width=options.width, sigma=options.sigma, generator=generator, device=device)
    targets_map = torch.from_numpy(expanded).to(device)
    labelled = targets_map >= 0
    targets = targets_map[labelled]
    loss_fn = torch.nn.CrossEntropyLoss(weight=class_weights(targets, k, options.class_weights))
    optimiser = torch.optim.SGD(head.parameters(), lr=options.lr, momentum=options.momentum)

    with _timed(timings, "optimise"):
        head.train()
        for step in range(options.steps):
            report("optimise", step, options.steps)
            logits = F.interpolate(head(features), size=(height, width), mode="bilinear", align_corners=False)
            loss = loss_fn(logits[0].permute(1, 2, 0)[labelled], targets)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            check_cancel()
        report("optimise", options.steps, options.steps)

    samples = options.samples if head.stochastic else 1
    with _timed(timings, "sample"), torch.no_grad():
        head.eval()
        mean = torch.zeros(k, *features.shape[-2:], device=device)
        for done in range(0, samples, SAMPLE_CHUNK):
            report("sample", done, samples)
            chunk = min(SAMPLE_CHUNK, samples - done)
            mean += head(features, samples=chunk).softmax(1).sum(0)
            check_cancel()
        report("sample", samples, samples)
        probabilities = F.interpolate((mean / samples)[None], size=(height, width), mode="bilinear", align_corners=False)[0]
        entropy = -(probabilities * probabilities.clamp(min=1e-12).log()).sum(0) / math.log(k)
        winners = probabilities.argmax(0)

    class_values = torch.as_tensor(classes, device=device)
    return SegmentResult(
        labels=class_values[winners].to(torch.uint8).cpu().numpy(),
        probabilities=probabilities.float().cpu().numpy(),
        uncertainty=entropy.clamp(0, 1).float().cpu().numpy(),
        classes=tuple(int(c) for c in classes),
        timings=timings,
    )
