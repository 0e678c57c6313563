import json

import numpy as np
import pytest

from gdc.bench.speed import PHASES, growth_slope, test_scene as make_test_scene
from gdc.cli import main


def test_growth_slope_recovers_the_exponent():
    records = [dict(megapixels=m, total=0.3 * m**1.2) for m in (0.1, 0.5, 2.0)]
    assert growth_slope(records) == pytest.approx(1.2)


def test_growth_slope_leaves_out_sizes_past_the_working_size_cap():
    records = [dict(megapixels=m, total=0.3 * min(m, 1.0) ** 1.2) for m in (0.1, 0.5, 1.0, 4.0, 24.0)]
    assert growth_slope(records, up_to_megapixels=1.0) == pytest.approx(1.2)
    assert growth_slope(records) < 0.7


def test_scene_has_the_size_and_three_thin_classes():
    encoded, scribbles = make_test_scene(0.06)
    assert encoded[:2] == b"\xff\xd8"  # JPEG
    assert scribbles.size == pytest.approx(60_000, rel=0.01)
    assert set(np.unique(scribbles)) == {0, 1, 2, 3}
    assert (scribbles > 0).mean() < 0.02


def test_bench_speed_writes_table_json_and_plot(tmp_path, capsys):
    code = main(["bench", "speed", "--sizes", "0.02,0.04", "--repeats", "1", "--steps", "2", "--samples", "2",
                 "--jobs", "2", "--in-flight", "2", "--output-dir", str(tmp_path)])
    assert code == 0
    report = json.loads((tmp_path / "speed-cpu.json").read_text())
    assert [round(r["megapixels"], 2) for r in report["sizes"]] == [0.02, 0.04]
    for record in report["sizes"]:
        assert set(record["phases"]) == set(PHASES)
        assert record["total"] == pytest.approx(sum(record["phases"].values()), rel=0.2)
        assert record["peak_rss_mb"] > 50
    assert np.isfinite(report["slope"])
    assert report["throughput"]["jobs"] == 2 and report["throughput"]["jobs_per_second"] > 0
    assert (tmp_path / "speed-cpu.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert "time grows as pixels^" in out and "throughput" in out
