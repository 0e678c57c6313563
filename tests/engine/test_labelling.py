"""The edge-aware labelling step alone (gdc.labelling), on synthetic images with known edges."""
import itertools
import math
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from gdc.labelling import (
    MAX_PIXELS,
    ImageTerms,
    _band_pairs,
    _cell_maps,
    _cell_scribbles,
    _contrast,
    _differences,
    _minimise,
    _neighbour_pairs,
    _slots,
    _unaries,
    edge_aware_labels,
    make_consistent,
)

STRIPE = 40  # pixels per class stripe
SHIFT = 6  # how far the "grid" probabilities put each border from the image's edge


def stripes(classes: int, height: int = 48, seed: int = 0):
    """(image, probabilities, truth): vertical stripes of distinct colours, probabilities whose borders miss by SHIFT.

    The probabilities are what a coarse head gives: a confident-ish 0.7 for the class of a
    stripe shifted SHIFT pixels right, so the argmax is off by SHIFT pixels at every edge.
    """
    rng = np.random.default_rng(seed)
    width = STRIPE * classes
    truth = np.repeat((np.arange(width) // STRIPE)[None], height, axis=0)
    colours = rng.permutation(np.linspace(20, 235, classes))  # neighbours always differ by >= 25 grey levels
    image = colours[truth][..., None] + rng.normal(0, 3, (height, width, 3))
    guessed = np.clip((np.arange(width) - SHIFT) // STRIPE, 0, classes - 1)
    probabilities = np.full((classes, height, width), 0.3 / (classes - 1), np.float32)
    probabilities[(guessed[None].repeat(height, 0), *np.indices((height, width)))] = 0.7
    return np.clip(image, 0, 255).astype(np.uint8), probabilities, truth


def border_columns(labels: np.ndarray) -> np.ndarray:
    """Per row, the columns where the label changes."""
    return np.array([np.flatnonzero(np.diff(row)) + 1 for row in labels])


def no_scribbles(shape) -> np.ndarray:
    return np.full(shape, -1, np.int16)


@pytest.mark.parametrize("classes", range(2, 9))
def test_borders_move_from_the_grid_to_the_edges(classes):
    image, probabilities, truth = stripes(classes)
    edges = STRIPE * np.arange(1, classes)
    np.testing.assert_array_equal(border_columns(probabilities.argmax(0)), np.broadcast_to(edges + SHIFT, (48, classes - 1)))
    labels = edge_aware_labels(image, probabilities, no_scribbles(truth.shape), strength=100)
    np.testing.assert_array_equal(labels, truth)


@pytest.mark.parametrize("classes", [2, 3, 8])
def test_scribbles_keep_their_class(classes):
    image, probabilities, truth = stripes(classes)
    scribbles = no_scribbles(truth.shape)
    # Scribbles that contradict both the image and the probabilities: the other class, mid-stripe.
    for c in range(classes):
        middle = STRIPE * c + STRIPE // 2
        scribbles[20:23, middle : middle + 3] = (c + 1) % classes
    labels = edge_aware_labels(image, probabilities, scribbles, strength=100)
    marked = scribbles >= 0
    np.testing.assert_array_equal(labels[marked], scribbles[marked])


def test_strength_and_colour_zero_are_the_argmax():
    image, probabilities, truth = stripes(4)
    labels = edge_aware_labels(image, probabilities, no_scribbles(truth.shape), 0, colour_weight=0)
    np.testing.assert_array_equal(labels, probabilities.argmax(0))


def island(seed: int = 0):
    """(image, probabilities, scribbles, truth): the head misses a patch of class 1's colour inside class 0.

    Left half class 1 (colour 200), right half class 0 (colour 60) with a 12x12 island of
    colour 200 that truly is class 1, where the head leans 0.6 to class 0. Its sides lie on the
    coarse pass's 4x4 cells: a cell half island and half not has the colour of neither class,
    and a ring of those can hold a small island at the head's word.
    """
    rng = np.random.default_rng(seed)
    truth = np.zeros((60, 60), np.int64)
    truth[:, :30] = 1
    truth[24:36, 40:52] = 1
    image = np.where(truth == 1, 200, 60)[..., None] + rng.normal(0, 4, (60, 60, 3))
    leaning = np.where(truth == 1, 0.8, 0.2)
    leaning[24:36, 40:52] = 0.4
    probabilities = np.stack([1 - leaning, leaning]).astype(np.float32)
    scribbles = no_scribbles(truth.shape)
    scribbles[5:8, 5:25], scribbles[5:8, 35:55] = 1, 0
    return np.clip(image, 0, 255).astype(np.uint8), probabilities, scribbles, truth


@pytest.mark.parametrize("strength", [0, 100])
def test_the_colour_model_relabels_what_the_head_missed(strength):
    image, probabilities, scribbles, truth = island()
    without = edge_aware_labels(image, probabilities, scribbles, strength, colour_weight=0)
    assert (without[24:36, 40:52] == 0).all()  # the head's mistake stands on its own
    np.testing.assert_array_equal(edge_aware_labels(image, probabilities, scribbles, strength), truth)


def potts_energy(image, probabilities, labels, strength) -> float:
    """The docstring's energy, written out pair by pair."""
    height, width = labels.shape
    pixels = image.astype(np.float64)
    pairs = [
        ((y, x), (y + dy, x + dx))
        for y, x in itertools.product(range(height), range(width))
        for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1))
        if 0 <= y + dy < height and 0 <= x + dx < width
    ]
    beta = 1 / (2 * np.mean([((pixels[p] - pixels[q]) ** 2).sum() for p, q in pairs]))
    unary = -np.log(np.maximum(np.take_along_axis(probabilities, labels[None], 0), 1e-6)).sum()
    pairwise = sum(
        strength * math.exp(-beta * ((pixels[p] - pixels[q]) ** 2).sum()) / math.hypot(p[0] - q[0], p[1] - q[1])
        for p, q in pairs
        if labels[p] != labels[q]
    )
    return unary + pairwise


def random_problem(classes: int, shape=(3, 4), seed: int = 0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (*shape, 3)).astype(np.uint8)
    probabilities = rng.dirichlet(np.ones(classes) * 0.5, shape).transpose(2, 0, 1).astype(np.float32)
    return image, probabilities


def minimise_everywhere(image, probabilities, start, strength):
    """_minimise with every pixel free."""
    differences = _differences(image)
    free = np.ones(start.shape, bool)
    pairs = _neighbour_pairs(differences, _contrast(differences), free, strength)
    return _minimise(pairs, _unaries(probabilities, None, np.flatnonzero(free)), start, free)


@pytest.mark.parametrize("seed", range(3))
def test_pairs_of_a_few_free_pixels_from_the_image_equal_those_from_all_differences(seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (9, 11, 3)).astype(np.uint8)
    free = rng.random((9, 11)) < 0.3
    expected = _neighbour_pairs(_differences(image), 1e-3, free, 5.0)
    found = _band_pairs(image, 1e-3, free, 5.0)
    as_set = lambda pairs: {(p, q): w for p, q, w in zip(*(part.tolist() for part in pairs))}  # noqa: E731
    assert as_set(found).keys() == as_set(expected).keys() and len(found[0]) == len(expected[0])
    assert all(as_set(found)[pair] == pytest.approx(weight) for pair, weight in as_set(expected).items())


@pytest.mark.parametrize("size", [1_000, MAX_PIXELS + 1], ids=["a table", "a binary search"])
def test_slots_are_each_indexs_position_among_the_free_pixels(size):
    rng = np.random.default_rng(0)
    pixels = np.sort(rng.choice(size, 200, replace=False))
    indices = np.concatenate([pixels[::-1], rng.integers(0, size, 300)])
    expected = [pixels.tolist().index(i) if i in pixels else -1 for i in indices.tolist()]
    assert _slots(pixels, indices, size).tolist() == expected


def head_grid_probabilities(x: np.ndarray, edge: int) -> np.ndarray:
    """(2, len(x)) a head's probabilities along a row: its border 4 pixels right of the image's edge, and soft."""
    foreground = 0.5 + 0.5 * np.tanh((x - edge - 4) / 6)
    return np.stack([1 - foreground, foreground]).astype(np.float32)


@pytest.mark.parametrize("working", [False, True], ids=["box-filtered here", "the engine's working copy"])
def test_a_large_images_borders_land_on_its_edges_at_full_resolution(working):
    """Labelled at a smaller size and upsampled, then its borders moved on the full image: to the pixel."""
    height, width, edge = 120, 300, 151  # 36,000 pixels over 10,000: cells of ~1.9 pixels, the edge inside one
    x = np.arange(width)
    image = np.broadcast_to(np.where(x < edge, 60, 190).astype(np.uint8)[None, :, None], (height, width, 3)).copy()
    probabilities = np.ascontiguousarray(np.broadcast_to(head_grid_probabilities(x, edge)[:, None], (2, height, width)))
    scribbles = no_scribbles((height, width))
    scribbles[60, 10:20], scribbles[60, -20:-10] = 0, 1
    copy = None
    if working:  # 44 x 110 cells of ~2.7 pixels, as the engine's shrink and the head's grid give them
        small_x = (np.arange(110) + 0.5) * width / 110 - 0.5
        copy = (np.asarray(Image.fromarray(image).resize((110, 44), Image.Resampling.BOX)),
                np.ascontiguousarray(np.broadcast_to(head_grid_probabilities(small_x, edge)[:, None], (2, 44, 110))))
    labels = edge_aware_labels(image, probabilities, scribbles, strength=100, max_pixels=10_000, working=copy)
    assert set(np.unique(border_columns(labels))) == {edge}


@pytest.mark.parametrize("max_pixels", [MAX_PIXELS, 10_000], ids=["at its size", "labelled smaller"])
def test_without_borders_the_regions_stand_within_a_cell_of_the_edges(max_pixels):
    height, width, edge = 120, 300, 151
    x = np.arange(width)
    image = np.broadcast_to(np.where(x < edge, 60, 190).astype(np.uint8)[None, :, None], (height, width, 3)).copy()
    probabilities = np.ascontiguousarray(np.broadcast_to(head_grid_probabilities(x, edge)[:, None], (2, height, width)))
    scribbles = no_scribbles((height, width))
    scribbles[60, 10:20], scribbles[60, -20:-10] = 0, 1
    exact = edge_aware_labels(image, probabilities, scribbles, strength=100, max_pixels=max_pixels)
    regions = edge_aware_labels(image, probabilities, scribbles, strength=100, max_pixels=max_pixels, borders=False)
    assert set(np.unique(border_columns(exact))) == {edge}
    assert 0 < (regions != exact).sum() <= height * 2 * 4  # off by under a cell (COARSENING, 4 pixels) either way
    assert (abs(np.unique(border_columns(regions)) - edge) < 2 * 4).all()


@pytest.mark.parametrize("seed", range(5))
def test_two_classes_reach_the_exact_minimum(seed):
    image, probabilities = random_problem(2, seed=seed)
    strength = 2.0  # comparable to the unaries, so the optimum is neither the argmax nor one class
    start = probabilities.argmax(0).astype(np.uint8)
    labels = minimise_everywhere(image, probabilities, start, strength)
    best = min(
        potts_energy(image, probabilities, np.array(choice).reshape(3, 4), strength)
        for choice in itertools.product(range(2), repeat=12)
    )
    assert potts_energy(image, probabilities, labels, strength) == pytest.approx(best)


@pytest.mark.parametrize("classes", range(3, 9))
def test_moves_never_raise_the_energy(classes):
    for seed in range(3):
        image, probabilities = random_problem(classes, (6, 7), seed)
        start = probabilities.argmax(0).astype(np.uint8)
        labels = minimise_everywhere(image, probabilities, start.copy(), 2.0)
        assert potts_energy(image, probabilities, labels, 2.0) <= potts_energy(image, probabilities, start, 2.0) + 1e-9


def test_probabilities_made_consistent_keep_their_values():
    image, probabilities, truth = stripes(5)
    relabelled = probabilities.copy()
    make_consistent(relabelled, truth.astype(np.uint8), probabilities.argmax(0))
    np.testing.assert_array_equal(relabelled.argmax(0), truth)
    np.testing.assert_array_equal(np.sort(relabelled, 0), np.sort(probabilities, 0))


# Memory the step may allocate beyond its inputs on a 24 MP image: above MAX_PIXELS (1 MP) it works at that size.
MEMORY_BOUND_24MP = 256 * 2**20  # 200 MiB measured


def test_a_24_megapixel_image_stays_within_its_memory_bound():
    height, width = 4000, 6000
    x = np.arange(width, dtype=np.float32)
    image = np.broadcast_to(np.where(x < 3000, 60, 190).astype(np.uint8)[None, :, None], (height, width, 3))
    foreground = np.broadcast_to(0.5 + 0.5 * np.tanh((x - 3040) / 60), (height, width))
    probabilities = np.stack([1 - foreground, foreground]).astype(np.float32)
    scribbles = no_scribbles((height, width))
    scribbles[2000, 100:200], scribbles[2000, -200:-100] = 0, 1
    tracemalloc.start()
    try:
        labels = edge_aware_labels(image, probabilities, scribbles, strength=100)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"peak {peak / 2**20:.0f} MiB")
    assert peak < MEMORY_BOUND_24MP, f"peak {peak / 2**20:.0f} MiB"
    assert labels.shape == (height, width)
    # Found at the working size (cells of ~4.9 px), the border is then moved onto the edge at column 3000.
    assert set(np.unique(border_columns(labels[::500]))) == {3000}


@pytest.mark.parametrize("marked", [0.01, 0.7])  # strokes; a box's whole outside
def test_a_cell_holds_the_highest_class_scribbled_in_it(marked):
    rng = np.random.default_rng(0)
    scribbles = np.full((37, 53), -1, np.int16)
    drawn = rng.random(scribbles.shape) < marked
    scribbles[drawn] = rng.integers(0, 4, drawn.sum())
    rows, cols = _cell_maps(scribbles.shape, (9, 13))  # uneven cells: 4 or 5 pixels a side
    cells = _cell_scribbles(scribbles, rows, cols)
    for row, col in np.ndindex(cells.shape):
        assert cells[row, col] == scribbles[rows == row][:, cols == col].max()


@pytest.mark.parametrize("borders", [True, False])
def test_the_image_terms_of_one_image_serve_every_labelling_of_it(borders):
    image, probabilities, truth = stripes(3)
    terms = ImageTerms.of(image)
    for shift in (0, 1, 2):  # other probabilities on the same image, as a box's colour rounds give
        moved = np.roll(probabilities, shift, axis=0)
        np.testing.assert_array_equal(
            edge_aware_labels(image, moved, no_scribbles(truth.shape), 100, borders=borders, terms=terms),
            edge_aware_labels(image, moved, no_scribbles(truth.shape), 100, borders=borders),
        )


def test_image_terms_of_another_image_are_refused():
    image, probabilities, truth = stripes(3)
    with pytest.raises(ValueError, match="terms are of the image itself"):
        edge_aware_labels(image, probabilities, no_scribbles(truth.shape), 100, terms=ImageTerms.of(image[:-1]))
