"""benchmarks/gpu: the wheels the device call carries, and the summary of its figures.

The run itself needs the device; ``GDC_GPU_DRY_RUN=1 benchmarks/gpu/run.sh`` tries it on the CPU.
"""
import importlib.util
import json
import re
from importlib.metadata import version

import pytest
import tomllib

from tests.conftest import REPO

GPU = REPO / "benchmarks" / "gpu"
# What the device's python3 has already (/work/.library/device/KINDS.md), among the project's needs.
ON_THE_DEVICE = {"torch", "numpy", "pillow", "scikit-image", "httpx", "tqdm", "prometheus-client", "opencv-python-headless"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"gpu_{name}", GPU / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_wheels_fetched_are_the_versions_this_environment_runs(tmp_path):
    listed = tmp_path / "wheels.txt"
    listed.write_text("# a comment\nrq  # the queue\n\nnot-a-package-installed-here\n")
    assert load("pins").requirements(listed) == [f"rq=={version('rq')}", "not-a-package-installed-here"]


def test_every_dependency_the_run_needs_is_carried_or_on_the_device():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    needed = project["dependencies"] + project["optional-dependencies"]["engine"]
    names = {canonical(re.match(r"[A-Za-z0-9_.-]+", requirement).group()) for requirement in needed}
    missing = names - ON_THE_DEVICE - {canonical(name) for name in load("pins").names()}
    assert not missing, f"add to benchmarks/gpu/wheels.txt (the device lacks them): {sorted(missing)}"


@pytest.fixture
def steps():
    return load("steps")


def write(path, value) -> None:
    path.write_text(json.dumps(value))


def test_the_summary_holds_each_figure_against_its_target(steps, tmp_path):
    size = dict(megapixels=0.24, width=625, height=391, total=0.09, peak_cuda_mb=300.0,
                phases={"superpixels": 0.03, "optimise": 0.05})
    write(tmp_path / "speed-cuda.json", dict(machine="NVIDIA H200", device="cuda", sizes=[size],
                                             icg_625x391_total_s=0.12, icg_625x391_phases_s={"optimise": 0.08}))
    evaluation = lambda miou: dict(images=58, summary=dict(miou=dict(mean=miou), seconds=dict(mean=0.1)))  # noqa: E731
    write(tmp_path / "eval-cuda.json", evaluation(0.790))
    write(tmp_path / "eval-cpu.json", evaluation(0.800))
    write(tmp_path / "throughput.json", dict(runs=[
        dict(in_flight=1, jobs_per_second=12.0, median_latency_s=0.08),
        dict(in_flight=4, jobs_per_second=25.0, median_latency_s=0.16),
    ]))
    write(tmp_path / "throughput-2workers.json", dict(runs=[dict(in_flight=4, jobs_per_second=40.0, median_latency_s=0.1)]))
    (tmp_path / "tests.txt").write_text("31 passed in 20.0s\n")

    assert steps.main(["summary", str(tmp_path), "--tests", str(tmp_path / "tests.txt")]) == 0
    text = (tmp_path / "summary.md").read_text()
    assert "engine tests: 31 passed" in text
    assert "machine: NVIDIA H200" in text
    assert "| 0.24 | 625x391 | 0.090 | 300 | 0.030 | 0.050 |" in text
    assert "icg_625x391_total_s = 0.1200 s (misses the 0.100 s target)" in text
    assert "difference -1.00 (OUTSIDE ±0.5)" in text
    assert "1 in flight: 12.00 jobs/s (below 20)" in text
    assert "4 in flight: 25.00 jobs/s (meets 20)" in text
    assert text.index("## two workers sharing the GPU") < text.index("4 in flight: 40.00 jobs/s (meets 20)")
