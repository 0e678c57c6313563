"""``segment()``: an image and its scribbles in, a label map with probabilities out.

The engine's one public entry point: a numpy front over torch steps, as segment-anything's
predictor is. It reads as the pipeline, one named step each, and knows nothing of files, HTTP
or queues; the CLI and the worker call it.

    scribbles   gdc/scribbles.py   class indices at the working size (shrink, working_size)
    superpixels gdc/scribbles.py   SLIC superpixels, the scribbles grown over them
    features    gdc/features.py    the frozen stem's standardised features
    train       gdc/training.py    a GDC head (gdc/net.py) fitted to the grown scribbles, a step on a batch of
                                   their cells (gdc/batches.py) computed on the ring around it (gdc/cells.py)
    sample      gdc/sampling.py    its mean prediction over random offsets
    result      gdc/sampling.py    brought to full resolution, a band at a time
    edges       gdc/labelling.py   relabelled along the image's edges (when on)

A refine (``previous``) reuses the superpixels, features, head and optimiser (gdc/warm.py).
"""
from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property, partial

import numpy as np
import torch

from .batches import LabelledCells
from .errors import InputError
from .features import stem_features
from .hooks import CancelHook, Hooks, ProgressHook
from .inputs import check_image, scribble_classes
from .labelling import edge_aware_labels, make_consistent
from .net import GDCHead
from .options import SegmentOptions
from .prompts import BACKGROUND, OBJECT, Box, Click, box_options, colour_cut_from, given_labels, prompt_labels
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
    upsampling, 0.7 s of a 12 MP photo on machine C, 1.5 s on D's slow state
    (benchmarks/RESULTS.md, 10. Large photos).
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
        features, head and optimiser state are reused, and the round runs under
        :meth:`SegmentOptions.for_refine` (``refine_steps``, ``refine_stop_loss``, ``refine_lr``, ...).
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
    marks = class_indices(scribbles, classes)
    hooks = Hooks(progress, cancel)
    device = torch.device(options.device)

    working = working_step(image, marks, options, previous, hooks)
    features = features_step(working, options, device, hooks)
    head, optimiser, steps = train_step(working, features, classes, options, device, hooks)
    mean = sample_step(head, features, working.round_options, device, hooks)
    top, details = labels_step(image, working.image, marks, mean, options, hooks)
    return SegmentResult(
        labels=np.asarray(classes, dtype=np.uint8)[top],
        details=details,
        classes=tuple(int(c) for c in classes),
        timings=hooks.timings,
        warm_start=WarmStart.capture(
            working.fingerprint, classes, features, working.segments, head, optimiser, options.optimiser
        ),
        warm=working.reuse is not None,
        steps=steps,
    )


def segment_prompted(
    image: np.ndarray,
    scribbles: np.ndarray | None = None,
    options: SegmentOptions | None = None,
    *,
    box: Box | None = None,
    clicks: Sequence[Click] = (),
    progress: ProgressHook | None = None,
    cancel: CancelHook | None = None,
    previous: WarmStart | None = None,
    threads: int | None = None,
) -> SegmentResult:
    """:func:`segment` from a box, clicks and scribbles, any of them (:mod:`gdc.prompts`): the object is class 1.

    A refine sends every click so far with the new ones, as a scribble refine sends every stroke. ``threads`` as
    for :func:`segment`.
    A box ends as grabCut does: its colour iteration (:func:`gdc.prompts.colour_cut_from`), here started from the
    head's object, re-estimates what the box's colour guesses began, where the head, which keeps every guess it
    was given, cannot (benchmarks/RESULTS.md, 13. Box and click prompts). Its labels replace the head's, whose
    probabilities are exchanged to agree, as the edge step's are; ``timings["colour"]`` is its time, and
    ``timings["prompts"]`` the labels' (a box's seeds, mostly). A box's round runs under
    :func:`gdc.prompts.box_options`.
    """
    if box is None and not clicks:
        if scribbles is None:
            raise InputError("give scribbles, a box or points")
        return segment(image, scribbles, options, progress=progress, cancel=cancel, previous=previous, threads=threads)
    image = check_image(np.asarray(image))
    scribbles = None if scribbles is None else np.asarray(scribbles)
    clicks = list(clicks)
    if box is not None:
        options = box_options(options or SegmentOptions())
    started = time.perf_counter()
    labels = prompt_labels(image, box, clicks, scribbles)
    prompting = time.perf_counter() - started
    result = segment(image, labels, options, progress=progress, cancel=cancel, previous=previous, threads=threads)
    result.timings = {"prompts": prompting, **result.timings}
    if box is None or result.classes != (OBJECT, BACKGROUND):
        return result
    started = time.perf_counter()
    head_object = result.labels == OBJECT
    cut = colour_cut_from(image, head_object, given_labels(image.shape[:2], box, clicks, scribbles))
    result.timings["colour"] = time.perf_counter() - started
    if cut is head_object:
        return result
    top = np.where(cut, 0, 1).astype(np.uint8)  # class indices of (OBJECT, BACKGROUND)
    result.labels = np.where(cut, OBJECT, BACKGROUND).astype(np.uint8)
    result.details = partial(_relabelled_details, result.details, top)
    return result


def _relabelled_details(details, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``details()``'s (probabilities, uncertainty), the probabilities exchanged to agree with ``labels`` (class
    indices) as the edge step's are."""
    probabilities, uncertainty = details()
    make_consistent(probabilities, labels, probabilities.argmax(0))
    return probabilities, uncertainty


@dataclass(frozen=True)
class Working:
    """The image at its working size and what the steps after reuse from a warm start.

    Attributes:
      image: (h, w, 3) uint8, the image shrunk to at most ``max_pixels``.
      grown: (h, w) class indices, -1 unlabeled: the scribbles grown over the superpixels.
      segments: (h, w) SLIC superpixel ids, None when off.
      fingerprint: :func:`gdc.warm.fingerprint` of the working image and options.
      reuse: the warm start this round goes on from, None for a cold round.
      round_options: the options this round runs under: the refine ones for a warm round.
    """

    image: np.ndarray
    grown: np.ndarray
    segments: np.ndarray | None
    fingerprint: str
    reuse: WarmStart | None
    round_options: SegmentOptions


def working_step(
    image: np.ndarray, marks: np.ndarray, options: SegmentOptions, previous: WarmStart | None, hooks: Hooks
) -> Working:
    """The ``superpixels`` phase: the image and its (H, W) class-index ``marks`` at the working size, the
    superpixels (reused from ``previous`` when it is of this image and options) and the marks grown over them."""
    hooks.report("superpixels", 0, 1)
    with hooks.timed("superpixels"):
        small_image, small_marks = shrink(image, marks, working_size(*image.shape[:2], options.max_pixels))
        image_key = fingerprint(small_image, options)
        reuse = previous if previous is not None and previous.fingerprint == image_key else None
        segments = reuse.segments if reuse is not None else superpixels_step(small_image, options)
        grown = grow_over(small_marks, segments)
    hooks.check_cancel()
    round_options = options.for_refine() if reuse is not None else options
    return Working(small_image, grown, segments, image_key, reuse, round_options)


def features_step(working: Working, options: SegmentOptions, device: torch.device, hooks: Hooks) -> torch.Tensor:
    """The ``features`` phase: (1, C, h', w') float32 stem features of the working image, or the warm start's."""
    hooks.report("features", 0, 1)
    with hooks.timed("features"):
        if working.reuse is not None:
            features = working.reuse.feature_tensor(device)
        else:
            features = stem_features(working.image, options.weights, options.feature_stride, device)
    hooks.check_cancel()
    return features


def train_step(
    working: Working, features: torch.Tensor, classes, options: SegmentOptions, device: torch.device, hooks: Hooks
) -> tuple[GDCHead, torch.optim.Optimizer, int]:
    """The ``optimise`` phase: a head for ``classes`` (fresh, or the warm start's) trained on the grown scribbles
    under the round's options; the head, its optimiser and the steps taken."""
    seed = options.seed if options.seed is not None else secrets.randbits(63)
    generator = torch.Generator(device=device).manual_seed(seed)
    head, optimiser = start_head(classes, working.round_options, generator, device, working.reuse)
    targets = cell_targets(working.grown, len(classes), tuple(features.shape[-2:]), options.class_weights, device)
    with hooks.timed("optimise"):
        cells = LabelledCells.of(targets, working.round_options.train_cells)
        steps = train_head(
            head, optimiser, features, cells, steps=working.round_options.steps,
            stop_below=working.round_options.stop_loss, generator=generator,
            dtype=head_dtype(options.precision, device), hooks=hooks,
        )
    return head, optimiser, steps


def sample_step(
    head: GDCHead, features: torch.Tensor, options: SegmentOptions, device: torch.device, hooks: Hooks
) -> torch.Tensor:
    """The ``sample`` phase: (K, h', w') float32 mean class probabilities over ``options.samples`` offset draws
    (one pass for a head without random offsets)."""
    with hooks.timed("sample"):
        samples = options.samples if head.stochastic else 1
        return sample_mean(head, features, samples, head_dtype(options.precision, device), hooks)


def labels_step(
    image: np.ndarray, small_image: np.ndarray, marks: np.ndarray, mean: torch.Tensor, options: SegmentOptions,
    hooks: Hooks,
) -> tuple[np.ndarray, Callable[[], tuple[np.ndarray, np.ndarray]]]:
    """The ``upsample`` and ``edges`` phases: (H, W) uint8 class indices at full resolution, and what computes the
    result's (probabilities, uncertainty).

    Above the working size with the edge step on, the labels are made at the working size from the head's
    grid, then their borders at full size, which read the head's probabilities in their band alone: the
    rest are brought to full size when asked for.
    """
    height, width = image.shape[:2]
    if options.edges and small_image.shape != image.shape:
        hooks.report("edges", 0, 1)
        with hooks.timed("edges"):
            working = (small_image, resized(mean, *small_image.shape[:2]).cpu().numpy())
            top = edge_aware_labels(
                image, partial(resized_at, mean, height, width), marks, options.edge_strength, working=working
            )
        hooks.report("edges", 1, 1)
        return top, partial(_consistent_details, mean, top, hooks.timings, torch.get_num_threads())
    with hooks.timed("upsample"):
        probabilities, uncertainty, top = full_resolution(mean, height, width)
    if options.edges:
        hooks.report("edges", 0, 1)
        with hooks.timed("edges"):
            top = edges_step(image, probabilities, top, marks, options.edge_strength)
        hooks.report("edges", 1, 1)
    return top, partial(_computed, probabilities, uncertainty)


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
