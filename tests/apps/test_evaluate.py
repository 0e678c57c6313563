import numpy as np
import pytest
from PIL import Image

from apps.evaluate import VOID, load_dataset, read_truth, score


def test_score_is_mean_iou_over_classes_in_truth_ignoring_void():
    truth = np.array([[0, 0, 1, 1], [0, 0, 1, VOID]])
    prediction = np.array([[0, 1, 1, 1], [0, 0, 2, 0]])
    miou, accuracy = score(prediction, truth)
    # class 0: 3 hits, union 4; class 1: 2 hits, union 4 (a 2 predicted on truth 1 counts
    # against class 1, and class 2 is not in the truth); the void pixel is ignored.
    assert miou == pytest.approx((3 / 4 + 2 / 4) / 2)
    assert accuracy == pytest.approx(5 / 7)


def test_binary_masks_read_as_foreground_0_background_1(tmp_path):
    mask = np.array([[0, 128, 255]], dtype=np.uint8)
    Image.fromarray(mask).save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_truth(tmp_path / "m.png"), [[1, VOID, 0]])
    index = np.array([[0, 1, 2]], dtype=np.uint8)
    Image.fromarray(index).save(tmp_path / "i.png")
    np.testing.assert_array_equal(read_truth(tmp_path / "i.png"), index)


def test_load_dataset_names_what_is_missing(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(FileNotFoundError, match="expected images/, gt/ and scribbles/"):
        list(load_dataset(tmp_path))
