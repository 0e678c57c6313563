import json
import resource
import time

import numpy as np
import pytest
import torch

from apps.cli import main
from benchmarks import page
from benchmarks.speed import PHASES, busy_core, growth_slope, report_stem
from benchmarks.speed import test_scene as make_test_scene


def sized(megapixels: float, total: float) -> dict:
    # The scene asked for at 1 MP holds 1225 x 817 pixels: a little over the 1 MP cap.
    return dict(requested_megapixels=megapixels, megapixels=megapixels * 1.0008, total=total)


def test_growth_slope_recovers_the_exponent():
    records = [sized(m, 0.3 * m**1.2) for m in (0.1, 0.5, 2.0)]
    assert growth_slope(records) == pytest.approx(1.2)


def test_growth_slope_splits_at_the_working_size_cap_by_the_sizes_asked_for():
    records = [sized(m, 0.3 * min(m, 1.0) ** 1.2 + 0.01 * m) for m in (0.25, 1.0, 4.0, 12.0)]
    assert growth_slope(records, high=1.0) == pytest.approx(1.2, abs=0.05)
    assert growth_slope(records, low=1.0) < 0.3
    assert growth_slope(records[:1], high=1.0) is None  # one size: no exponent, not nan


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
                 "--sizes", "0.02,0.04", "--repeats", "1", "--workers", "1", "--jobs", "2", "--rounds",
                 "--steps", "2", "--samples", "2", "--max-pixels", "30000", "--output-dir", str(tmp_path)])
    assert code == 0
    report = only_report(tmp_path)
    photo = report["photo"]
    assert photo["name"] == "a" and (photo["width"], photo["height"]) == (160, 120)
    seconds = photo["seconds"]
    assert set(seconds) == {f"{name}_{load}" for name in ("gdc", "gdc_refine", "grabcut") for load in ("quiet", "busy")}
    assert photo["gdc_over_grabcut"] == pytest.approx(seconds["gdc_quiet"] / seconds["grabcut_quiet"])
    assert photo["refine_over_grabcut"] == pytest.approx(seconds["gdc_refine_quiet"] / seconds["grabcut_quiet"])
    rounds = report["rounds"]
    assert set(rounds) == {"http"} | ({"page"} if page.available() is None else set())
    assert all(rounds[way][name] > 0 for way in rounds for name in ("round1", "refine"))
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
    # 0.04 MP is over the 0.03 MP working size: its mask comes before the probabilities' upsampling.
    small, large = report["sizes"]
    assert small["mask"] == pytest.approx(small["total"], rel=0.2)
    assert large["mask"] == pytest.approx(large["total"] - large["phases"]["upsample"], rel=0.2)
    assert report["slope"] is None and report["slope_above"] is None  # one size on either side of the working size
    assert next(tmp_path.glob("speed-cpu-*.png")).stat().st_size > 1000
    out = capsys.readouterr().out
    assert "gdc / GrabCut =" in out and "one core busy" in out and "jobs/s" in out and "time grows as n/a" in out
    assert "page click to mask" in out and "HTTP round trip" in out


def test_bench_speed_without_service_or_sizes_times_the_photo_alone(tiny_dataset, tmp_path):
    code = main(["bench", "speed", "--data", str(tiny_dataset), "--scribbles", "marks", "--image", "a",
                 "--sizes", "", "--workers", "", "--no-rounds", "--repeats", "1", "--steps", "2", "--samples", "2",
                 "--output-dir", str(tmp_path)])
    assert code == 0
    report = only_report(tmp_path)
    assert "photo" in report and not {"service", "rounds", "sizes"} & set(report)


def test_bench_speed_records_the_machine_the_arithmetic_and_the_flops_per_phase(tiny_dataset, tmp_path, capsys):
    code = main(["bench", "speed", "--data", str(tiny_dataset), "--scribbles", "marks", "--image", "a",
                 "--sizes", "", "--workers", "", "--no-rounds", "--repeats", "1", "--steps", "2", "--samples", "2",
                 "--precision", "float32", "--output-dir", str(tmp_path)])
    assert code == 0
    capability = torch.backends.cpu.get_cpu_capability()
    report = json.loads((tmp_path / f"speed-cpu-{capability.lower()}-float32.json").read_text())
    machine = report["machine"]
    assert machine["capability"] == capability and machine["precision"] == "float32"
    assert machine["cores"] >= 1 and machine["cpu"]
    photo = report["photo"]
    assert set(photo["gflops"]) == {"features", "optimise", "sample"} and min(photo["gflops"].values()) > 0
    assert photo["gflops_total"] == pytest.approx(sum(photo["gflops"].values()))
    assert photo["first_over_warm"] == pytest.approx(photo["first_call_seconds"] / photo["seconds"]["gdc_quiet"])
    assert photo["warm_up_seconds"] > 0
    out = capsys.readouterr().out
    assert f"torch CPU capability {capability}" in out and "head arithmetic float32 (precision float32)" in out
    assert "GFLOP per cold job: features" in out and "x a warm call" in out


@pytest.mark.parametrize("device, machine, stem", [
    ("cpu", {"capability": "AVX2", "precision": "float32"}, "speed-cpu-avx2-float32"),
    ("cuda:1", {"capability": "AVX512", "precision": "bfloat16"}, "speed-cuda"),
])
def test_a_cpu_report_is_named_by_instruction_set_and_arithmetic(device, machine, stem):
    assert report_stem(device, machine) == stem


def only_report(folder) -> dict:
    (path,) = folder.glob("speed-cpu-*.json")
    return json.loads(path.read_text())


def test_bench_speed_needs_a_two_class_photo_for_grabcut(tiny_dataset, tmp_path, capsys):
    code = main(["bench", "speed", "--data", str(tiny_dataset), "--scribbles", "marks", "--image", "b",
                 "--output-dir", str(tmp_path)])
    assert code == 2
    assert "b has 3 scribble classes" in capsys.readouterr().err


def test_phase_flops_follow_the_steps_and_samples_and_the_peak_is_positive():
    from benchmarks.speed import matmul_peak, phase_flops
    from gdc.options import SegmentOptions
    from tests.conftest import make_scene

    image, _, scribbles = make_scene(2)
    runs = [phase_flops(image, scribbles, SegmentOptions(steps=n, samples=n, edges=False)) for n in (2, 4, 6)]
    assert all(set(run) == {"features", "optimise", "sample"} for run in runs)  # the numpy phases count none
    assert runs[0]["features"] == runs[1]["features"] > 0
    assert runs[1]["optimise"] == pytest.approx(2 * runs[0]["optimise"], rel=0.01)  # every step alike
    # Sampling multiplies the GDC's weights by the features once, then runs each sample's classifier.
    assert runs[2]["sample"] - runs[1]["sample"] == pytest.approx(runs[1]["sample"] - runs[0]["sample"], rel=0.01)
    assert matmul_peak(size=128, repeats=2) > 0
