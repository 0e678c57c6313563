"""``segment()``: an image and its scribbles in, a label map with probabilities out.

The engine's one public entry point: a numpy front over torch steps, as segment-anything's
predictor is. It reads as the pipeline, one named step each, and knows nothing of files, HTTP
or queues; the CLI and the worker call it.

    scribbles   gdc/scribbles.py   class indices at the working size (shrink, working_size)
    superpixels gdc/scribbles.py   SLIC superpixels, the scribbles grown over them
    features    gdc/features.py    the frozen stem's standardised features
    train       gdc/training.py    a GDC head (gdc/net.py) fitted to the grown scribbles
    sample      gdc/sampling.py    its mean prediction over random offsets
    result      gdc/sampling.py    brought to full resolution, a band at a time
    edges       gdc/labelling.py   relabelled along the image's edges (when on)

A refine (``previous``) reuses the superpixels, features, head and optimiser (gdc/warm.py).
"""
from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, partial

import numpy as np
import torch

from .features import stem_features
from .hooks import CancelHook, Hooks, ProgressHook
from .inputs import check_image, scribble_classes
from .labelling import edge_aware_labels, make_consistent
from .options import SegmentOptions
from .sampling import full_resolution, resized, resized_at, sample_mean
from .scribbles import class_indices, grow_over, shrink, superpixels, working_size
from .torch_threads import thread_policy, with_thread_policy
from .training import cell_targets, head_dtype, start_head, train_head
from .warm import WarmStart, fingerprint


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
      timings: seconds spent per phase; ``upsample`` comes when ``probabilities`` are first read, for a
        result whose probabilities wait until then (below).
      warm_start: what a next round of strokes on this image can start from (``previous``).
      warm: whether this call started from its ``previous`` (False: it ran cold).
      steps: the optimiser steps taken (a refine stops early once its strokes are fitted).
      details: computes (``probabilities``, ``uncertainty``) when first read.

    Above the working size with the edge step on, the labels read the head's probabilities only in
    the band along their borders, so the full-resolution probabilities and uncertainty wait until
    first read: whoever wants the mask first (the worker stores it first) has it sooner by that
    upsampling, 1.0-1.3 s of a 12 MP photo on the 2-core CPU (benchmarks/RESULTS.md, 16).
    """

    labels: np.ndarray
    classes: tuple[int, ...]
    details: Callable[[], tuple[np.ndarray, np.ndarray]] = field(repr=False)
    timings: dict[str, float] = field(default_factory=dict)
    warm_start: WarmStart | None = None
    warm: bool = False
    steps: int = 0

    @cached_property
    def _computed_details(self) -> tuple[np.ndarray, np.ndarray]:
        return self.details()

    @property
    def probabilities(self) -> np.ndarray:
        return self._computed_details[0]

    @property
    def uncertainty(self) -> np.ndarray:
        return self._computed_details[1]


@with_thread_policy
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
        (:func:`gdc.options.reused_options`).
      threads: torch CPU threads to run on (keyword only). Unset: the count the process chose with
        :func:`gdc.torch_threads.set_threads` (the CLI's ``--threads``, a worker's ``GDC_WORKER_THREADS``),
        else ``gdc.threads.DEFAULT_THREADS`` (1). The caller's ``torch.get_num_threads()`` is put back
        on return.

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
    hooks = Hooks(progress, cancel)
    device = torch.device(options.device)
    seed = options.seed if options.seed is not None else secrets.randbits(63)
    generator = torch.Generator(device=device).manual_seed(seed)
    height, width = image.shape[:2]
    marks = class_indices(scribbles, classes)

    hooks.report("superpixels", 0, 1)
    with hooks.timed("superpixels"):
        small_image, small_marks = shrink(image, marks, working_size(height, width, options.max_pixels))
        image_key = fingerprint(small_image, options)
        reuse = previous if previous is not None and previous.fingerprint == image_key else None
        segments = reuse.segments if reuse is not None else superpixels_step(small_image, options)
        grown = grow_over(small_marks, segments)
    hooks.check_cancel()

    hooks.report("features", 0, 1)
    with hooks.timed("features"):
        features = (
            reuse.feature_tensor(device)
            if reuse is not None
            else stem_features(small_image, options.weights, options.feature_stride, device)
        )
    hooks.check_cancel()

    head, optimiser = start_head(classes, options, generator, device, reuse)
    targets = cell_targets(grown, len(classes), tuple(features.shape[-2:]), options.class_weights, device)
    dtype = head_dtype(options.precision, device)
    steps, stop_below = (options.steps, 0.0) if reuse is None else (options.refine_steps, options.refine_stop_loss)
    with hooks.timed("optimise"):
        trained = train_head(head, optimiser, features, targets, steps=steps, stop_below=stop_below, dtype=dtype, hooks=hooks)

    samples = (options.refine_samples if reuse is not None else options.samples) if head.stochastic else 1
    with hooks.timed("sample"):
        mean = sample_mean(head, features, samples, dtype, hooks)

    if options.edges and small_image.shape != image.shape:
        # Labelled at the working size from the head's own grid, then its borders at full size, which read the
        # head's probabilities in their band alone: the rest are brought to full size when asked for.
        hooks.report("edges", 0, 1)
        with hooks.timed("edges"):
            working = (small_image, resized(mean, *small_image.shape[:2]).cpu().numpy())
            top = edge_aware_labels(
                image, partial(resized_at, mean, height, width), marks, options.edge_strength, working=working
            )
        hooks.report("edges", 1, 1)
        details = partial(_consistent_details, mean, top, hooks.timings, torch.get_num_threads())
    else:
        with hooks.timed("upsample"):
            probabilities, uncertainty, top = full_resolution(mean, height, width)
        if options.edges:
            hooks.report("edges", 0, 1)
            with hooks.timed("edges"):
                top = edges_step(image, probabilities, top, marks, options.edge_strength)
            hooks.report("edges", 1, 1)
        details = partial(_computed, probabilities, uncertainty)
    labels = np.asarray(classes, dtype=np.uint8)[top]

    return SegmentResult(
        labels=labels,
        details=details,
        classes=tuple(int(c) for c in classes),
        timings=hooks.timings,
        warm_start=WarmStart.capture(image_key, classes, features, segments, head, optimiser, options.optimiser),
        warm=reuse is not None,
        steps=trained,
    )


def superpixels_step(image: np.ndarray, options: SegmentOptions) -> np.ndarray | None:
    """(h, w) SLIC superpixel ids of the (h, w, 3) working-size image, as the options set them; None when off."""
    return superpixels(
        image,
        superpixel_size=options.superpixel_size,
        compactness=options.compactness,
        smoothing=options.superpixel_smoothing,
        shrink=options.superpixel_shrink,
    )


def edges_step(image: np.ndarray, probabilities: np.ndarray, top: np.ndarray, marks: np.ndarray, strength: float):
    """(H, W) uint8 class indices whose borders follow the image's edges, for an image at its working size.

    ``marks`` are the scribbles as (H, W) class indices (-1 unlabeled), kept as they are;
    ``probabilities`` (K, H, W) are exchanged in place to agree with the new labels, ``top``
    being their argmax before.
    """
    refined = edge_aware_labels(image, probabilities, marks, strength)
    make_consistent(probabilities, refined, top)
    return refined


def _computed(probabilities: np.ndarray, uncertainty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Details computed with the labels (a partial of this, unlike a closure, pickles with its result)."""
    return probabilities, uncertainty


def _consistent_details(
    mean: torch.Tensor, labels: np.ndarray, timings: dict[str, float], threads: int
) -> tuple[np.ndarray, np.ndarray]:
    """A shrunk image's full-resolution (probabilities, uncertainty), made to agree with its edge-aware ``labels``
    (class indices); run on the torch ``threads`` its :func:`segment` ran on, and timed as its ``upsample``."""
    started = time.perf_counter()
    with thread_policy(threads):
        probabilities, uncertainty, top = full_resolution(mean, *labels.shape)
    make_consistent(probabilities, labels, top)
    timings["upsample"] = time.perf_counter() - started
    return probabilities, uncertainty
