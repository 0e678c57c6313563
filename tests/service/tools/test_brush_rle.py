"""Label Studio's brush RLE: gdc's encoder and decoder against label-studio-sdk's."""
import numpy as np
import pytest
from label_studio_sdk.converter import brush

from gdc.errors import InputError
from service.brush_rle import decode_mask, encode_mask


def sdk_decode(rle: list[int], width: int, height: int) -> np.ndarray:
    return np.reshape(brush.decode_rle(rle), (height, width, 4))[..., 3] > 0


def masks():
    rng = np.random.default_rng(0)
    yield np.zeros((7, 5), bool)
    yield np.ones((7, 5), bool)
    noise = rng.random((40, 60)) > 0.5  # many short runs
    yield noise
    disk = np.hypot(*np.mgrid[-150:150, -200:200]) < 120  # runs longer than the 16-bit field (65536 bytes)
    yield disk
    yield ~disk


@pytest.mark.parametrize("mask", list(masks()), ids=["empty", "full", "noise", "disk", "ring"])
def test_label_studio_sdk_decodes_what_gdc_encodes(mask):
    height, width = mask.shape
    rle = encode_mask(mask)
    assert all(0 <= value <= 255 for value in rle)
    np.testing.assert_array_equal(sdk_decode(rle, width, height), mask)


@pytest.mark.parametrize("mask", list(masks()), ids=["empty", "full", "noise", "disk", "ring"])
def test_gdc_decodes_what_label_studio_sdk_encodes(mask):
    """The sdk writes literal chunks as well as runs, as Label Studio's editor does."""
    height, width = mask.shape
    rle = brush.mask2rle((mask * 255).astype(np.uint8))
    np.testing.assert_array_equal(decode_mask(rle, width, height), mask)


def test_a_mask_of_another_size_is_refused():
    with pytest.raises(InputError, match="holds 140 bytes but a 6x5 RGBA mask has 120"):
        decode_mask(encode_mask(np.ones((7, 5), bool)), 6, 5)


def test_a_cut_off_rle_is_refused():
    with pytest.raises(InputError, match="ends in the middle of a run"):
        decode_mask(encode_mask(np.random.default_rng(1).random((20, 20)) > 0.5)[:30], 20, 20)


def test_values_outside_bytes_are_refused():
    with pytest.raises(InputError, match="list of byte values"):
        decode_mask([0, 300, 1], 2, 2)
