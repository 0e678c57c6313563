"""Edge-aware labelling: the head's probabilities relabelled so that class borders follow the image's edges.

The head sees the image on a 1/4 grid, so the argmax of its upsampled probabilities is
stair-stepped and leaks across weak edges. This step minimises a contrast-sensitive Potts
energy over the label map f (Boykov & Jolly, ICCV 2001; the smoothness term of GrabCut,
Rother et al., SIGGRAPH 2004):

    E(f) = Σ_p −log P_p(f_p)
           + λ Σ_{p,q 8-neighbours} exp(−β ‖I_p − I_q‖²) / ‖p − q‖ · [f_p ≠ f_q]

with P the head's probabilities, I the RGB image (0..255), β = 1 / (2 ⟨‖I_p − I_q‖²⟩) over
the image's neighbour pairs (so the contrast scale adapts to each photo), and λ the
strength. Scribbled pixels keep their class.

The unary also holds a colour model, as GrabCut's does: −w log Q(f_p | I_p), with Q the
class posterior of the pixel's colour under per-class colour histograms (COLOUR_BINS³ bins,
blurred by one bin) filled with the head's probabilities as soft votes and, counting as much
again, the scribbled pixels. It lends the whole image's colours to places the head got wrong
or left unsure: with w = COLOUR_WEIGHT, +0.7 mIoU on icg-dev and +1.1 on GrabCut scribbles-1
(the sets it was chosen on), +1.1 on scribbles-2, and a faster step, since the borders it
leaves are cleaner (benchmarks/RESULTS.md, 1. Quality of a cold job).

It is minimised coarse to fine, each pass by one sweep of fusion moves over the classes
(α-expansion, Boykov, Veksler & Zabih, PAMI 2001, generalised so that pixels already α may
also leave it), each move one max-flow with PyMaxflow; for two classes the one move is the
exact minimum. The coarse pass runs on cells of COARSENING² pixels and decides regions; the
fine pass frees only the band of pixels within FINE_RADIUS of the coarse labels' borders
(the rest are fixed neighbours), so its graph is a few times the borders' length, not the
image's area. A larger image is labelled at a smaller size (the engine's working size, else
MAX_PIXELS), and those labels upsampled and their borders moved at full resolution.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import maxflow
import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter, maximum_filter

# (dy, dx) of half the 8-neighbourhood: each unordered pair of neighbours once.
NEIGHBOURS = ((0, 1), (1, 0), (1, 1), (1, -1))
COARSENING = 4  # the coarse pass works on cells of this many pixels a side
# The fine pass frees pixels this close to a change of the coarse labels: 3 scored as 5 within 0.03 mIoU on
# icg-dev and GrabCut scribbles-1, with a band 40% narrower (benchmarks/RESULTS.md, 1. Quality of a cold job).
FINE_RADIUS = 3
# Above this many pixels the step runs on a box-downsampled copy of this size and its labels are upsampled,
# their borders then moved at full resolution. 1 MP, the engine's working size, against the 2 MP it was: on
# GrabCut scribbles-1's first 12 photos upscaled, +0.2 mIoU at 2 MP and +1.0 at 8 MP, the step 30% and 20% faster.
MAX_PIXELS = 1_000_000
PROBABILITY_FLOOR = 1e-6  # keeps −log P (and −log Q) finite where the head put no mass
COLOUR_BINS = 32  # per RGB channel: 32 beat 16 and 64 on icg-dev and GrabCut scribbles-1
COLOUR_WEIGHT = 2.0  # w: 2 beat 1 and 3 there, and 1 or 3 votes per stroke pixel


def edge_aware_labels(
    image: np.ndarray,
    probabilities: np.ndarray | Callable[[np.ndarray], np.ndarray],
    scribbles: np.ndarray,
    strength: float,
    *,
    colour_weight: float = COLOUR_WEIGHT,
    max_pixels: int = MAX_PIXELS,
    working: tuple[np.ndarray, np.ndarray] | None = None,
    borders: bool = True,
    terms: ImageTerms | None = None,
) -> np.ndarray:
    """The label map minimising the energy above.

    Arguments:
      image: (H, W, 3) uint8 RGB.
      probabilities: (K, H, W) float per-class probabilities, summing to 1 per pixel; or, with ``working``, a
        function giving the (K, n) probabilities of n flat pixel indices: a large image's full-resolution pass
        reads only its borders' band, so the engine need not bring them all to full size for the labels.
      scribbles: (H, W) integer class indices 0..K-1 of scribbled pixels, -1 elsewhere.
      strength: λ, the weight of a label change across a flat (edge-free) neighbour pair
        against −log P; 0 leaves each pixel its lowest unary (the argmax, without colour).
      colour_weight: w of the colour model's −log Q; 0 leaves the head's probabilities alone.
      max_pixels: images above this many pixels are labelled at this size, then upsampled.
      working: the image and probabilities already at a smaller size, (h, w, 3) and (K, h, w),
        the image box-filtered: the image is labelled at that size, then upsampled (the engine
        passes its working size); None: at ``max_pixels``, box-filtered here.
      borders: False stops after the coarse pass, its cells' labels upsampled: the regions each class takes,
        their borders within a cell of the pixel, at a fraction of the cost (the box's colour rounds,
        gdc/prompts.py, count colours on either side and need no more).
      terms: :class:`ImageTerms` ``.of(image)``, for a caller that labels one image of at most ``max_pixels``
        several times (the box's colour rounds); None computes them.

    Returns:
      (H, W) uint8 class indices; scribbled pixels hold their scribble's class.
    """
    height, width = scribbles.shape
    if working is None and height * width > max_pixels:
        working = _box_filtered(image, probabilities, _grid(height, width, max_pixels))
    large = working is not None
    if terms is not None and (large or terms.shape != (height, width)):
        raise ValueError("terms are of the image itself, at most max_pixels, labelled without a working copy")
    if callable(probabilities) and not large:
        raise ValueError("probabilities given as a function need the working copy")
    full_image = image
    probabilities_at = probabilities if callable(probabilities) else partial(_values_at, probabilities)
    if large:
        image, probabilities = working
        rows, cols = _cell_maps((height, width), image.shape[:2])
        scribbles_here = _cell_scribbles(scribbles, rows, cols)
    else:
        scribbles_here = scribbles
    colour = _colour_unaries(image, probabilities, scribbles_here, colour_weight) if colour_weight else None
    if strength == 0:
        labels = _lowest_unary(probabilities, colour)
    else:
        labels = _coarse_to_fine(image, probabilities, scribbles_here, strength, colour, borders, terms)
    marked = scribbles >= 0
    if large and not borders:
        labels = labels[rows][:, cols]
    elif large:
        table = None if colour is None else colour[0]
        labels = _border_band(full_image, probabilities_at, scribbles, labels, rows, cols, strength, table)
    labels[marked] = scribbles[marked]
    return labels


def make_consistent(probabilities: np.ndarray, labels: np.ndarray, top: np.ndarray) -> None:
    """Exchange, in place, each pixel's top probability with its label's, so the argmax is ``labels``.

    The exchange keeps each pixel's set of values, so its entropy (the engine's uncertainty)
    stays the head's. ``top`` is the (K, H, W) C-contiguous ``probabilities``' argmax over
    classes; only the pixels where it differs from ``labels`` change, a few along the borders.
    """
    changed = np.flatnonzero(labels != top)
    flat = probabilities.reshape(probabilities.shape[0], -1)
    assert np.shares_memory(flat, probabilities), "probabilities must be C-contiguous to change in place"
    was_top, label = top.reshape(-1)[changed], labels.reshape(-1)[changed]
    top_value = flat[was_top, changed]
    flat[was_top, changed] = flat[label, changed]
    flat[label, changed] = top_value


@dataclass(frozen=True)
class ImageTerms:
    """What the coarse-to-fine passes read of an (H, W, 3) image alone, whatever its probabilities: its cells,
    their mean colours, both sizes' neighbour differences and β. About 5 ms a 0.15 MP photo, which a box's six
    colour rounds on one image would otherwise each pay again."""

    rows: np.ndarray
    cols: np.ndarray
    small_image: np.ndarray
    differences: list
    small_differences: list
    beta: float

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the image they are of: its rows' and columns' cell maps have a cell each."""
        return len(self.rows), len(self.cols)

    @classmethod
    def of(cls, image: np.ndarray) -> ImageTerms:
        height, width = image.shape[:2]
        rows, cols = _cell_maps((height, width), _grid(height, width, height * width / COARSENING**2))
        # Each channel as a contiguous float32 plane: reduceat over a channel's strided view took twice as long.
        small_image = _cell_means(np.moveaxis(image, -1, 0).astype(np.float32), rows, cols).transpose(1, 2, 0)
        differences = _differences(image)
        return cls(rows, cols, small_image, differences, _differences(small_image), _contrast(differences))


def _coarse_to_fine(image, probabilities, scribbles, strength, colour, borders: bool = True,
                    terms: ImageTerms | None = None) -> np.ndarray:
    """Minimise on cells of COARSENING² pixels, then, ``borders``, again at full size near the coarse labels'
    changes.

    The coarse pass settles which regions take which class at a quarter of the cost; the
    fine one moves the borders to the pixel. A cell's probabilities are its pixels' mean and
    its colour term that of its mean colour, so its Potts weight is λ / COARSENING: a cell
    border is COARSENING pixels long, against COARSENING² pixels' unaries. Both passes
    take β from the full-size image: averaging cells removes pixel noise, and a coarse β of
    its own would make weak edges cheap to cross. ``terms``: :class:`ImageTerms` of ``image``, or None.
    """
    terms = terms or ImageTerms.of(image)
    rows, cols, beta = terms.rows, terms.cols, terms.beta
    small_probabilities = _cell_means(probabilities, rows, cols)
    small_scribbles = _cell_scribbles(scribbles, rows, cols)
    small_colour = None if colour is None else (colour[0], _colour_bins(terms.small_image))
    start = np.where(small_scribbles >= 0, small_scribbles, _lowest_unary(small_probabilities, small_colour))
    coarse_free = small_scribbles < 0
    coarse = _minimise(
        _neighbour_pairs(terms.small_differences, beta, coarse_free, strength / COARSENING),
        _unaries(small_probabilities, small_colour, np.flatnonzero(coarse_free)),
        start.astype(np.uint8),
        coarse_free,
    )
    labels = np.where(scribbles >= 0, scribbles, coarse[rows][:, cols]).astype(np.uint8)
    if not borders:
        return labels
    free = _near_changes(labels) & (scribbles < 0)
    pairs = _neighbour_pairs(terms.differences, beta, free, strength)

    def near(alpha: int) -> np.ndarray:
        return maximum_filter(labels == alpha, size=2 * FINE_RADIUS + 1)[free]

    return _minimise(pairs, _unaries(probabilities, colour, np.flatnonzero(free)), labels, free, near)


def _border_band(image, probabilities_at, scribbles, small_labels, rows, cols, strength, table) -> np.ndarray:
    """A large image's (H, W) labels: ``small_labels``, found on the cells ``rows`` × ``cols``, upsampled, and
    their borders moved to the full image's edges by the fine pass of :func:`_coarse_to_fine`.

    The small labels' borders already stand on the cells' edges, so a border is off by less than
    a cell: the pass frees the pixels of the two cells beside a border, and a move towards α only
    those within a cell of one labelled α. Both are found on the cells and looked up per pixel;
    the neighbour pairs, colour bins and unaries are computed for the freed pixels alone, and β
    from a sample of rows, so time and memory follow the borders' length, not the image's area.
    The band of FINE_RADIUS and a cell that this one replaced (13 pixels wide at 12 MP against 5,
    both from 2 MP labels) scored the same: no GrabCut photo at 8 MP (scribbles-1, the first 12,
    upscaled) moved by more than 0.07 mIoU (benchmarks/RESULTS.md, 10. Large photos).
    """
    labels = np.ascontiguousarray(small_labels[rows][:, cols])  # the moves write in place
    marked = scribbles >= 0
    labels[marked] = scribbles[marked]
    if not strength:
        return labels
    free = _beside_changes(small_labels)[rows][:, cols] & ~marked
    ys, xs = np.nonzero(free)
    small_ys, small_xs = rows[ys], cols[xs]
    pixels = ys * labels.shape[1] + xs
    unary = _negative_log(probabilities_at(pixels))
    if table is not None:
        unary += table[:, _colour_bins(image.reshape(-1, 3)[pixels])].T

    def near(alpha: int) -> np.ndarray:
        return maximum_filter(small_labels == alpha, size=3)[small_ys, small_xs]

    pairs = _band_pairs(image, _sampled_contrast(image), free, strength)
    return _minimise(pairs, unary, labels, free, near)


def _colour_bins(image: np.ndarray) -> np.ndarray:
    """(H, W) int: each pixel's bin of the COLOUR_BINS³ RGB histogram."""
    quantised = np.minimum(image.astype(np.int32) * COLOUR_BINS // 256, COLOUR_BINS - 1)
    return (quantised[..., 0] * COLOUR_BINS + quantised[..., 1]) * COLOUR_BINS + quantised[..., 2]


def _colour_unaries(image, probabilities, scribbles, weight) -> tuple[np.ndarray, np.ndarray]:
    """(table, bins): −w log Q(class | colour bin) as a (K, COLOUR_BINS³) table, and each pixel's bin.

    Q is the class posterior under per-class colour histograms: the head's probabilities vote
    softly; the scribbled pixels, which are certain, vote again with the class's whole mass
    spread over them; each histogram is blurred by one bin so that nearby colours share votes.
    """
    classes = probabilities.shape[0]
    bins = _colour_bins(image)
    flat_bins, flat_scribbles = bins.reshape(-1), scribbles.reshape(-1)
    likelihoods = np.empty((classes, COLOUR_BINS**3))
    for c in range(classes):
        votes = np.bincount(flat_bins, probabilities[c].reshape(-1), minlength=COLOUR_BINS**3)
        mass = votes.sum()
        scribbled = np.bincount(flat_bins[flat_scribbles == c], minlength=COLOUR_BINS**3)
        if scribbled.any():
            votes = votes + scribbled * (mass / scribbled.sum())
        votes = gaussian_filter(votes.reshape((COLOUR_BINS,) * 3), 1.0, mode="constant").reshape(-1)
        likelihoods[c] = (votes + 1 / votes.size) / (votes.sum() + 1)
    posterior = likelihoods * probabilities.reshape(classes, -1).mean(1, dtype=np.float64)[:, None]
    posterior /= posterior.sum(0, keepdims=True)
    return -weight * np.log(np.maximum(posterior, PROBABILITY_FLOOR)), bins


def _values_at(probabilities: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """(K, n): the (K, H, W) ``probabilities`` at the flat ``pixels``."""
    return probabilities.reshape(probabilities.shape[0], -1)[:, pixels]


def _negative_log(values: np.ndarray) -> np.ndarray:
    """(n, K) float64 −log P of (K, n) probabilities."""
    return -np.log(np.maximum(values.T, PROBABILITY_FLOOR)).astype(np.float64)


def _unaries(probabilities: np.ndarray, colour, pixels: np.ndarray) -> np.ndarray:
    """(n, K) float64 unaries of the flat ``pixels``: −log P, plus the colour term when there is one."""
    unary = _negative_log(_values_at(probabilities, pixels))
    if colour is not None:
        table, bins = colour
        unary += table[:, bins.reshape(-1)[pixels]].T
    return unary


def _lowest_unary(probabilities: np.ndarray, colour) -> np.ndarray:
    """(H, W) uint8: each pixel's class of lowest unary, a band of rows at a time to bound memory."""
    classes, height, width = probabilities.shape
    labels = np.empty((height, width), np.uint8)
    band = max(1, (1 << 18) // width) * width
    for start in range(0, height * width, band):
        pixels = np.arange(start, min(start + band, height * width))
        labels.reshape(-1)[pixels] = _unaries(probabilities, colour, pixels).argmin(1)
    return labels


def _grid(height: int, width: int, pixels: float) -> tuple[int, int]:
    """The (rows, columns) of cells that cut (height, width) into about ``pixels`` cells."""
    scale = min(1.0, math.sqrt(pixels / (height * width)))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _cell_maps(shape: tuple[int, int], cells: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column cell maps that cut ``shape`` into a ``cells`` grid: each row's and column's cell."""
    return np.arange(shape[0]) * cells[0] // shape[0], np.arange(shape[1]) * cells[1] // shape[1]


def _box_filtered(image, probabilities, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Image and probabilities at ``size`` (h, w) by Pillow's box filter.

    It weighs a pixel that two cells share by its part in each: on a 12 MP photo's cells of 2-3
    pixels (at 2 MP) numpy's reduceat took 2.4 s, the box filter 0.5 s. The image is filtered in
    8 bits, so its means are rounded to whole values: 3x faster than a float plane per channel.
    """
    box = size[::-1]  # (width, height), as Pillow takes it
    small_image = np.asarray(Image.fromarray(image).resize(box, Image.Resampling.BOX))
    small_probabilities = np.stack([  # one float32 plane at a time bounds the working memory
        np.asarray(Image.fromarray(np.asarray(plane, dtype=np.float32)).resize(box, Image.Resampling.BOX))
        for plane in probabilities
    ])
    return small_image, small_probabilities


def _cell_means(planes: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(C, h, w) float32: each of the (C, H, W) ``planes`` averaged exactly over the cells ``rows`` × ``cols``.

    The coarse pass's cells are COARSENING pixels a side; the box filter of :func:`_box_filtered`
    cost 0.27 mIoU there on GrabCut scribbles-1 (seed 0).
    """
    row_starts, col_starts = _starts(rows), _starts(cols)
    area = (np.bincount(rows)[:, None] * np.bincount(cols)[None, :]).astype(np.float32)
    return np.stack([
        np.add.reduceat(np.add.reduceat(plane, col_starts, axis=1, dtype=np.float32), row_starts, axis=0) / area
        for plane in planes
    ])


def _cell_scribbles(scribbles: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Each cell's scribble class, -1 where it holds none.

    Any scribbled pixel marks its cell (the highest class where strokes of two meet), so 1-pixel strokes stay.
    """
    # The cells are runs of rows and columns, and -1 is below every class: a cell's maximum is its answer. Reduced
    # run by run it takes about 1 ms on a 0.25 MP photo however much is marked; np.maximum.at over the marked pixels
    # took as long for strokes but 6-7 ms where a box marks its whole outside, five times a box.
    row_starts, col_starts = _starts(rows), _starts(cols)
    return np.maximum.reduceat(np.maximum.reduceat(scribbles, col_starts, axis=1), row_starts, axis=0)


def _starts(cells: np.ndarray) -> np.ndarray:
    """Where each run of a (non-decreasing) cell map begins."""
    return np.flatnonzero(np.diff(cells, prepend=-1))


def _near_changes(labels: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels within FINE_RADIUS of a change of ``labels``."""
    changes = np.zeros(labels.shape, bool)
    changes[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    changes[1:] |= labels[1:] != labels[:-1]
    return maximum_filter(changes, size=2 * FINE_RADIUS + 1)


def _beside_changes(labels: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels with a 4-neighbour of another label, on both sides of each change."""
    beside = np.zeros(labels.shape, bool)
    across = labels[:, 1:] != labels[:, :-1]
    beside[:, 1:] |= across
    beside[:, :-1] |= across
    down = labels[1:] != labels[:-1]
    beside[1:] |= down
    beside[:-1] |= down
    return beside


def _differences(image: np.ndarray) -> list:
    """Per neighbour offset: the two slices that pair pixels, their distance, and ‖I_p − I_q‖² (float32)."""
    height, width = image.shape[:2]
    pixels = image.astype(np.float32)
    differences = []
    for dy, dx in NEIGHBOURS:
        first = (slice(0, height - dy), slice(max(0, -dx), width - max(0, dx)))
        second = (slice(dy, height), slice(max(0, dx), width - max(0, -dx)))
        differences.append((first, second, math.hypot(dy, dx), _squared_distance(pixels[first], pixels[second])))
    return differences


def _squared_distance(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """‖first − second‖² over the last axis (RGB), as float32: numpy's sum over an axis of 3 runs 4x slower."""
    difference = np.subtract(first, second, dtype=np.float32)
    difference *= difference
    return difference[..., 0] + difference[..., 1] + difference[..., 2]


def _contrast(differences: list) -> float:
    """β = 1 / (2 ⟨‖I_p − I_q‖²⟩) over all neighbour pairs."""
    total = sum(float(squared.sum(dtype=np.float64)) for *_, squared in differences)
    return 1 / (2 * max(total / sum(squared.size for *_, squared in differences), 1e-6))


def _neighbour_pairs(differences: list, beta: float, free: np.ndarray, strength: float):
    """(p, q, weight): flat indices and Potts weights of the neighbour pairs touching a free pixel."""
    index = np.arange(free.size).reshape(free.shape)
    firsts, seconds, weights = [], [], []
    for first, second, distance, squared in differences:
        touching = free[first] | free[second]
        firsts.append(index[first][touching])
        seconds.append(index[second][touching])
        weights.append(strength / distance * np.exp(-beta * squared[touching]))
    return np.concatenate(firsts), np.concatenate(seconds), np.concatenate(weights).astype(np.float64)


def _sampled_contrast(image: np.ndarray, every: int = 16) -> float:
    """:func:`_contrast` from the neighbour pairs within every ``every``-th pair of rows: a large image's β
    without all its differences."""
    top = image[0 : image.shape[0] - 1 : every].astype(np.float32)
    bottom = image[1::every][: len(top)].astype(np.float32)
    squared = [
        _squared_distance(top[:, 1:], top[:, :-1]),  # (0, 1) in either row
        _squared_distance(bottom[:, 1:], bottom[:, :-1]),
        _squared_distance(bottom, top),  # (1, 0)
        _squared_distance(bottom[:, 1:], top[:, :-1]),  # (1, 1)
        _squared_distance(bottom[:, :-1], top[:, 1:]),  # (1, -1)
    ]
    total = sum(float(pairs.sum(dtype=np.float64)) for pairs in squared)
    return 1 / (2 * max(total / max(sum(pairs.size for pairs in squared), 1), 1e-6))


def _band_pairs(image: np.ndarray, beta: float, free: np.ndarray, strength: float):
    """:func:`_neighbour_pairs` computed from the image at the free pixels' pairs alone (a large image's few)."""
    height, width = free.shape
    ys, xs = np.nonzero(free)
    colours = image.reshape(-1, 3)
    firsts, seconds, weights = [], [], []
    for dy, dx in NEIGHBOURS:
        for sign in (1, -1):  # the free pixel first, then second; a pair of two free pixels counts once
            other_y, other_x = ys + sign * dy, xs + sign * dx
            inside = (other_y >= 0) & (other_y < height) & (other_x >= 0) & (other_x < width)
            own, other = ys[inside] * width + xs[inside], other_y[inside] * width + other_x[inside]
            if sign < 0:
                held = ~free.reshape(-1)[other]
                own, other = other[held], own[held]
            squared = _squared_distance(colours[own], colours[other])
            firsts.append(own)
            seconds.append(other)
            weights.append(strength / math.hypot(dy, dx) * np.exp(-beta * squared))
    return np.concatenate(firsts), np.concatenate(seconds), np.concatenate(weights).astype(np.float64)


def _slots(pixels: np.ndarray, indices: np.ndarray, size: int) -> np.ndarray:
    """Position of each of ``indices`` in the sorted ``pixels``, -1 where absent; both index ``size`` pixels.

    Up to MAX_PIXELS, a table of each pixel's position: 6-15x faster than a binary search, which took 8 ms of a
    photo's 100 ms edge step. Past it (a large image's band), a binary search, which needs no image-sized table.
    """
    if size <= MAX_PIXELS:
        table = np.full(size, -1, dtype=np.int64)
        table[pixels] = np.arange(pixels.size)
        return table[indices]
    position = np.minimum(np.searchsorted(pixels, indices), max(pixels.size - 1, 0))
    return np.where(pixels[position] == indices, position, -1) if pixels.size else np.full(indices.shape, -1)


def _minimise(pairs, unary, labels, free, near=None) -> np.ndarray:
    """Fusion moves from ``labels`` over the ``free`` pixels, one per class; the (H, W) uint8 result.

    ``pairs`` are :func:`_neighbour_pairs`' (p, q, weight) of the pairs touching a free pixel,
    ``unary`` the (n, K) unaries of the n free pixels in raster order (:func:`_unaries`).
    Pixels not free keep their label and enter the free ones' energy as fixed neighbours.
    With ``near``, a move towards class α frees only the free pixels where ``near(α)`` (a bool
    per free pixel) holds, those close to a pixel labelled α: borders then move by at most that
    distance, at the cost of the border alone.
    """
    classes = unary.shape[1]
    flat = labels.reshape(-1)  # a view: moves write through to ``labels``
    assert np.shares_memory(flat, labels), "labels must be C-contiguous to change in place"
    pixels = np.flatnonzero(free)
    ranked = np.argsort(unary, axis=1)[:, :2]  # each free pixel's two likeliest classes
    pairs = (*pairs, _slots(pixels, pairs[0], free.size), _slots(pixels, pairs[1], free.size))
    # One sweep over the classes (a second moved icg-dev's mIoU by 0.2 at twice the time); with
    # two classes the move towards class 1 chooses freely between both, so it alone is exact.
    for alpha in range(classes) if classes > 2 else (1,):
        movable = np.ones(pixels.size, bool) if near is None else near(alpha)
        _fusion_move(flat, pixels, unary, ranked, alpha, movable, pairs)
    return labels


def _fusion_move(flat, pixels, unary, ranked, alpha, movable, pairs) -> None:
    """One move in place: each ``movable`` free pixel takes α or its other label, whichever lowers E.

    The other label is the pixel's own, or its likeliest non-α class where it is α now, so
    the current labelling is one of the choices and E never rises (a fusion move, Lempitsky
    et al., PAMI 2010, of the labelling with constant α; α-expansion where no pixel is α).
    With x = 1 for α, a pair's Potts term w[f_p ≠ f_q] is w·[other_p ≠ other_q] at x = (0, 0),
    w at (0, 1) and (1, 0), 0 at (1, 1): an edge p→q of capacity w, q→p of w when the other
    labels agree, and w on q's x = 0 when they differ. A pair with one fixed end adds to the
    free end's unaries. Graph convention: the sink side (x = 1) pays the source capacity.
    """
    first, second, weight, first_slot, second_slot = pairs
    if not movable.any():
        return
    node = np.where(movable, np.cumsum(movable) - 1, -1)  # graph node of each free pixel, -1 where held
    first_node = np.where(first_slot >= 0, node[first_slot], -1)
    second_node = np.where(second_slot >= 0, node[second_slot], -1)
    count = pixels.size
    current = flat[pixels]
    other = np.where(current != alpha, current, np.where(ranked[:, 0] != alpha, ranked[:, 0], ranked[:, 1]))
    other = np.where(movable, other, current)
    keep = unary[np.arange(count), other]  # cost of x = 0
    switch = unary[:, alpha].copy()  # cost of x = 1

    first_label, second_label = flat[first], flat[second]  # held pixels' labels; movable ones' are set next
    first_label[first_slot >= 0] = other[first_slot[first_slot >= 0]]
    second_label[second_slot >= 0] = other[second_slot[second_slot >= 0]]
    first_free, second_free = first_node >= 0, second_node >= 0
    for one, one_slot, one_label, fixed_label in (
        (first_free & ~second_free, first_slot, first_label, second_label),
        (second_free & ~first_free, second_slot, second_label, first_label),
    ):
        slots, w, fixed = one_slot[one], weight[one], fixed_label[one]
        switch += np.bincount(slots, w * (fixed != alpha), minlength=count)
        keep += np.bincount(slots, w * (one_label[one] != fixed), minlength=count)
    both = first_free & second_free
    agree = first_label == second_label
    parted = both & ~agree
    keep += np.bincount(second_slot[parted], weight[parted], minlength=count)

    w = weight[both]
    graph = maxflow.Graph[float](int(movable.sum()), w.size)
    nodes = graph.add_nodes(int(movable.sum()))
    graph.add_grid_tedges(nodes, switch[movable], keep[movable])
    graph.add_edges(first_node[both], second_node[both], w, w * agree[both])
    graph.maxflow()
    chosen = other.copy()
    chosen[np.flatnonzero(movable)[graph.get_grid_segments(nodes)]] = alpha
    flat[pixels] = chosen
