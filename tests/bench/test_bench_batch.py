"""gdc bench batch: a killed and resumed gdc batch through a fresh gdc serve, and the scoring of its label maps."""
import json

import numpy as np
import pytest

from apps.cli import main
from benchmarks.batch import _quality
from gdc.imageio import encode_png

TINY = ["--", "--steps=0", "--samples=1", "--superpixel-size=0"]


def test_a_killed_batch_resumes_with_every_image_run_once_and_a_repeat_skips_all(tmp_path, capsys):
    report_path = tmp_path / "report.json"
    code = main([
        "bench", "batch", "--jobs", "6", "--workers", "1", "--concurrency", "1", "--kill-after", "1", "--again",
        "--output", str(tmp_path / "out"), "--json", str(report_path), *TINY,
    ])
    report = json.loads(report_path.read_text())
    assert code == 0, report
    killed, resumed, again = report["runs"]
    assert killed["exit_code"] == -9 and 1 <= killed["killed_at_label_maps"] < 6
    assert resumed["exit_code"] == 0 and resumed["label_maps_after"] == 6
    assert again["exit_code"] == 0 and again["label_maps_before"] == 6
    assert report["labelled"] == 6 and report["seconds"] == pytest.approx(killed["seconds"] + resumed["seconds"], abs=0.02)
    assert report["jobs_submitted"] == 6 and report["images_submitted_more_than_once"] == []
    assert report["jobs_run_by_workers"] == 6
    assert report["coco"]["images"] == 6 and report["coco"]["images_without_annotations"] == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [f"small{index:05d}.png" for index in range(6)]


def test_the_output_folder_must_start_empty(tmp_path, capsys):
    (tmp_path / "kept.txt").write_text("not a measurement's")
    assert main(["bench", "batch", "--jobs", "1", "--output", str(tmp_path), *TINY]) == 2
    assert "is not empty: give --output a new or empty folder" in capsys.readouterr().err
    assert (tmp_path / "kept.txt").exists()


def test_label_maps_are_scored_as_gdc_eval_scores_them_and_set_against_its_report(tmp_path):
    out, truth = tmp_path / "out", tmp_path / "gt"
    out.mkdir(), truth.mkdir()
    # Class index k in the truth is scribble value k + 1 in a label map.
    (truth / "right.png").write_bytes(encode_png(np.array([[0, 1], [1, 1]], np.uint8)))
    (out / "right.png").write_bytes(encode_png(np.array([[1, 2], [2, 2]], np.uint8)))
    (truth / "half.png").write_bytes(encode_png(np.array([[0, 0], [1, 1]], np.uint8)))
    (out / "half.png").write_bytes(encode_png(np.array([[1, 2], [1, 2]], np.uint8)))  # IoU 1/3 per class
    (truth / "unlabelled.png").write_bytes(encode_png(np.zeros((2, 2), np.uint8)))
    reference = tmp_path / "eval.json"
    reference.write_text(json.dumps({
        "options": {"seed": 0}, "summary": {"miou": {"mean": 0.6}},
        "runs": [{"images": [{"name": "right", "miou": 1.0}, {"name": "half", "miou": 0.2}]}],
    }))

    quality = _quality(out, truth, reference)

    assert quality["scored"] == 2 and quality["per_image"] == {"half": pytest.approx(1 / 3), "right": 1.0}
    assert quality["miou"] == pytest.approx(2 / 3)
    compared = quality["reference"]
    assert compared["miou_difference"] == pytest.approx(2 / 3 - 0.6) and compared["images_compared"] == 2
    assert compared["images_within_0.001"] == 1 and compared["largest_image_difference"] == pytest.approx(1 / 3 - 0.2)
