import json
import resource
import time

import numpy as np
import pytest

from gdc.bench.speed import PHASES, busy_core, growth_slope, test_scene as make_test_scene
from gdc.cli import main


def test_growth_slope_recovers_the_exponent():
    records = [dict(megapixels=m, total=0.3 * m**1.2) for m in (0.1, 0.5, 2.0)]
    assert growth_slope(records) == pytest.approx(1.2)


def test_growth_slope_leaves_out_sizes_past_the_working_size_cap():
    records = [dict(megapixels=m, total=0.3 * min(m, 1.0) ** 1.2) for m in (0.1, 0.5, 1.0, 4.0, 24.0)]
    assert growth_slope(records, up_to_megapixels=1.0) == pytest.approx(1.2)
    assert growth_slope(records) < 0.7


@pytest.mark.parametrize("classes", [2, 3])
def test_scene_has_the_size_and_thin_classes(classes):
    encoded, scribbles = make_test_scene(0.06, classes=classes)
    assert encoded[:2] == b"\xff\xd8"  # JPEG
    assert scribbles.size == pytest.approx(60_000, rel=0.01)
    assert set(np.unique(scribbles)) == set(range(classes + 1))
    assert (scribbles > 0).mean() < 0.02


def test_busy_core_keeps_a_process_spinning_while_it_lasts():
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    with busy_core():
        time.sleep(0.5)
    # The spinner is reaped on the way out, so its CPU time is counted here.
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - before > 0.1


def test_bench_speed_compares_grabcut_busy_core_service_and_sizes(tiny_dataset, tmp_path, capsys):
    code = main(["bench", "speed", "--data", str(tiny_dataset), "--scribbles", "marks", "--image", "a",
                 "--sizes", "0.02,0.04", "--repeats", "1", "--workers", "1", "--jobs", "2",
                 "--steps", "2", "--samples", "2", "--output-dir", str(tmp_path)])
    assert code == 0
    report = json.loads((tmp_path / "speed-cpu.json").read_text())
    photo = report["photo"]
    assert photo["name"] == "a" and (photo["width"], photo["height"]) == (160, 120)
    seconds = photo["seconds"]
    assert set(seconds) == {"gdc_quiet", "gdc_busy", "grabcut_quiet", "grabcut_busy"}
    assert photo["gdc_over_grabcut"] == pytest.approx(seconds["gdc_quiet"] / seconds["grabcut_quiet"])
    assert photo["gdc_busy_over_quiet"] == pytest.approx(seconds["gdc_busy"] / seconds["gdc_quiet"])
    assert set(photo["gdc_phases"]) >= {"superpixels", "features", "optimise", "sample"}
    (run,) = report["service"]["runs"]
    assert (run["workers"], run["threads"], run["jobs"]) == (1, 1, 2) and run["jobs_per_second"] > 0
    assert run["job_busy_over_quiet"] == pytest.approx(run["job_seconds"]["busy"] / run["job_seconds"]["quiet"])
    assert [round(r["megapixels"], 2) for r in report["sizes"]] == [0.02, 0.04]
    for record in report["sizes"]:
        assert set(record["phases"]) == set(PHASES)
        assert record["total"] == pytest.approx(sum(record["phases"].values()), rel=0.2)
        assert record["peak_rss_mb"] > 50
    assert np.isfinite(report["slope"])
    assert (tmp_path / "speed-cpu.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert "gdc / GrabCut =" in out and "one core busy" in out and "jobs/s" in out and "time grows as pixels^" in out


def test_bench_speed_without_service_or_sizes_times_the_photo_alone(tiny_dataset, tmp_path):
    code = main(["bench", "speed", "--data", str(tiny_dataset), "--scribbles", "marks", "--image", "a",
                 "--sizes", "", "--workers", "", "--repeats", "1", "--steps", "2", "--samples", "2",
                 "--output-dir", str(tmp_path)])
    assert code == 0
    report = json.loads((tmp_path / "speed-cpu.json").read_text())
    assert "photo" in report and "service" not in report and "sizes" not in report


def test_bench_speed_needs_a_two_class_photo_for_grabcut(tiny_dataset, tmp_path, capsys):
    code = main(["bench", "speed", "--data", str(tiny_dataset), "--scribbles", "marks", "--image", "b",
                 "--output-dir", str(tmp_path)])
    assert code == 2
    assert "b has 3 scribble classes" in capsys.readouterr().err
