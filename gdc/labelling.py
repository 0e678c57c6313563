"""Edge-aware labelling: the head's probabilities relabelled so that class borders follow the image's edges.

The head sees the image on a 1/4 grid, so the argmax of its upsampled probabilities is
stair-stepped and leaks across weak edges. This step minimises a contrast-sensitive Potts
energy over the label map f (Boykov & Jolly, ICCV 2001; the smoothness term of GrabCut,
Rother et al., SIGGRAPH 2004):

    E(f) = Σ_p −log P_p(f_p)  +  λ Σ_{p,q 8-neighbours} exp(−β ‖I_p − I_q‖²) / ‖p − q‖ · [f_p ≠ f_q]

with P the head's probabilities, I the RGB image, β = 1 / (2 ⟨‖I_p − I_q‖²⟩) over the
image's neighbour pairs (so the contrast scale adapts to each photo), and λ the strength.
Scribbled pixels keep their class. It is minimised by α-expansion (Boykov, Veksler & Zabih,
PAMI 2001), one max-flow per class and cycle with PyMaxflow, which is exact for two classes'
moves and within a factor 2 of the optimum for more.

Only a band of pixels are variables: those whose top probability is below ``CONFIDENT`` or
that lie within ``BAND_RADIUS`` pixels of a change of the argmax. The rest keep their argmax
and enter the band's energy as fixed neighbours, which keeps the graph a few times the
boundary's length rather than the image's area.
"""
from __future__ import annotations

import math

import maxflow
import numpy as np
from scipy.ndimage import maximum_filter

# (dy, dx) of half the 8-neighbourhood: each unordered pair of neighbours once.
NEIGHBOURS = ((0, 1), (1, 0), (1, 1), (1, -1))
COARSENING = 2  # the coarse pass works on cells of this many pixels a side
FINE_RADIUS = 3  # the fine pass frees pixels this close to a change of the coarse labels
MAX_CYCLES = 3  # fusion-move cycles over the classes, for three classes or more
# Above this many pixels the step runs on a box-downsampled copy of this size and its labels are upsampled.
MAX_PIXELS = 2_000_000
PROBABILITY_FLOOR = 1e-6  # keeps −log P finite where the head put no mass


def edge_aware_labels(
    image: np.ndarray,
    probabilities: np.ndarray,
    scribbles: np.ndarray,
    strength: float,
    *,
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """The label map minimising the contrast-sensitive Potts energy above.

    Arguments:
      image: (H, W, 3) uint8 RGB.
      probabilities: (K, H, W) float per-class probabilities, summing to 1 per pixel.
      scribbles: (H, W) integer class indices 0..K-1 of scribbled pixels, -1 elsewhere.
      strength: λ, the weight of a label change across a flat (edge-free) neighbour pair
        against −log P; 0 gives the argmax.
      max_pixels: images above this many pixels are labelled at this size, then upsampled.

    Returns:
      (H, W) uint8 class indices; scribbled pixels hold their scribble's class.
    """
    height, width = scribbles.shape
    if strength == 0:
        labels = probabilities.argmax(0).astype(np.uint8)
    elif height * width <= max_pixels:
        labels = _coarse_to_fine(image, probabilities, scribbles, strength)
    else:
        rows, cols = _cells(height, width, max_pixels)
        small = _coarse_to_fine(*_downsampled(image, probabilities, scribbles, rows, cols), strength)
        labels = small[rows][:, cols]
    marked = scribbles >= 0
    labels[marked] = scribbles[marked]
    return labels


def _coarse_to_fine(image: np.ndarray, probabilities: np.ndarray, scribbles: np.ndarray, strength: float) -> np.ndarray:
    """Minimise on cells of COARSENING² pixels, then again at full size near the coarse labels' changes.

    The coarse pass settles which regions take which class at a quarter of the cost; the
    fine one moves the borders to the pixel. A cell's unary is its pixels' mean, so its
    Potts weight is λ / COARSENING: a cell border is COARSENING pixel borders long, against
    COARSENING² pixels' unaries.
    """
    height, width = scribbles.shape
    rows, cols = _cells(height, width, height * width / COARSENING**2)
    small = _downsampled(image, probabilities, scribbles, rows, cols)
    coarse = _minimise(*small[:2], _initial(*small[1:]), small[2] < 0, strength / COARSENING)
    labels = np.where(scribbles >= 0, scribbles, coarse[rows][:, cols]).astype(np.uint8)
    return _minimise(image, probabilities, labels, _near_changes(labels) & (scribbles < 0), strength)


def _initial(probabilities: np.ndarray, scribbles: np.ndarray) -> np.ndarray:
    return np.where(scribbles >= 0, scribbles, probabilities.argmax(0)).astype(np.uint8)


def _cells(height: int, width: int, pixels: float) -> tuple[np.ndarray, np.ndarray]:
    """Row and column cell maps that cut (height, width) into about ``pixels`` cells."""
    scale = min(1.0, math.sqrt(pixels / (height * width)))
    rows = np.arange(height) * max(1, round(height * scale)) // height
    cols = np.arange(width) * max(1, round(width * scale)) // width
    return rows, cols


def _cell_starts(cells: np.ndarray) -> np.ndarray:
    """First index of each run of equal values in a non-decreasing cell map."""
    return np.flatnonzero(np.diff(cells, prepend=-1))


def _downsampled(image, probabilities, scribbles, rows, cols):
    """Image and probabilities averaged over the cells; each cell's scribble class, if it holds one."""
    row_starts, col_starts = _cell_starts(rows), _cell_starts(cols)
    area = (np.bincount(rows)[:, None] * np.bincount(cols)[None, :]).astype(np.float32)

    def mean(plane: np.ndarray) -> np.ndarray:  # one plane at a time bounds the working memory
        sums = np.add.reduceat(np.add.reduceat(plane, row_starts, axis=0, dtype=np.float32), col_starts, axis=1)
        return sums / area

    small_image = np.stack([mean(image[..., c]) for c in range(image.shape[2])], axis=-1)
    small_probabilities = np.stack([mean(plane) for plane in probabilities])
    # Any scribbled pixel marks its cell (the highest class where strokes of two meet), so 1-pixel strokes stay.
    small_scribbles = np.maximum.reduceat(np.maximum.reduceat(scribbles, row_starts, axis=0), col_starts, axis=1)
    return small_image, small_probabilities, small_scribbles


def _near_changes(labels: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels within FINE_RADIUS of a change of ``labels``."""
    changes = np.zeros(labels.shape, bool)
    changes[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    changes[1:] |= labels[1:] != labels[:-1]
    return maximum_filter(changes, size=2 * FINE_RADIUS + 1)


def _neighbour_pairs(image: np.ndarray, variable: np.ndarray, strength: float):
    """(p, q, weight): flat indices and Potts weights of the neighbour pairs touching a variable pixel."""
    height, width = variable.shape
    pixels = image.astype(np.float32)
    index = np.arange(height * width).reshape(height, width)
    squared, views = [], []
    for dy, dx in NEIGHBOURS:
        first = (slice(0, height - dy), slice(max(0, -dx), width - max(0, dx)))
        second = (slice(dy, height), slice(max(0, dx), width - max(0, -dx)))
        squared.append(((pixels[first] - pixels[second]) ** 2).sum(-1))
        views.append((first, second, math.hypot(dy, dx)))
    beta = 1 / (2 * max(np.mean([s.mean() for s in squared]), 1e-6))
    firsts, seconds, weights = [], [], []
    for d2, (first, second, distance) in zip(squared, views):
        touching = variable[first] | variable[second]
        firsts.append(index[first][touching])
        seconds.append(index[second][touching])
        weights.append(strength / distance * np.exp(-beta * d2[touching]))
    return np.concatenate(firsts), np.concatenate(seconds), np.concatenate(weights).astype(np.float64)


def _minimise(image, probabilities, labels, free, strength) -> np.ndarray:
    """Fusion moves from ``labels`` over the ``free`` pixels, one per class and cycle; the (H, W) uint8 result.

    Pixels not free keep their label and enter the free ones' energy as fixed neighbours.
    """
    classes = probabilities.shape[0]
    flat = labels.reshape(-1)  # a view: moves write through to ``labels``
    pixels = np.flatnonzero(free)
    slot = np.full(flat.size, -1, np.int64)
    slot[pixels] = np.arange(pixels.size)
    band_probabilities = probabilities.reshape(classes, -1)[:, pixels].T
    unary = -np.log(np.maximum(band_probabilities, PROBABILITY_FLOOR)).astype(np.float64)
    ranked = np.argsort(unary, axis=1)[:, :2]  # each free pixel's two likeliest classes
    pairs = _neighbour_pairs(image, free, strength)
    pairs = (*pairs, slot[pairs[0]], slot[pairs[1]])
    # With two classes the move towards class 1 chooses freely between both: one exact cut.
    alphas = range(classes) if classes > 2 else (1,)
    for _ in range(MAX_CYCLES if classes > 2 else 1):
        changed = False
        for alpha in alphas:
            changed |= _fusion_move(flat, pixels, unary, ranked, alpha, pairs)
        if not changed:
            break
    return labels


def _fusion_move(flat, pixels, unary, ranked, alpha, pairs) -> bool:
    """One move in place: each free pixel takes α or its other label, whichever lowers E; whether any changed.

    The other label is the pixel's own, or its likeliest non-α class where it is α now, so
    the current labelling is one of the choices and E never rises (a fusion move, Lempitsky
    et al., PAMI 2010, of the labelling with constant α; α-expansion where no pixel is α).
    With x = 1 for α, a pair's Potts term w[f_p ≠ f_q] is w·[other_p ≠ other_q] at x = (0, 0),
    w at (0, 1) and (1, 0), 0 at (1, 1): an edge p→q of capacity w, q→p of w when the other
    labels agree, and w on q's x = 0 when they differ. A pair with one fixed end adds to the
    free end's unaries. Graph convention: the sink side (x = 1) pays the source capacity.
    """
    first, second, weight, first_slot, second_slot = pairs
    count = pixels.size
    current = flat[pixels]
    other = np.where(current != alpha, current, np.where(ranked[:, 0] != alpha, ranked[:, 0], ranked[:, 1]))
    keep = unary[np.arange(count), other]  # cost of x = 0
    switch = unary[:, alpha].copy()  # cost of x = 1

    first_label, second_label = flat[first], flat[second]  # fixed pixels' labels; free ones' are set next
    first_label[first_slot >= 0] = other[first_slot[first_slot >= 0]]
    second_label[second_slot >= 0] = other[second_slot[second_slot >= 0]]
    first_free, second_free = first_slot >= 0, second_slot >= 0
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

    graph = maxflow.Graph[float]()
    nodes = graph.add_nodes(count)  # node i is free pixel i
    graph.add_grid_tedges(nodes, switch, keep)
    w = weight[both]
    graph.add_edges(first_slot[both], second_slot[both], w, w * agree[both])
    graph.maxflow()
    chosen = np.where(graph.get_grid_segments(nodes), alpha, other).astype(flat.dtype)
    changed = bool((chosen != current).any())
    flat[pixels] = chosen
    return changed
