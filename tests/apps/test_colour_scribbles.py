"""Colour scribbles as paint tools save them: black or transparent unlabeled, each colour a class."""
import io

import numpy as np
import pytest
from PIL import Image

from apps.cli import main
from gdc.errors import InputError
from gdc.imageio import class_colours, colour_table, encode_png, overlay, read_scribbles

RED, GREEN, BLUE = (230, 25, 75), (60, 180, 75), (0, 130, 200)


def painted(mode: str = "RGB") -> np.ndarray:
    """Three strokes, blue, red and green, on black (RGB) or on transparent (RGBA, RGB left non-black)."""
    pixels = np.zeros((12, 16, len(mode)), np.uint8)
    if mode == "RGBA":
        pixels[..., :3] = 255  # transparent white: unlabeled whatever its colour
    for row, colour in ((1, BLUE), (5, RED), (9, GREEN)):
        pixels[row : row + 2, 2:14, :3] = colour
        if mode == "RGBA":
            pixels[row : row + 2, 2:14, 3] = 255
    return pixels


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_each_colour_is_a_class_numbered_in_colour_order(mode):
    labels, colours = read_scribbles(encode_png(painted(mode)))
    assert colours == ["#0082c8", "#3cb44b", "#e6194b"]  # blue, green, red: sorted by #rrggbb
    assert labels.dtype == np.uint8 and labels.shape == (12, 16)
    assert (labels[1, 2], labels[9, 2], labels[5, 2]) == (1, 2, 3)
    assert np.count_nonzero(labels) == 3 * 2 * 12  # black and transparent pixels are unlabeled


def test_a_label_png_keeps_its_values_and_has_no_colours():
    labels = np.zeros((12, 16), np.uint8)
    labels[1, 1], labels[2, 2] = 4, 7
    read, colours = read_scribbles(encode_png(labels))
    np.testing.assert_array_equal(read, labels)
    assert colours is None


def test_a_photo_as_scribbles_is_refused_for_its_colours():
    photo = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    with pytest.raises(InputError, match=r"the scribbles have \d+ colours, and each colour is a class: at most 8"):
        read_scribbles(encode_png(photo), max_classes=8)


def test_other_modes_are_refused_by_name():
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), np.uint16) + 300).save(buffer, format="PNG")
    with pytest.raises(InputError, match="label PNG .* or a colour PNG .*got mode I;16"):
        read_scribbles(buffer.getvalue())


def test_classes_are_drawn_in_their_colours_or_else_the_palette():
    table = colour_table([1, 2], ["#010203", "#0a0b0c"])
    assert table[[1, 2]].tolist() == [[1, 2, 3], [10, 11, 12]]
    assert class_colours([1, 2], None) == ["#e6194b", "#3cb44b"]  # the overlay's palette
    image = np.full((1, 2, 3), 100, np.uint8)
    tinted = overlay(image, np.array([[0, 2]], np.uint8), opacity=1, table=table)
    assert tinted.tolist() == [[[100, 100, 100], [10, 11, 12]]]


def test_gdc_segment_takes_colour_scribbles_and_writes_the_mask_in_their_colours(scene3, tmp_path):
    """The same scribbles as labels and in colours (in colour order, so class k stays k): the same mask."""
    image, _, labels = scene3
    palette = np.array([(0, 0, 0), BLUE, GREEN, RED], np.uint8)
    Image.fromarray(image).save(tmp_path / "photo.png")
    Image.fromarray(labels).save(tmp_path / "labels.png")
    Image.fromarray(palette[labels]).save(tmp_path / "colours.png")  # RGB, each class its colour on black
    for scribbles in ("labels", "colours"):
        code = main(["segment", str(tmp_path / "photo.png"), str(tmp_path / f"{scribbles}.png"), "-o",
                     str(tmp_path / f"mask-{scribbles}.png"), "--steps", "5", "--samples", "3"])
        assert code == 0
    by_label = np.asarray(Image.open(tmp_path / "mask-labels.png"))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "mask-colours.png")), palette[by_label])
