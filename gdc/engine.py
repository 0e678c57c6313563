"""``segment()``: an image and its scribbles in, a label map with probabilities out.

The one public entry point of the engine: numpy in, numpy out, tensors only inside.
It knows nothing of files, HTTP or queues; the CLI and the worker call it.
"""
from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
from PIL import Image

from .errors import Cancelled
from .inputs import check_image, scribble_classes
from .labelling import edge_aware_labels, make_consistent
from .net import GDCHead
from .options import SegmentOptions
from .scribbles import grow_over, superpixels
from .stem import MobileNetV2Stem, load_stem
from .warm import WarmStart, fingerprint

# progress(phase, step, total): phases are "superpixels", "features", "optimise", "sample", "edges" (when on).
ProgressHook = Callable[[str, int, int], None]
CancelHook = Callable[[], bool]

SAMPLE_CHUNK = 10  # stochastic passes run as one batch; bounds inference memory
BAND_ELEMENTS = 1 << 24  # full-resolution values produced at once; bounds output memory


@dataclass
class SegmentResult:
    """What :func:`segment` returns.

    Attributes:
      labels: (H, W) uint8 label map holding the scribbles' own class values.
      probabilities: (K, H, W) float32 per-class probabilities, summing to 1 per pixel:
        the head's, and with the edge step on, the label's and the head's top class's values
        exchanged where the step relabelled a pixel, so their argmax is always ``labels``.
      uncertainty: (H, W) float32 in [0, 1]: entropy of the head's mean prediction over log K
        (the exchange leaves it as it was).
      classes: the K class values, in the order of ``probabilities``.
      timings: seconds spent per phase.
      warm_start: what a next round of strokes on this image can start from (``previous``).
      warm: whether this call started from its ``previous`` (False: it ran cold).
      steps: the optimiser steps taken (a refine stops early once its strokes are fitted).
    """

    labels: np.ndarray
    probabilities: np.ndarray
    uncertainty: np.ndarray
    classes: tuple[int, ...]
    timings: dict[str, float] = field(default_factory=dict)
    warm_start: WarmStart | None = None
    warm: bool = False
    steps: int = 0


@lru_cache(maxsize=4)
def cached_stem(weights: str, device: str) -> MobileNetV2Stem:
    """The frozen stem, loaded once per process and device (workers keep it warm)."""
    return load_stem(weights, device)


def block_counts(labels: np.ndarray, classes: int, size: tuple[int, int]) -> np.ndarray:
    """(K, h, w) counts of each class's labelled pixels inside each cell of an h x w grid.

    Training on these is the full-resolution cross-entropy over labelled pixels with the
    logits of each cell copied to the pixels it covers, at the cost of the grid alone.
    """
    height, width = labels.shape
    rows = (np.arange(height) * size[0] // height)[:, None]
    cols = (np.arange(width) * size[1] // width)[None, :]
    labelled = labels >= 0
    cell = (labels * size[0] + rows) * size[1] + cols
    counts = np.bincount(cell[labelled], minlength=classes * size[0] * size[1])
    return counts.reshape(classes, *size).astype(np.float32)


def class_weights(pixels_per_class: torch.Tensor, scheme: str) -> torch.Tensor:
    """Cross-entropy weights from the labelled pixels' class counts n_c (N = Σ n_c).

    ``paper`` is Eq. 6 as printed, w_c = n_c / N; ``inverse`` is N / (K n_c), which
    balances rare and frequent classes; ``none`` weighs every pixel alike.
    """
    if scheme == "none":
        return torch.ones_like(pixels_per_class)
    total = pixels_per_class.sum()
    if scheme == "paper":
        return pixels_per_class / total
    return total / (len(pixels_per_class) * pixels_per_class.clamp(min=1))


def working_size(height: int, width: int, max_pixels: int) -> tuple[int, int]:
    """The size to segment at: the image's own, or scaled down to at most ``max_pixels``."""
    scale = min(1.0, math.sqrt(max_pixels / (height * width)))
    return max(8, math.floor(height * scale)), max(8, math.floor(width * scale))


def shrink(image: np.ndarray, labels: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Image and class-index labels (-1 unlabeled) at ``size``; scribbles survive any shrink.

    Each cell takes the class with most scribbled pixels in it, so 1-pixel strokes stay.
    """
    if size == labels.shape:
        return image, labels
    small = np.asarray(Image.fromarray(image).resize(size[::-1], Image.Resampling.BOX))
    counts = block_counts(labels, int(labels.max()) + 1, size)
    return small, np.where(counts.sum(0) > 0, counts.argmax(0), -1)


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


def head_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The head's compute type: bfloat16 where the device runs it natively, when ``precision`` is auto."""
    if precision != "auto":
        return getattr(torch, precision)
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
    else:
        capabilities = torch.cpu.get_capabilities()
        native = capabilities.get("avx512_bf16", False) or capabilities.get("amx_bf16", False)
    return torch.bfloat16 if native else torch.float32


def make_optimiser(parameters, options: SegmentOptions) -> torch.optim.Optimizer:
    """The optimiser ``options.optimiser`` names, at ``options.lr``."""
    if options.optimiser == "sgd":
        return torch.optim.SGD(parameters, lr=options.lr, momentum=options.momentum)
    return torch.optim.Adam(parameters, lr=options.lr)


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
    previous: WarmStart | None = None,
) -> SegmentResult:
    """Segment one image from its scribbles with a freshly trained GDC head.

    Arguments:
      image: (H, W, 3) uint8 RGB, pixel values in [0, 255] (or (H, W) grey).
      scribbles: (H, W) integer label map: 0 unlabeled, each positive value one class;
        at least two classes.
      options: see :class:`SegmentOptions`; the paper's defaults when None.
      progress: called as ``progress(phase, step, total)`` as work advances.
      cancel: polled between steps; when it returns True, :class:`Cancelled` is raised.
      previous: the ``warm_start`` of an earlier result on the same image: its superpixels,
        features, head and optimiser state are reused; training at ``options.refine_lr``
        stops once the loss is below ``options.refine_stop_loss`` or after
        ``options.refine_steps`` steps, instead of ``options.steps`` at ``options.lr``;
        and ``options.refine_samples`` stochastic passes average instead of ``options.samples``.
        Ignored (a cold start) when the image or the options it depends on differ
        (:data:`gdc.warm.REUSED_WITH`).

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
    seed = options.seed if options.seed is not None else secrets.randbits(63)
    generator = torch.Generator(device=device).manual_seed(seed)

    height, width = image.shape[:2]
    full_image = image  # the edge step works at full resolution
    report("superpixels", 0, 1)
    with _timed(timings, "superpixels"):
        labels = np.where(scribbles > 0, np.searchsorted(classes, scribbles), -1)
        image, labels = shrink(image, labels, working_size(height, width, options.max_pixels))
        image_key = fingerprint(image, options)
        reuse = previous if previous is not None and previous.fingerprint == image_key else None
        segments = (
            reuse.segments
            if reuse is not None
            else superpixels(
                image,
                superpixel_size=options.superpixel_size,
                compactness=options.compactness,
                smoothing=options.superpixel_smoothing,
                shrink=options.superpixel_shrink,
            )
        )
        expanded = grow_over(labels, segments)
    check_cancel()

    report("features", 0, 1)
    with _timed(timings, "features"), torch.no_grad():
        if reuse is not None:
            features = reuse.feature_tensor(device)
        else:
            stem = cached_stem(options.weights, str(device))
            pixels = torch.tensor(image, device=device).permute(2, 0, 1)[None].float() / 255
            features = stem(pixels, stride=options.feature_stride)
            # Per-image standardisation puts every channel on the scale SGD at lr 0.01 expects.
            features = (features - features.mean((2, 3), keepdim=True)) / (features.std((2, 3), keepdim=True) + 1e-5)
    check_cancel()

    k = len(classes)
    head = GDCHead(k, conv=options.conv, width=options.width, sigma=options.sigma, generator=generator, device=device)
    counts = torch.from_numpy(block_counts(expanded, k, tuple(features.shape[-2:]))).to(device)
    targets = counts * class_weights(counts.sum((1, 2)), options.class_weights).view(k, 1, 1)
    targets /= targets.sum()
    if reuse is None:
        steps, stop_below = options.steps, 0.0
        optimiser = make_optimiser(head.parameters(), options)
    else:
        # A refine goes on training the previous head with its optimiser, at its own rate, and stops once the
        # strokes are fitted: strokes the head already agrees with take few steps, ones it contradicts more.
        steps, stop_below = options.refine_steps, options.refine_stop_loss
        reuse.load_head(head, classes)
        optimiser = make_optimiser(head.parameters(), options.model_copy(update={"lr": options.refine_lr}))
        reuse.load_optimiser(optimiser, head, classes, options.optimiser)
    # The head may compute in bfloat16; its weights, the loss and the probabilities stay float32.
    dtype = head_dtype(options.precision, device)
    mixed = dict(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32)

    context_at = head.context_cells(targets.sum(0) > 0)  # the loss reads the logits of labelled cells alone
    with _timed(timings, "optimise"):
        head.train()
        trained = 0
        while trained < steps:
            report("optimise", trained, steps)
            with torch.autocast(**mixed):
                logits = head(features, context_at=context_at)
            loss = -(targets * logits[0].float().log_softmax(0)).sum()
            if stop_below and loss.item() < stop_below:
                break
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            trained += 1
            check_cancel()
        report("optimise", steps, steps)

    samples = (options.refine_samples if reuse is not None else options.samples) if head.stochastic else 1
    with _timed(timings, "sample"), torch.no_grad():
        head.eval()
        mean = torch.zeros(k, *features.shape[-2:], device=device)
        for done in range(0, samples, SAMPLE_CHUNK):
            report("sample", done, samples)
            chunk = min(SAMPLE_CHUNK, samples - done)
            with torch.autocast(**mixed):
                logits = head(features, samples=chunk)
            mean += logits.float().softmax(1).sum(0)
            check_cancel()
        report("sample", samples, samples)
        mean /= samples

    # Full resolution, a band at a time: memory beyond the outputs stays bounded.
    probabilities = np.empty((k, height, width), dtype=np.float32)
    uncertainty = np.empty((height, width), dtype=np.float32)
    labels = np.empty((height, width), dtype=np.uint8)
    class_values = torch.as_tensor(classes, device=device)
    with _timed(timings, "upsample"):
        for rows, band in upsample_bands(mean, height, width):
            entropy = -(band * band.clamp(min=1e-12).log()).sum(0) / math.log(k)
            probabilities[:, rows] = band.cpu().numpy()
            uncertainty[rows] = entropy.clamp(0, 1).cpu().numpy()
            labels[rows] = class_values[band.argmax(0)].to(torch.uint8).cpu().numpy()

    if options.edges:
        report("edges", 0, 1)
        with _timed(timings, "edges"):
            marks = np.where(scribbles > 0, np.searchsorted(classes, scribbles), -1).astype(np.int16)
            refined = edge_aware_labels(full_image, probabilities, marks, options.edge_strength)
            make_consistent(probabilities, refined)
            labels = np.asarray(classes, dtype=np.uint8)[refined]
        report("edges", 1, 1)

    return SegmentResult(
        labels=labels,
        probabilities=probabilities,
        uncertainty=uncertainty,
        classes=tuple(int(c) for c in classes),
        timings=timings,
        warm_start=WarmStart.capture(image_key, classes, features, segments, head, optimiser, options.optimiser),
        warm=reuse is not None,
        steps=trained,
    )
