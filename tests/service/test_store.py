"""Result encodings: each one decodes back to what the engine produced."""
import io
import json
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

from gdc.imageio import encode_png, grey_map, stack_probabilities, unstack_probabilities
from worker import store


def label_map() -> np.ndarray:
    """Three classes, one with a hole and one touching the border."""
    labels = np.full((40, 60), 2, np.uint8)
    labels[5:30, 10:40] = 1
    labels[12:20, 20:28] = 2  # a hole in class 1
    labels[30:, 45:] = 7
    return labels


def rle_decode(rle: dict) -> np.ndarray:
    height, width = rle["size"]
    values = np.concatenate([np.full(count, index % 2, bool) for index, count in enumerate(rle["counts"])])
    return values.reshape((height, width), order="F")


def even_odd_fill(rings: list, shape: tuple[int, int], scale: int = 4) -> np.ndarray:
    """Rasterise rings with the even-odd rule, sampling pixel centres."""
    height, width = shape
    filled = np.zeros((height * scale, width * scale), bool)
    for ring in rings:
        canvas = Image.new("1", (width * scale, height * scale), 0)
        ImageDraw.Draw(canvas).polygon([(x * scale, y * scale) for x, y in ring], fill=1)
        filled ^= np.asarray(canvas)
    centre = scale // 2
    return filled[centre::scale, centre::scale]


def test_rle_decodes_to_each_class_mask():
    labels = label_map()
    encoded = store.mask_rle(labels, [1, 2, 7])
    assert [item["class"] for item in encoded] == [1, 2, 7]
    for item in encoded:
        assert sum(item["counts"]) == labels.size
        np.testing.assert_array_equal(rle_decode(item), labels == item["class"])


def test_rle_starts_with_zeros_when_the_first_pixel_is_set():
    labels = label_map()
    (item,) = store.mask_rle(labels, [2])  # pixel (0, 0) is class 2
    assert item["counts"][0] == 0


def test_polygons_filled_even_odd_give_the_mask_back():
    labels = label_map()
    for item in store.mask_polygons(labels, [1, 2, 7]):
        assert all(ring[0] == ring[-1] for ring in item["polygons"]), "rings are closed"
        filled = even_odd_fill(item["polygons"], labels.shape)
        truth = labels == item["class"]
        iou = (filled & truth).sum() / (filled | truth).sum()
        assert iou > 0.97, (item["class"], iou)


@pytest.mark.parametrize("shape", [(1, 1), (37, 53), (20, 31, 3)], ids=["one pixel", "grey", "colour"])
def test_a_png_holds_every_value_exactly(shape):
    array = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    for view in (array, array[::-1]):  # and a view that is not C-contiguous
        decoded = Image.open(io.BytesIO(encode_png(view)))
        assert decoded.mode == ("L" if view.ndim == 2 else "RGB")
        np.testing.assert_array_equal(np.asarray(decoded), view)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grey_levels_clip_and_round_to_the_nearest(dtype):
    values = np.array([[-0.2, 0.0, 0.25, 0.5, 1.0, 1.3]], dtype)
    np.testing.assert_array_equal(grey_map(values), [[0, 0, 64, 128, 255, 255]])


def test_probabilities_stack_into_class_bands_and_back():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 20, 30))
    probabilities = (np.exp(logits) / np.exp(logits).sum(0)).astype(np.float32)
    stacked = stack_probabilities(probabilities)
    assert stacked.shape == (60, 30) and stacked.dtype == np.uint8
    np.testing.assert_array_equal(stacked[20:40], np.round(probabilities[1] * 255))
    np.testing.assert_allclose(unstack_probabilities(stacked, 3), probabilities, atol=0.5 / 255 + 1e-6)


@pytest.mark.parametrize("classes", [2, 3])
def test_encoded_result_fits_the_documented_size(classes):
    """Smooth engine-like maps compress well below the uncompressed bound H*W*(K+2)."""
    height, width = 240, 320
    y, x = np.mgrid[:height, :width] / 40.0
    logits = np.stack([np.sin(x + k) + np.cos(y * (k + 1)) for k in range(classes)])
    probabilities = (np.exp(logits) / np.exp(logits).sum(0)).astype(np.float32)
    labels = (probabilities.argmax(0) + 1).astype(np.uint8)
    uncertainty = 1 - probabilities.max(0)
    fields = store.encode_details(labels, probabilities, uncertainty, range(1, classes + 1))
    fields["mask"] = encode_png(labels)
    assert sum(len(value) for value in fields.values()) < height * width * (classes + 2) / 2
    polygons = json.loads(zlib.decompress(fields["polygons"]))
    assert [item["class"] for item in polygons] == list(range(1, classes + 1))
