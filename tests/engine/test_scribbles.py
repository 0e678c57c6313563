import numpy as np
import pytest

from gdc.errors import InputError
from gdc.inputs import scribble_classes
from gdc.scribbles import grow_over, superpixels


def two_halves():
    """A 40x60 image, dark left half and bright right half; unblurred, SLIC will not cross the edge."""
    image = np.zeros((40, 60, 3), dtype=np.uint8)
    image[:, 30:] = 220
    return image


def test_a_superpixel_touched_by_one_class_takes_it():
    image = two_halves()
    labels = np.full((40, 60), -1)
    labels[20, 5:8] = 0
    expanded = grow_over(labels, superpixels(image, superpixel_size=600, compactness=1, smoothing=0))
    assert (expanded[:, :30] == 0).mean() > 0.4, "the scribble grew over its superpixel"
    assert (expanded[:, 30:] == -1).all(), "superpixels across the edge stay unlabeled"


def test_a_superpixel_touched_by_two_classes_keeps_only_the_scribbles():
    image = two_halves()
    labels = np.full((40, 60), -1)
    labels[5, 5:8] = 0
    labels[6, 5:8] = 1
    expanded = grow_over(labels, superpixels(image, superpixel_size=600, compactness=1, smoothing=0))
    assert (expanded[labels >= 0] == labels[labels >= 0]).all()
    # The superpixel under both scribbles grows neither class.
    assert np.count_nonzero(expanded[:, :30] >= 0) == 6


def test_superpixels_from_a_shrunk_image_still_grow_scribbles_up_to_the_edge():
    image = two_halves()
    labels = np.full((40, 60), -1)
    labels[20, 5:8] = 0
    labels[20, 50:53] = 1
    expanded = grow_over(labels, superpixels(image, superpixel_size=600, compactness=1, smoothing=0, shrink=2))
    assert expanded.shape == labels.shape
    assert (expanded[:, :30] == 0).mean() > 0.4 and (expanded[:, 30:] == 1).mean() > 0.4
    assert not (expanded[:, :30] == 1).any() and not (expanded[:, 30:] == 0).any()


def test_zero_superpixel_size_turns_expansion_off():
    labels = np.full((40, 60), -1)
    labels[3, 3] = 1
    np.testing.assert_array_equal(grow_over(labels, superpixels(two_halves(), superpixel_size=0)), labels)


def test_scribble_classes_are_the_values_present():
    scribbles = np.zeros((5, 6), dtype=np.uint8)
    scribbles[0, 0], scribbles[1, 1], scribbles[2, 2] = 7, 3, 7
    np.testing.assert_array_equal(scribble_classes(scribbles, (5, 6, 3)), [3, 7])


@pytest.mark.parametrize(
    "scribbles,message",
    [
        (np.zeros((5, 7), dtype=np.uint8), "scribbles are 7x5 but the image is 6x5"),
        (np.zeros((5, 6), dtype=np.uint8), "found no labels"),
        (np.ones((5, 6), dtype=np.uint8), "found only class 1"),
        (np.ones((5, 6), dtype=np.float32), "integer labels"),
        (np.ones((5, 6, 3), dtype=np.uint8), "single-channel"),
        (np.full((5, 6), 256, dtype=np.int32), "at most 255"),
        (np.arange(30, dtype=np.uint8).reshape(5, 6), "29 classes; at most 8 are accepted"),
    ],
)
def test_bad_scribbles_say_what_is_wrong(scribbles, message):
    with pytest.raises(InputError, match=message):
        scribble_classes(scribbles, (5, 6, 3), max_classes=8)


def test_superpixels_keep_their_size_whatever_the_image():
    grown = []
    for scale in (1, 3):
        image = np.repeat(np.repeat(two_halves(), scale, 0), scale, 1)
        labels = np.full(image.shape[:2], -1)
        labels[5 * scale, 5 * scale], labels[-5 * scale, -5 * scale] = 0, 1
        grown.append(np.count_nonzero(grow_over(labels, superpixels(image, superpixel_size=100)) == 0))
    # One scribbled pixel grows over about one superpixel (100 pixels) on a 40x60 image and a 120x180 one.
    assert all(40 < count < 250 for count in grown)


def test_smoothing_keeps_noisy_superpixels_from_crossing_an_edge():
    rng = np.random.default_rng(0)
    truth = np.zeros((64, 96), np.int64)
    truth[:, 48:] = 1
    image = np.clip(np.where(truth[..., None] == 1, 190, 60) + rng.normal(0, 12, (64, 96, 3)), 0, 255).astype(np.uint8)
    labels = np.full(truth.shape, -1)
    labels[16:48, 12], labels[16:48, 84] = 0, 1
    expanded = grow_over(labels, superpixels(image, superpixel_size=120, smoothing=1.0))
    grown = expanded >= 0
    assert grown.mean() > 0.1, "the scribbles grew"
    # Unsmoothed, this noise merges superpixels across the edge and mislabels ~1000 pixels.
    assert (expanded[grown] != truth[grown]).sum() < 100
