"""gdc bench prompts: the click protocol's pieces, and a tiny run whose JSON holds every figure."""
import json

import numpy as np
import pytest
from PIL import Image

from apps.cli import main
from apps.evaluate import VOID
from benchmarks import prompts

pytest.importorskip("cv2")


def disc(shape=(48, 64), centre=(20, 30), radius=10) -> np.ndarray:
    """(H, W) bool: a disc at (y, x) ``centre``."""
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 < radius**2


def truth_of(object_: np.ndarray) -> np.ndarray:
    return np.where(object_, 0, 1).astype(np.uint8)


def test_the_first_click_is_positive_at_the_objects_centre():
    assert prompts.next_click(None, truth_of(disc())) == (30, 20, True)


def test_a_click_goes_to_the_largest_error_region_positive_where_the_object_was_missed():
    truth = truth_of(disc())
    missed_half = np.where(disc() & (np.arange(64) < 30), 1, 2)  # the right half of the disc missed
    x, y, positive = prompts.next_click(missed_half, truth)
    assert positive and x > 30 and disc()[y, x]
    false_square = np.where(disc(), 1, 2)
    false_square[30:48, 40:64] = 1  # a larger false region than any miss
    x, y, positive = prompts.next_click(false_square, truth)
    assert not positive and y >= 30 and x >= 40


def test_foreground_iou_ignores_void():
    truth = np.array([[0, 0, 1, VOID]], np.uint8)
    assert prompts.foreground_iou(np.array([[1, 2, 2, 1]]), truth) == pytest.approx(1 / 2)
    assert prompts.foreground_iou(np.array([[1, 1, 2, 2]]), truth) == 1.0


def test_click_run_counts_the_clicks_to_each_threshold_and_the_most_when_never_reached():
    truth = truth_of(disc())
    answers = iter([0.5, 0.87, 0.95])  # the IoU each click's answer reaches

    def session(clicks):
        target = next(answers)
        labels = np.where(disc(), 1, 2)
        if target < 1:  # drop object pixels until the IoU is the target
            missed = np.argwhere(disc())[: round((1 - target) * disc().sum())]
            labels[tuple(missed.T)] = 2
        return labels

    run = prompts.click_run(session, truth, max_clicks=5)
    assert (run["noc85"], run["noc90"]) == (2, 3) and len(run["ious"]) == 3
    never = prompts.click_run(lambda clicks: np.full(truth.shape, 2), truth, max_clicks=4)
    assert (never["noc85"], never["noc90"], len(never["ious"])) == (4, 4, 4)


def test_the_frame_is_background_only_until_a_negative_click():
    only_positive = prompts.click_strokes((48, 64), [(30, 20, True)])
    assert (only_positive[0] == 2).all() and only_positive[20, 30] == 1 and only_positive[24, 10] == 0
    with_negative = prompts.click_strokes((48, 64), [(30, 20, True), (55, 40, False)])
    assert with_negative[0, 0] == 0 and with_negative[40, 55] == 2


@pytest.fixture
def tiny_objects(tmp_path):
    """Two 64x48 images, a bright disc on dark noise, their binary masks in the GrabCut data's layout."""
    root = tmp_path / "tiny-objects"
    for folder in ("images", "gt"):
        (root / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, centre in {"a": (20, 30), "b": (26, 36)}.items():
        object_ = disc(centre=centre, radius=12)
        image = rng.integers(0, 60, (48, 64, 3)).astype(np.uint8)
        image[object_] = (220, 200, 40)
        Image.fromarray(image).save(root / "images" / f"{name}.png")
        Image.fromarray(np.where(object_, 255, 0).astype(np.uint8)).save(root / "gt" / f"{name}.png")
    return root


def test_a_tiny_run_writes_every_figure(tiny_objects, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["bench", "prompts", str(tiny_objects), "--clicks", "3", "--click-images", "1", "--output-dir", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "prompts-tiny-objects.json").read_text())
    assert (report["images"], report["click_images"], report["max_clicks"], report["seed"]) == (2, 1, 3, 0)
    assert report["box_margin"] == 5
    assert set(report["box"]) == {"gdc", "grabcut"}
    for method in report["box"].values():
        assert method["summary"]["images"] == 2 and len(method["images"]) == 2
        assert 0.8 < method["summary"]["miou"] <= 1 and method["summary"]["median_seconds"] > 0
    assert set(report["clicks"]) == {"gdc", "grabcut", "random-walker"}
    for method in report["clicks"].values():
        summary = method["summary"]
        assert summary["images"] == 1 and summary["median_seconds_per_click"] > 0
        assert 1 <= summary["noc85"] <= summary["noc90"] <= 3
        assert all(1 <= len(image["ious"]) <= 3 for image in method["images"])
    printed = capsys.readouterr().out
    assert "| gdc |" in printed and "| random-walker |" in printed and "NoC@90" in printed


def test_the_box_is_the_objects_bounds_grown_by_the_margin_and_clipped():
    from apps.evaluate import truth_box
    from gdc.prompts import Box

    truth = truth_of(disc(centre=(20, 30), radius=10))  # rows 11..29, columns 21..39
    assert truth_box(truth, margin=5) == Box(16, 6, 45, 35)
    assert truth_box(truth, margin=15) == Box(6, 0, 55, 45)
    with pytest.raises(ValueError, match="no object"):
        truth_box(np.ones((4, 4), np.uint8))


def test_eval_scores_the_box_prompt(tiny_objects, tmp_path):
    report_path = tmp_path / "box.json"
    assert main(["eval", str(tiny_objects), "--prompt", "box", "--steps", "3", "--samples", "2",
                 "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert (report["prompt"], report["box_margin"], report["images"]) == ("box", 5, 2)
    assert "scribbles" not in report and report["summary"]["miou"]["mean"] > 0.8
