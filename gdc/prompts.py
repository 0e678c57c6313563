"""Box and click prompts turned into the label map the engine trains on.

A prompt names one object, as grabCut's rectangle and the click interactors do: the object is
class :data:`OBJECT` (1) and everything else :data:`BACKGROUND` (2), the GrabCut data's scribble
values. Scribbles given beside a prompt keep their own values and win where they are drawn.

- A **box** (x0, y0, x1, y1; pixels, x1 and y1 excluded) holds the object: what lies beyond it by
  more than a small margin is background. Inside it, two colour cues give weak object labels, so the
  head has both classes to learn from (:func:`box_object_seeds`); the head's object then starts
  grabCut's colour iteration (:func:`colour_cut_from`), whose cut is the answer (section 13 of
  benchmarks/RESULTS.md measures the choices).
- A **click** (x, y, positive) is a disc a small fraction of the image's side across: object where
  positive, background where not. Clicks are painted last, so they correct the box's guesses.

The web API checks prompts against the image's size from its header (:func:`check_prompts`, numpy
and Pillow only); the worker, which decodes the image, builds the labels (:func:`prompt_labels`),
the box's seeds with the engine's scipy and graph cut, imported there.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from .errors import InputError

if TYPE_CHECKING:
    from .options import SegmentOptions

OBJECT, BACKGROUND = 1, 2
# A click becomes a disc this fraction of the image's shorter side across (at least 3 px).
CLICK_DISC_FRACTION = 0.02
# The box's outside starts this many disc diameters beyond its edges: a box drawn tight may clip the object.
BOX_MARGIN_DISCS = 1.0
# The core whose colours may seed the object: the box shrunk by this fraction of its size on each side.
BOX_CORE_INSET = 0.2
# A core pixel seeds the object when its colour is at least this much likelier inside the box than outside:
# 8 against 2 and 4, +2.5 and +0.8 mIoU on GrabCut-50's first 15 boxes (16 lost 2.5).
OBJECT_COLOUR_RATIO = 8.0
# The grabCut-like cut whose interior also seeds the object: rounds of colour histograms re-estimated from
# the cut before, each cut the edge step's graph cut (gdc.labelling) at this strength, the interior being the
# pixels at least this fraction of the object's greatest depth from its border (section 13 of RESULTS.md).
COLOUR_CUT_ROUNDS = 3
COLOUR_CUT_STRENGTH = 50.0
COLOUR_CUT_DEPTH = 0.3
COLOUR_BITS = 4  # colour histograms of 16 levels per channel
# The box's last step (gdc.engine.segment_prompted): grabCut's iteration started from the head's object, each
# round colour mixtures of this many Gaussians (grabCut's 5) per side fitted to the cut before, then the edge
# step's graph cut at COLOUR_CUT_STRENGTH: 90.6 mIoU on GrabCut-50 against the head's 84.7 and the second round's
# 85.5 that it replaced (section 13 of RESULTS.md). The mixtures are fitted to and read at the image's colours quantised to
# 32 levels per channel (each level's mean colour, weighted by its count), not at each pixel: 4x faster.
MIXTURE_COMPONENTS = 5
MIXTURE_ROUNDS = 3
MIXTURE_KMEANS_STEPS = 8
MIXTURE_VARIANCE_FLOOR = 4.0  # added to each covariance's diagonal (RGB units²): a 32-level cell's spread
# The colour cut keeps the head's object when it leaves less than this fraction of it: it found no colours of
# its own there (two GrabCut photos, whose objects share the background's colours, lost 33 and 41 mIoU).
MIXTURE_KEEP_FRACTION = 0.25
# A box labels its whole outside as background, over which a training step's draws spread, each read with a ring of
# its own: twice a scribble batch's cells at 256 draws. Half the draws, and labels not grown over superpixels (the
# box's are regions already), scored the same on GrabCut-50 (3 seeds: 90.48 against 90.49) in less time; so did half
# the samples, the head's answer being only the colour cut's start (90.47) (section 13 of RESULTS.md).
BOX_FRACTION = 0.5  # of the drawn cells and of the samples


@dataclass(frozen=True)
class Box:
    x0: int
    y0: int
    x1: int
    y1: int


@dataclass(frozen=True)
class Click:
    x: float
    y: float
    positive: bool


def parse_box(text: str) -> Box:
    """A box from ``"x0,y0,x1,y1"`` (integers, pixels)."""
    parts = text.replace(" ", "").split(",")
    try:
        x0, y0, x1, y1 = (int(part) for part in parts)
    except ValueError:
        raise InputError(f"box must be four integers x0,y0,x1,y1; got {text!r}") from None
    return Box(x0, y0, x1, y1)


def parse_clicks(text: str) -> list[Click]:
    """Clicks from JSON ``[[x, y, label], ...]``: label 1 on the object, 0 off it."""
    try:
        rows = json.loads(text)
    except json.JSONDecodeError:
        raise InputError(f"points must be JSON [[x, y, label], ...]; got {text[:80]!r}") from None
    return clicks_from(rows)


def clicks_from(rows) -> list[Click]:
    """Clicks from ``[[x, y, label], ...]`` already decoded (label 1 on the object, 0 off it)."""
    if not isinstance(rows, list):
        raise InputError("points must be a list [[x, y, label], ...]")
    clicks = []
    for row in rows:
        if not (isinstance(row, (list, tuple)) and len(row) == 3 and all(_is_number(value) for value in row)):
            raise InputError(f"each point must be [x, y, label] with numbers; got {row!r}")
        x, y, label = row
        if label not in (0, 1):
            raise InputError(f"a point's label must be 1 (on the object) or 0 (off it); got {label!r}")
        clicks.append(Click(float(x), float(y), bool(label)))
    return clicks


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def check_prompts(width: int, height: int, box: Box | None, clicks: list[Click]) -> None:
    """Refuse a box or click that does not fit a ``width`` x ``height`` image, naming it."""
    if box is not None:
        if box.x1 <= box.x0 or box.y1 <= box.y0:
            raise InputError(f"box {_text(box)} is empty or inverted: it needs x0 < x1 and y0 < y1")
        if box.x0 < 0 or box.y0 < 0 or box.x1 > width or box.y1 > height:
            raise InputError(f"box {_text(box)} is not inside the {width}x{height} image")
        margin = box_margin(width, height)
        grown_over_all = box.x0 <= margin and box.y0 <= margin and box.x1 + margin >= width and box.y1 + margin >= height
        if grown_over_all and all(click.positive for click in clicks):
            raise InputError(
                f"box covers the whole image once grown by its {margin}-pixel margin: nothing is left outside it as"
                " background (draw it tighter, or click off the object)"
            )
    for click in clicks:
        if not (0 <= click.x < width and 0 <= click.y < height):
            raise InputError(f"point ({click.x:g}, {click.y:g}) is off the {width}x{height} image")


def _text(box: Box) -> str:
    return f"{box.x0},{box.y0},{box.x1},{box.y1}"


def click_radius(width: int, height: int) -> float:
    """The radius in pixels of the disc a click stands for."""
    return max(1.5, CLICK_DISC_FRACTION * min(width, height) / 2)


def draw_discs(labels: np.ndarray, points, value: int) -> None:
    """Paint a disc of class ``value`` at each (x, y) of ``points`` into ``labels`` (H, W) uint8, in place."""
    height, width = labels.shape
    radius = click_radius(width, height)
    canvas = Image.fromarray(labels)
    draw = ImageDraw.Draw(canvas)
    for x, y in points:
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=value)
    labels[...] = np.asarray(canvas)


def box_margin(width: int, height: int) -> int:
    """How far beyond a box its background starts, in pixels."""
    return round(BOX_MARGIN_DISCS * 2 * click_radius(width, height))


def outside_box(box: Box, width: int, height: int) -> np.ndarray:
    """(H, W) bool: what lies beyond ``box`` grown by the margin, background for a box prompt."""
    margin = box_margin(width, height)
    outside = np.ones((height, width), bool)
    outside[max(0, box.y0 - margin) : box.y1 + margin, max(0, box.x0 - margin) : box.x1 + margin] = False
    return outside


def box_object_seeds(image: np.ndarray, box: Box, outside: np.ndarray) -> np.ndarray:
    """(H, W) bool: weak object labels inside ``box``, where either of two colour cues is sure of the object.

    - The box's core pixels whose colour is ``OBJECT_COLOUR_RATIO`` times likelier in the box than
      ``outside``: precise where the object's colours are its own, but few where it shares them.
    - The interior of a grabCut-like colour cut (:func:`_colour_cut`): whole where the object stands out
      as a region, though its colours recur beyond the box.

    Falls back to the core's central disc when neither finds anything (an object coloured like its
    surroundings), so the head always sees both classes.
    """
    height, width = image.shape[:2]
    bins = _colour_bins(image)
    inside = np.zeros((height, width), bool)
    inside[box.y0 : box.y1, box.x0 : box.x1] = True
    likelier = (_colour_histogram(bins, inside) / _colour_histogram(bins, outside) >= OBJECT_COLOUR_RATIO)[bins]
    core = np.zeros((height, width), bool)
    inset_x, inset_y = round(BOX_CORE_INSET * (box.x1 - box.x0)), round(BOX_CORE_INSET * (box.y1 - box.y0))
    core[box.y0 + inset_y : box.y1 - inset_y, box.x0 + inset_x : box.x1 - inset_x] = True
    seeds = (core & likelier) | deep_interior(_colour_cut(image, bins, outside), COLOUR_CUT_DEPTH)
    if not seeds.any():
        centre = np.zeros((height, width), np.uint8)
        draw_discs(centre, [((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2)], 1)
        seeds = centre.astype(bool)
    return seeds


def _colour_cut(image: np.ndarray, bins: np.ndarray, outside: np.ndarray) -> np.ndarray:
    """(H, W) bool object of GrabCut's iteration (Rother et al., 2004), colour histograms in place of its GMMs:
    the object's and the background's colours (at first, those within the box and its margin and those
    beyond) give each pixel's object posterior, a graph cut with ``outside`` held background relabels the
    pixels, and the histograms are refilled from its two sides, ``COLOUR_CUT_ROUNDS`` times. Each cut is the
    edge step's coarse pass alone (``borders=False``): the seeds are the cut's deep interior, far from its
    borders."""
    from .labelling import edge_aware_labels

    held = np.where(outside, 1, -1)  # class indices: 1 the background, -1 free
    cut = ~outside
    terms = _image_terms(image)
    for _ in range(COLOUR_CUT_ROUNDS):
        object_likelihood = _colour_histogram(bins, cut)[bins]
        posterior = object_likelihood / (object_likelihood + _colour_histogram(bins, ~cut)[bins])
        probabilities = np.stack([posterior, 1 - posterior]).astype(np.float32)
        cut = edge_aware_labels(
            image, probabilities, held, COLOUR_CUT_STRENGTH, colour_weight=0, borders=False, terms=terms
        ) == 0
    return cut


def _image_terms(image: np.ndarray):
    """The edge step's :class:`gdc.labelling.ImageTerms` of ``image`` for its rounds on it; None above the
    edge step's MAX_PIXELS, where each labels its own working copy."""
    from .labelling import MAX_PIXELS, ImageTerms

    return ImageTerms.of(image) if image.shape[0] * image.shape[1] <= MAX_PIXELS else None


def deep_interior(region: np.ndarray, fraction: float) -> np.ndarray:
    """The pixels of ``region`` (H, W) bool at least ``fraction`` of its greatest depth from its border."""
    from scipy.ndimage import distance_transform_edt

    depth = distance_transform_edt(region)
    return region & (depth >= fraction * depth.max())


def _colour_histogram(bins: np.ndarray, where: np.ndarray) -> np.ndarray:
    """The colour distribution of the pixels ``where``, add-one smoothed: a colour never seen there is rare,
    not impossible."""
    size = 1 << (3 * COLOUR_BITS)
    return (np.bincount(bins[where], minlength=size) + 1) / (np.count_nonzero(where) + size)


def _colour_bins(image: np.ndarray) -> np.ndarray:
    top = (image >> (8 - COLOUR_BITS)).astype(np.int64)
    return (top[..., 0] << (2 * COLOUR_BITS)) | (top[..., 1] << COLOUR_BITS) | top[..., 2]


def prompt_labels(
    image: np.ndarray,
    box: Box | None = None,
    clicks: list[Click] = (),
    scribbles: np.ndarray | None = None,
    *,
    object_seeds: np.ndarray | None = None,
) -> np.ndarray:
    """The (H, W) uint8 label map a box and clicks stand for, over ``scribbles`` if given (0 unlabelled).

    ``object_seeds``: (H, W) bool object labels within the box in place of :func:`box_object_seeds`'
    guesses (a caller's own, say from an earlier result).

    Raises:
      InputError: the prompts do not fit the image, or leave the engine fewer than two classes.
    """
    height, width = image.shape[:2]
    check_prompts(width, height, box, list(clicks))
    labels = given_labels((height, width), box, clicks, scribbles)
    if box is not None:
        outside = outside_box(box, width, height)
        seeds = box_object_seeds(image, box, outside) if object_seeds is None else object_seeds & ~outside
        labels[seeds & (labels == 0)] = OBJECT  # clicks and scribbles win over the guesses
    _check_two_classes(np.unique(labels[labels > 0]).tolist())
    return labels


def box_options(options: SegmentOptions) -> SegmentOptions:
    """``options`` as a box prompt runs: ``BOX_FRACTION`` of the drawn cells a step (all still all) and of the
    samples, no superpixels."""
    draws = options.train_cells and max(1, round(options.train_cells * BOX_FRACTION))
    samples = max(1, round(options.samples * BOX_FRACTION))
    return options.model_copy(update={"train_cells": draws, "samples": samples, "superpixel_size": 0})


def prompted_classes(box: Box | None, clicks, scribbled) -> list[int]:
    """The sorted class values a box, clicks and the ``scribbled`` values name, for a caller without the image (the
    web API); :func:`prompt_labels` finds the same from the labels themselves.

    Raises:
      InputError: fewer than two classes.
    """
    named = {OBJECT, BACKGROUND} if box is not None else {OBJECT if click.positive else BACKGROUND for click in clicks}
    classes = sorted(named | set(scribbled))
    _check_two_classes(classes)
    return classes


def _check_two_classes(classes: list[int]) -> None:
    if len(classes) < 2:
        raise InputError("the prompts name only one class: add a box, or a click off the object (label 0)")


def given_labels(shape: tuple[int, int], box: Box | None, clicks=(), scribbles: np.ndarray | None = None) -> np.ndarray:
    """(H, W) uint8: what the prompts say for certain, without the box's guesses: background beyond the box and
    its margin, the clicks' discs, then the scribbles where drawn (0 elsewhere). Unchecked."""
    height, width = shape
    labels = np.zeros((height, width), np.uint8)
    if box is not None:
        labels[outside_box(box, width, height)] = BACKGROUND
    draw_discs(labels, [(click.x, click.y) for click in clicks if not click.positive], BACKGROUND)
    draw_discs(labels, [(click.x, click.y) for click in clicks if click.positive], OBJECT)
    if scribbles is not None:
        drawn = scribbles > 0
        labels[drawn] = scribbles[drawn]
    return labels


def colour_cut_from(
    image: np.ndarray, start: np.ndarray, given: np.ndarray, *, rounds: int = MIXTURE_ROUNDS,
    keep: float = MIXTURE_KEEP_FRACTION,
) -> np.ndarray:
    """(H, W) bool: the object of grabCut's iteration (Rother et al., 2004) started from ``start`` (H, W) bool.

    ``rounds`` times: Gaussian mixtures of the object's and the background's colours, fitted to the cut
    before (:func:`_mixture`), give each pixel's object posterior, and the edge step's graph cut
    (gdc.labelling, λ ``COLOUR_CUT_STRENGTH``, without its own colour model) relabels the pixels, those of
    ``given`` (:func:`given_labels`: OBJECT, BACKGROUND or 0 free) held; a cut that only feeds the next
    round's mixtures is its coarse pass alone (``borders=False``). ``start`` itself when the cut leaves
    less than ``keep`` of it. Above the edge step's MAX_PIXELS all rounds but the last run on a copy of that
    size, box-filtered (a 2.5 MP photo's cut: 1.3 s in full).
    """
    from .labelling import MAX_PIXELS, edge_aware_labels

    height, width = start.shape
    cut = start
    if height * width > MAX_PIXELS and rounds > 1:  # all rounds but the last on a copy of at most MAX_PIXELS
        scale = (MAX_PIXELS / (height * width)) ** 0.5
        size = (max(1, int(width * scale)), max(1, int(height * scale)))
        small = colour_cut_from(
            np.asarray(Image.fromarray(image).resize(size, Image.BOX)), _resized_mask(start, size),
            np.asarray(Image.fromarray(given).resize(size, Image.NEAREST)), rounds=rounds - 1, keep=0,
        )
        cut, rounds = _resized_mask(small, (width, height)), 1
    held = np.select([given == OBJECT, given == BACKGROUND], [0, 1], -1)
    colours, index = _quantised_colours(image)
    terms = _image_terms(image)
    for round_ in range(rounds):
        counts = [np.bincount(index[side], minlength=len(colours)).astype(np.float64) for side in (cut, ~cut)]
        if not all(count.any() for count in counts):
            break
        object_, background = (_log_likelihood(colours, _mixture(colours, count)) for count in counts)
        posterior = (1 / (1 + np.exp(np.clip(background - object_, -50, 50))))[index]
        probabilities = np.stack([posterior, 1 - posterior]).astype(np.float32)
        last = round_ == rounds - 1
        cut = edge_aware_labels(
            image, probabilities, held, COLOUR_CUT_STRENGTH, colour_weight=0, borders=last, terms=terms
        ) == 0
    if np.count_nonzero(cut) < keep * np.count_nonzero(start):
        return start
    return cut


def _resized_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) bool ``mask`` brought to ``size`` (w, h), nearest."""
    return np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST))


def _quantised_colours(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(colours, index): the mean RGB (n, 3) float64 of each 32-level colour cell the image holds, and each
    pixel's cell (H, W)."""
    top = (image >> 3).astype(np.int64)
    cell = ((top[..., 0] << 10) | (top[..., 1] << 5) | top[..., 2]).reshape(-1)
    counts = np.bincount(cell, minlength=1 << 15)
    held = np.flatnonzero(counts)
    renumbered = np.zeros(1 << 15, np.int64)
    renumbered[held] = np.arange(len(held))
    index = renumbered[cell]
    flat = image.reshape(-1, 3).astype(np.float64)
    colours = np.stack([np.bincount(index, flat[:, channel], minlength=len(held)) for channel in range(3)], 1)
    return colours / counts[held, None], index.reshape(image.shape[:2])


def _mixture(colours: np.ndarray, weights: np.ndarray) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """A Gaussian mixture (weight, mean, covariance) of ``colours`` (n, 3) counted ``weights`` times: k-means
    from ``MIXTURE_COMPONENTS`` colours drawn by weight (a fixed seed: the same image, the same mixture), then
    each cluster's weighted mean and covariance, as grabCut fits its mixtures."""
    rng = np.random.default_rng(0)
    drawable = np.count_nonzero(weights)
    means = colours[rng.choice(len(colours), MIXTURE_COMPONENTS, p=weights / weights.sum(),
                               replace=drawable < MIXTURE_COMPONENTS)]
    for _ in range(MIXTURE_KMEANS_STEPS):
        nearest = _nearest(colours, means)
        totals = np.bincount(nearest, weights, minlength=MIXTURE_COMPONENTS)
        sums = np.stack([np.bincount(nearest, weights * colours[:, c], minlength=MIXTURE_COMPONENTS) for c in range(3)], 1)
        means = np.where(totals[:, None] > 0, sums / np.maximum(totals, 1e-12)[:, None], means)
    nearest = _nearest(colours, means)
    components = []
    for j in range(MIXTURE_COMPONENTS):
        members = nearest == j
        weight = weights[members].sum()
        if weight < 1:
            continue
        offsets = colours[members] - means[j]
        covariance = (offsets * weights[members, None]).T @ offsets / weight + MIXTURE_VARIANCE_FLOOR * np.eye(3)
        components.append((weight / weights.sum(), means[j], covariance))
    return components


def _nearest(colours: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Each colour's nearest mean (its index)."""
    return ((means**2).sum(1) - 2 * colours @ means.T).argmin(1)


def _log_likelihood(colours: np.ndarray, mixture) -> np.ndarray:
    """(n,) log density of ``colours`` (n, 3) under the ``mixture``."""
    terms = []
    for weight, mean, covariance in mixture:
        offsets = colours - mean
        mahalanobis = np.einsum("ni,ij,nj->n", offsets, np.linalg.inv(covariance), offsets)
        terms.append(np.log(weight) - 0.5 * mahalanobis - 0.5 * np.linalg.slogdet(covariance)[1])
    terms = np.stack(terms)
    top = terms.max(0)
    return top + np.log(np.exp(terms - top).sum(0))
