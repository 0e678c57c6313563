import json

import numpy as np
import pytest

from apps.cli import main
from benchmarks.refine import first_half


def test_the_first_half_keeps_half_of_each_class_strokes_rounded_up():
    scribbles = np.zeros((10, 20), np.uint8)
    for column in (1, 5, 9):
        scribbles[1:4, column] = 1  # three strokes of class 1
    scribbles[6:8, 2] = 2  # one stroke of class 2
    kept = first_half(scribbles)
    assert (kept[1:4, [1, 5]] == 1).all() and not kept[:, 9].any()
    assert (kept[6:8, 2] == 2).all()


def test_refine_compares_every_setting_with_cold(tiny_dataset, tmp_path, capsys):
    code = main(["bench", "refine", str(tiny_dataset), "--scribbles", "marks", "--refine-steps", "3,4",
                 "--refine-stop-loss", "0,10", "--steps", "2", "--samples", "2", "--output-dir", str(tmp_path)])
    assert code == 0
    report = json.loads((tmp_path / f"refine-{tiny_dataset.name}.json").read_text())
    settings = [(row["refine_steps"], row["refine_stop_loss"], row["steps_median"]) for row in report["summary"]]
    # A stop loss of 0 trains every step; 10 is met before the first.
    assert settings == [(3, 0, 3), (3, 10, 0), (4, 0, 4), (4, 10, 0)]
    assert len(report["images"]) == 2 and all(len(image["warm"]) == 4 for image in report["images"])
    assert "| 4 steps, stop at 10 | 0 |" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flag", "values", "problem"),
    [
        ("--refine-stop-loss", "0.1,low", "refine_stop_loss: Input should be a valid number"),
        ("--refine-steps", "3,5000", "refine_steps: Input should be less than or equal to 1000"),
    ],
)
def test_refine_settings_are_held_to_their_options(tiny_dataset, capsys, flag, values, problem):
    with pytest.raises(SystemExit):
        main(["bench", "refine", str(tiny_dataset), flag, values])
    error = capsys.readouterr().err.splitlines()[-1]
    assert problem in error and error.endswith(f"in '{values}'")
