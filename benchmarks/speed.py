"""``gdc bench speed``: gdc against GrabCut, steadiness beside a busy core, jobs/s per worker count,
and how time grows with the image (issues 6 and 15).

Three measurements, in one run so that their ratios share the machine's load:

* **One photo** (``--data``/``--image``, by default a generated two-class scene of the
  same size): the engine's time against OpenCV GrabCut's on the same image and scribbles,
  each quiet and with one core kept busy by a spinning process this bench starts and
  stops. The methods and the loads take turns, so drifting load falls on all alike.
* **The service**: ``gdc serve --workers N`` (embedded Redis, one torch thread per
  worker) for each N of ``--workers``: jobs/s over ``--jobs`` jobs of that photo submitted
  at once, and for the last N one job's end-to-end time quiet and beside a busy core.
* **Rounds** (``--rounds``): what a person painting waits for, with ``gdc serve`` and one
  worker: a first round (half of each class's strokes, a cold job) and a refine (all strokes,
  ``previous`` the first), each from the web page's Segment button to the mask on screen
  (headless Chromium, :mod:`benchmarks.page`) and as an HTTP round trip (POST /segment, then
  GET /jobs/{id}/mask?wait, the mask's bytes in hand); the same two rounds in-process sit
  beside GrabCut in the photo's measurement.
* **Sizes** (``--sizes``): per-phase time and peak memory from 0.1 to 12 megapixels, each
  size in a fresh process so its peak memory is its own, on a photo that scikit-image
  ships with three classes of thin scribbles drawn in code; the time to the mask and to the
  whole result, which for an image above the working size differ by the upsampling of its
  probabilities and uncertainty.

The report, ``speed-cpu-<capability>-<precision>.json`` (``speed-cuda.json`` on a GPU) and its plot,
records what ran it: the CPU's model and cores, torch's CPU capability (the instruction
set its kernels use; ``ATEN_CPU_CAPABILITY=avx2`` with ``ONEDNN_MAX_CPU_ISA=AVX2`` measures the AVX2
class on a newer CPU) and the head's arithmetic; and the photo's GFLOP per phase of a cold job.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np

from apps.launch import running_service
from gdc.errors import InputError

from . import CHECKOUT

PHASES = ("decode", "superpixels", "features", "optimise", "sample", "upsample", "edges", "encode")
DEFAULT_SIZES = "0.1,0.2,0.5,1,2,4"
DEFAULT_IMAGE = "image_0108_9010"  # the icg-dev photo issue 15 measured
BUSY_SETTLE_SECONDS = 0.5  # lets the spinning process take its core before timing starts
SERVICE_START_SECONDS = 300  # workers import torch and load the stem; slow on a loaded machine
# How often the bench asks for a job's status. Jobs/s asks every 0.1 s, as a client would: at
# 0.02 s the polling (the bench's requests and the API answering them) competed with two busy
# workers for the two cores, and 2 workers measured 1.54x one, against 1.78-2.26x at 0.1 s
# (benchmarks/RESULTS.md, 7. The service). One job's latency asks every 0.02 s, so it is read to the step.
THROUGHPUT_POLL_SECONDS = 0.1
LATENCY_POLL_SECONDS = 0.02


def test_scene(megapixels: float, classes: int = 3) -> tuple[bytes, np.ndarray]:
    """(JPEG bytes, scribbles) of about ``megapixels``, 3:2, in 1-3 px strokes.

    Three classes: the background, the astronaut's suit, her face and hair; two: the
    background against the astronaut.
    """
    import skimage.data
    from PIL import Image, ImageDraw

    width = round(math.sqrt(megapixels * 1e6 * 1.5))
    height = round(width / 1.5)
    photo = Image.fromarray(skimage.data.astronaut()).resize((width, height), Image.Resampling.BILINEAR)
    encoded = io.BytesIO()
    photo.save(encoded, format="JPEG", quality=90)
    scribbles = Image.new("L", (width, height))
    draw = ImageDraw.Draw(scribbles)
    stroke = max(1, width // 600)
    for value, points in (
        (1, [(0.05, 0.1), (0.08, 0.9)]), (1, [(0.95, 0.1), (0.92, 0.9)]),
        (2, [(0.3, 0.8), (0.7, 0.85)]),
        (min(3, classes), [(0.42, 0.25), (0.55, 0.35)]),
    ):
        draw.line([(x * width, y * height) for x, y in points], fill=value, width=stroke)
    return encoded.getvalue(), np.asarray(scribbles)


def load_photo(data_dir: str | None, name: str, scribbles_folder: str = "scribbles") -> tuple[str, bytes, np.ndarray]:
    """(name, encoded image, scribbles) of ``data_dir``'s image ``name``, or a generated two-class scene."""
    from PIL import Image

    if data_dir is None:
        encoded, scribbles = test_scene(625 * 391 / 1e6, classes=2)
        return "generated two-class scene", encoded, scribbles
    root = Path(data_dir)
    images = sorted((root / "images").glob(f"{name}.*"))
    if not images:
        raise FileNotFoundError(f"no image named {name} in {root / 'images'}")
    scribbles = np.asarray(Image.open(root / scribbles_folder / f"{name}.png"))
    classes = len(np.unique(scribbles[scribbles > 0]))
    if classes != 2:
        raise InputError(f"{name} has {classes} scribble classes; GrabCut, the comparison, separates two")
    return name, images[0].read_bytes(), scribbles


@contextmanager
def busy_core():
    """Another program keeping one core busy (a Python loop), for as long as the block runs."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(BUSY_SETTLE_SECONDS)
        yield
    finally:
        spinner.kill()
        spinner.wait()


def run_once(encoded: bytes, scribbles: np.ndarray, options) -> tuple[dict[str, float], float]:
    """Seconds per phase for one image, bytes in and the mask's PNG bytes out, then the full-resolution
    probabilities; and the seconds of the phases before the mask (a shrunk image's upsampling comes after it)."""
    from gdc.engine import segment
    from gdc.imageio import encode_png, read_image

    started = time.perf_counter()
    image = read_image(encoded)
    decoded = time.perf_counter()
    result = segment(image, scribbles, options)
    encode_start = time.perf_counter()
    encode_png(result.labels)
    phases = {"decode": decoded - started, **result.timings, "encode": time.perf_counter() - encode_start}
    mask = sum(phases.values())
    result.probabilities  # noqa: B018 - brings a shrunk image's to full size, timed in its timings as upsample
    return phases | result.timings, mask


def measure_photo(encoded: bytes, scribbles: np.ndarray, options, repeats: int) -> dict:
    """gdc's engine time and GrabCut's on one image, quiet and beside a busy core: medians and ratios.

    ``gdc_refine`` is the second of two rounds: all of ``scribbles`` refining a first round on half
    of each class's strokes (:func:`benchmarks.refine.first_half`). ``first_call_seconds`` is this
    process's first segment() of the photo, after the warm-up a worker and ``gdc segment`` run as
    they start (:func:`gdc.warmup.warm_up`, ``warm_up_seconds``).
    """
    from gdc.engine import segment
    from gdc.imageio import read_image
    from gdc.warmup import warm_up

    from .peers import grabcut_labels
    from .refine import first_half

    image = read_image(encoded)
    started = time.perf_counter()
    warm_up(options)  # what a worker and `gdc segment` run as they start
    warming = time.perf_counter() - started
    started = time.perf_counter()
    segment(image, scribbles, options)
    first_call = time.perf_counter() - started
    first_round = segment(image, first_half(scribbles), options).warm_start
    methods = {
        "gdc": lambda: segment(image, scribbles, options).timings,
        "gdc_refine": lambda: segment(image, scribbles, options, previous=first_round).timings,
        "grabcut": lambda: grabcut_labels(image, scribbles),
    }
    for label in methods.values():
        label()  # warm-up: the stem, the allocator, OpenCV's first call
    seconds = {(name, load): [] for name in methods for load in ("quiet", "busy")}
    phases = []
    for _ in range(repeats):
        for load in ("quiet", "busy"):
            with busy_core() if load == "busy" else nullcontext():
                for name, label in methods.items():
                    started = time.perf_counter()
                    timings = label()
                    seconds[name, load].append(time.perf_counter() - started)
                    if name == "gdc" and load == "quiet":
                        phases.append(timings)
    median = {f"{name}_{load}": statistics.median(runs) for (name, load), runs in seconds.items()}
    gdc_phases = {phase: statistics.median(run[phase] for run in phases) for phase in phases[0]}
    flops = phase_flops(image, scribbles, options)
    return dict(
        width=image.shape[1],
        height=image.shape[0],
        seconds=median,
        gdc_phases=gdc_phases,
        warm_up_seconds=warming,
        first_call_seconds=first_call,
        first_over_warm=first_call / median["gdc_quiet"],
        gflops={phase: count / 1e9 for phase, count in flops.items()},
        gflops_total=sum(flops.values()) / 1e9,
        gflops_per_second={phase: count / 1e9 / gdc_phases[phase] for phase, count in flops.items()},
        matmul_peak_gflops_per_second=matmul_peak(),
        gdc_over_grabcut=median["gdc_quiet"] / median["grabcut_quiet"],
        refine_over_grabcut=median["gdc_refine_quiet"] / median["grabcut_quiet"],
        gdc_busy_over_quiet=median["gdc_busy"] / median["gdc_quiet"],
        grabcut_busy_over_quiet=median["grabcut_busy"] / median["grabcut_quiet"],
    )


def phase_flops(image: np.ndarray, scribbles: np.ndarray, options) -> dict[str, float]:
    """FLOPs of each phase of one cold job, as torch's FlopCounterMode counts them.

    It counts convolutions and matrix products (the stem's, the head's and the GDC's product
    of taps and weights); the GDC's gathers and the numpy phases (superpixels, edges) count none.
    The job's progress reports mark where each phase starts.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from gdc.engine import segment

    counter = FlopCounterMode(display=False)
    flops: dict[str, float] = {}
    current = {"phase": None, "since": 0}

    def progress(phase: str, step: int, total: int) -> None:
        done = counter.get_total_flops()
        if current["phase"] is not None:
            flops[current["phase"]] = flops.get(current["phase"], 0) + done - current["since"]
        current.update(phase=phase, since=done)

    with counter:
        segment(image, scribbles, options, progress=progress)
    progress("end", 0, 0)
    return {phase: count for phase, count in flops.items() if count}


def matmul_peak(size: int = 1024, repeats: int = 20) -> float:
    """GFLOP/s of a float32 (size x size) matrix product on the engine's threads: what they reach at best."""
    import torch

    from gdc.torch_threads import thread_policy

    with thread_policy():
        a, b = torch.randn(size, size), torch.randn(size, size)
        a @ b
        started = time.perf_counter()
        for _ in range(repeats):
            a @ b
        return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def measure_service(
    url: str, workers: int, threads: int, encoded: bytes, scribbles: np.ndarray, options, jobs: int,
    latency_repeats: int,
) -> dict:
    """Jobs/s through the ``gdc serve`` at ``url`` (``workers`` workers of ``threads`` threads) with ``jobs``
    submitted at once; and one job's seconds quiet and beside a busy core."""
    from gdc.client import Client
    from gdc.imageio import encode_png

    scribbles_png = encode_png(scribbles.astype(np.uint8))
    job_options = dict(steps=options.steps, samples=options.samples, sigma=options.sigma,
                       superpixel_size=options.superpixel_size, conv=options.conv)

    def run_jobs(client: Client, seeds: range, poll: float = THROUGHPUT_POLL_SECONDS) -> None:
        ids = [client.submit(encoded, scribbles_png, seed=seed, **job_options) for seed in seeds]
        for job_id in ids:
            client.wait(job_id, timeout=SERVICE_START_SECONDS, poll=poll)
            client.result(job_id, "mask")

    with Client(url) as client:
        run_jobs(client, range(workers))  # warm-up: each worker's first job
        started = time.perf_counter()
        run_jobs(client, range(jobs))
        seconds = time.perf_counter() - started
        record = dict(workers=workers, threads=threads, jobs=jobs, seconds=seconds, jobs_per_second=jobs / seconds)
        if latency_repeats:
            latency = {"quiet": [], "busy": []}
            for repeat in range(latency_repeats):
                for load in latency:
                    with busy_core() if load == "busy" else nullcontext():
                        started = time.perf_counter()
                        run_jobs(client, range(repeat, repeat + 1), LATENCY_POLL_SECONDS)
                        latency[load].append(time.perf_counter() - started)
            record["job_seconds"] = {load: statistics.median(runs) for load, runs in latency.items()}
            record["job_busy_over_quiet"] = record["job_seconds"]["busy"] / record["job_seconds"]["quiet"]
    return record


def measure_rounds(url: str, encoded: bytes, scribbles: np.ndarray, options, repeats: int) -> dict:
    """Seconds a person waits for round 1 and a refine through the ``gdc serve`` at ``url``, one worker
    (medians of ``repeats``).

    ``http``: POST /segment, then GET the mask with ``?wait`` (one kept-alive connection, as a script's
    client would). ``page``: the web page, when Chromium and Playwright are here (:mod:`benchmarks.page`).
    """
    import httpx

    from gdc.imageio import encode_png

    from . import page
    from .refine import first_half

    first = first_half(scribbles)
    job_options = dict(steps=options.steps, samples=options.samples, sigma=options.sigma,
                       superpixel_size=options.superpixel_size, conv=options.conv)
    seconds = {"round1": [], "refine": []}

    def round_trip(client: httpx.Client, files: dict, data: dict) -> tuple[str, float]:
        started = time.perf_counter()
        posted = client.post("/segment", files=files, data=data)
        posted.raise_for_status()
        job_id = posted.json()["id"]
        client.get(f"/jobs/{job_id}/mask", params={"wait": 60}).raise_for_status()
        return job_id, time.perf_counter() - started

    with httpx.Client(base_url=url, timeout=120) as client:
        for repeat in range(repeats + 1):  # the first pair warms up the worker and the connection
            data = {key: str(value) for key, value in job_options.items()} | {"seed": str(repeat)}
            job_id, cold = round_trip(client, {"image": encoded, "scribbles": encode_png(first)}, data)
            _, warm = round_trip(client, {"scribbles": encode_png(scribbles)}, data | {"previous": job_id})
            if repeat:
                seconds["round1"].append(cold)
                seconds["refine"].append(warm)
        record = {"http": {name: statistics.median(runs) for name, runs in seconds.items()}}
        missing = page.available()
        if missing:
            print(f"  (the web page is not timed: {missing})", file=sys.stderr)
        else:
            with tempfile.NamedTemporaryFile(suffix=".jpg") as image_file:
                image_file.write(encoded)
                image_file.flush()
                shown = page.page_rounds(url, Path(image_file.name), first, scribbles, repeats)
            record["page"] = {name: statistics.median(runs) for name, runs in shown.items()}
    return record


def measure_size(megapixels: float, repeats: int, options) -> dict:
    """Median phase times over ``repeats`` runs after one warm-up, and this process's peak memory."""
    import torch

    encoded, scribbles = test_scene(megapixels)
    run_once(encoded, scribbles, options)  # warm-up: loads the stem, settles the allocator
    if options.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    runs, masks = zip(*(run_once(encoded, scribbles, options) for _ in range(repeats)))
    phases = {phase: statistics.median(run.get(phase, 0.0) for run in runs) for phase in PHASES}
    record = dict(
        requested_megapixels=megapixels,
        megapixels=scribbles.size / 1e6,
        width=scribbles.shape[1],
        height=scribbles.shape[0],
        phases=phases,
        mask=statistics.median(masks),
        total=statistics.median(sum(run.values()) for run in runs),
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    if options.device.startswith("cuda"):
        record["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return record


def growth_slope(records: list[dict], low: float = 0.0, high: float = float("inf")) -> float | None:
    """The exponent b of total time ∝ pixels^b over the sizes asked for in [low, high], fitted in log-log space.

    1 is linear. None with fewer than two such sizes. Sizes count as asked for (``--sizes``), since
    the scene generated for "1" MP holds slightly more than 10^6 pixels.
    """
    kept = [r for r in records if low <= r["requested_megapixels"] <= high]
    if len(kept) < 2:
        return None
    pixels = np.log([r["megapixels"] for r in kept])
    seconds = np.log([r["total"] for r in kept])
    return float(np.polyfit(pixels, seconds, 1)[0])


def _exponent(slope: float | None) -> str:
    return "n/a (fewer than two sizes)" if slope is None else f"pixels^{slope:.2f}"


def machine(options) -> dict:
    """What ran the figures: the CPU's model and usable cores, torch's CPU capability (the instruction set its
    kernels were picked for: ``ATEN_CPU_CAPABILITY`` lowers it), the GPU when the device is one, and the head's
    arithmetic that ``options.precision`` comes to there."""
    import torch

    from gdc.threads import usable_cores
    from gdc.training import head_dtype

    device = torch.device(options.device)
    record = dict(
        cpu=cpu_model(),
        cores=usable_cores(),
        capability=torch.backends.cpu.get_cpu_capability(),
        precision=str(head_dtype(options.precision, device)).removeprefix("torch."),
    )
    if device.type == "cuda":
        record["gpu"] = torch.cuda.get_device_name(device)
    return record


def cpu_model() -> str:
    """The CPU's model as Linux names it (/proc/cpuinfo), else what Python's platform module knows."""
    info = Path("/proc/cpuinfo")
    model = re.search(r"^model name\s*:\s*(.+)$", info.read_text(), re.MULTILINE) if info.exists() else None
    return model.group(1).strip() if model else platform.processor() or platform.machine()


def describe(machine: dict, precision_option: str) -> str:
    """One line naming the machine and the arithmetic, as the report's ``machine`` records them."""
    gpu = f", {machine['gpu']}" if "gpu" in machine else ""
    return (f"{machine['cpu']}, {machine['cores']} cores, torch CPU capability {machine['capability']}{gpu}; "
            f"head arithmetic {machine['precision']} (precision {precision_option})")


def report_stem(device: str, machine: dict) -> str:
    """The report's file name without suffix: ``speed-cpu-avx2-float32`` on a CPU, whose instruction set and
    arithmetic the runs compared differ by; ``speed-cuda`` on a GPU (benchmarks/gpu/run.sh collects it)."""
    kind = device.split(":")[0]
    return f"speed-{kind}-{machine['capability'].lower()}-{machine['precision']}" if kind == "cpu" else f"speed-{kind}"


def table(records: list[dict]) -> str:
    header = f"{'MP':>5} {'size':>11} " + " ".join(f"{p:>11}" for p in PHASES)
    lines = [header + f" {'mask':>8} {'total':>8} {'peak MB':>8}"]
    for r in records:
        cells = " ".join(f"{r['phases'][p]:11.3f}" for p in PHASES)
        size = f"{r['width']:>5}x{r['height']:<5}"
        lines.append(f"{r['megapixels']:5.2f} {size} {cells} {r['mask']:8.3f} {r['total']:8.3f} {r['peak_rss_mb']:8.0f}")
    lines.append("mask: the phases up to the encoded mask; above the working size, the probabilities' and "
                 "uncertainty's upsampling comes after it (the service stores the mask first)")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    """Up to three panels: the photo quiet and busy against GrabCut, jobs/s per worker count, phases by size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [key for key in ("photo", "service", "sizes") if report.get(key)]
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5), squeeze=False)
    for axis, panel in zip(axes[0], panels):
        if panel == "photo":
            seconds = report["photo"]["seconds"]
            for offset, (name, colour) in enumerate((("gdc", "tab:blue"), ("grabcut", "tab:orange"))):
                values = [seconds[f"{name}_quiet"], seconds[f"{name}_busy"]]
                axis.bar(np.arange(2) + 0.4 * offset, values, 0.4, label=name, color=colour)
            axis.set_xticks(np.arange(2) + 0.2, ["quiet", "one core busy"])
            axis.set_ylabel("seconds per image")
            axis.set_title(f"{report['photo']['name']}: gdc / GrabCut = {report['photo']['gdc_over_grabcut']:.2f}")
            axis.legend(fontsize=8)
        elif panel == "service":
            runs = report["service"]["runs"]
            axis.bar([str(run["workers"]) for run in runs], [run["jobs_per_second"] for run in runs])
            axis.set_xlabel(f"workers ({runs[0]['threads']} thread each)")
            axis.set_ylabel("jobs per second")
            axis.set_title(f"gdc serve: {report['service']['speedup']:.2f}x from 1 to {runs[-1]['workers']} workers")
        else:
            records = report["sizes"]
            bottom = np.zeros(len(records))
            for phase in PHASES:
                values = np.array([r["phases"][phase] for r in records])
                axis.bar(range(len(records)), values, bottom=bottom, label=phase)
                bottom += values
            axis.set_xticks(range(len(records)), [f"{r['megapixels']:.1f}" for r in records])
            axis.set_xlabel("megapixels")
            axis.set_ylabel("seconds per image")
            axis.set_title(f"per phase (up to the working size: time ∝ {_exponent(report['slope'])})")
            axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def run(args: argparse.Namespace) -> int:
    from apps.arguments import engine_options

    options = engine_options(args)
    report = dict(device=options.device, threads=args.threads, machine=machine(options), options=options.model_dump())
    print(f"machine: {describe(report['machine'], options.precision)}")
    name, encoded, scribbles = load_photo(args.data, args.image, args.scribbles)
    photo = measure_photo(encoded, scribbles, options, args.repeats)
    report["photo"] = dict(name=name, **photo)
    s = photo["seconds"]
    print(f"{name} ({photo['width']}x{photo['height']}), {args.threads} thread(s), medians of {args.repeats}:")
    print(f"  quiet:          gdc {s['gdc_quiet']:.3f} s, GrabCut {s['grabcut_quiet']:.3f} s: "
          f"gdc / GrabCut = {photo['gdc_over_grabcut']:.2f}")
    print("  GFLOP per cold job: " + ", ".join(f"{phase} {count:.2f}" for phase, count in photo["gflops"].items())
          + f"; total {photo['gflops_total']:.2f}")
    print(f"  first call after the warm-up ({photo['warm_up_seconds']:.2f} s): {photo['first_call_seconds']:.3f} s, "
          f"{photo['first_over_warm']:.2f}x a warm call")
    print(f"  one core busy:  gdc {s['gdc_busy']:.3f} s ({photo['gdc_busy_over_quiet']:.2f}x quiet), "
          f"GrabCut {s['grabcut_busy']:.3f} s ({photo['grabcut_busy_over_quiet']:.2f}x quiet)")
    print("  gdc phases: " + ", ".join(f"{phase} {seconds:.3f}" for phase, seconds in photo["gdc_phases"].items()))
    print(f"  achieved (torch's FlopCounterMode: convolutions and matrix products), against a "
          f"{photo['matmul_peak_gflops_per_second']:.1f} GFLOP/s matrix product: " + ", ".join(
              f"{phase} {photo['gflops'][phase]:.2f} GFLOP at {rate:.1f} GFLOP/s"
              for phase, rate in photo["gflops_per_second"].items()))
    print(f"  refine (all strokes after half of them): gdc {s['gdc_refine_quiet']:.3f} s: "
          f"gdc refine / GrabCut = {photo['refine_over_grabcut']:.2f}")
    worker_counts = [int(n) for n in args.workers.split(",") if n.strip()]
    runs = []
    # One gdc serve per worker count, started once: the rounds share the one-worker service with jobs/s.
    for workers in sorted(set(worker_counts) | ({1} if args.rounds else set())):
        with running_service(workers, env={**os.environ, "GDC_WORKER_THREADS": str(args.worker_threads)},
                             timeout=SERVICE_START_SECONDS) as url:
            if workers == 1 and args.rounds:
                report["rounds"] = measure_rounds(url, encoded, scribbles, options, args.repeats)
            if workers in worker_counts:
                runs.append(measure_service(url, workers, args.worker_threads, encoded, scribbles, options,
                                            args.jobs, args.repeats if workers == max(worker_counts) else 0))
    if args.rounds:
        rounds = report["rounds"]
        print(f"what a person waits for (gdc serve, 1 worker, medians of {args.repeats}), beside the engine in-process:")
        print(f"  {'':<9} {'page click to mask':>19} {'HTTP round trip':>16} {'engine':>8} {'/ GrabCut':>10}")
        for name, engine in (("round1", s["gdc_quiet"]), ("refine", s["gdc_refine_quiet"])):
            shown = f"{rounds['page'][name]:.3f} s" if "page" in rounds else "-"
            print(f"  {name:<9} {shown:>19} {rounds['http'][name]:14.3f} s {engine:6.3f} s "
                  f"{engine / s['grabcut_quiet']:10.2f}")
    if runs:
        speedup = runs[-1]["jobs_per_second"] / runs[0]["jobs_per_second"]
        report["service"] = dict(runs=runs, speedup=speedup)
        for record in runs:
            print(f"gdc serve, {record['workers']} worker(s) x {record['threads']} thread(s): "
                  f"{record['jobs_per_second']:.2f} jobs/s ({record['jobs']} jobs)")
        last = runs[-1]
        print(f"  {last['workers']} against {runs[0]['workers']} worker(s): {speedup:.2f}x the jobs/s")
        print(f"  one job through {last['workers']} worker(s): quiet {last['job_seconds']['quiet']:.3f} s, "
              f"one core busy {last['job_seconds']['busy']:.3f} s ({last['job_busy_over_quiet']:.2f}x)")
    sizes = [float(size) for size in args.sizes.split(",") if size.strip()]
    records = []
    for megapixels in sizes:
        spec = json.dumps(dict(megapixels=megapixels, repeats=args.repeats, threads=args.threads,
                               options=options.model_dump()))
        output = subprocess.run(
            [sys.executable, "-m", "benchmarks.speed", spec], check=True, capture_output=True, text=True, cwd=CHECKOUT
        ).stdout
        records.append(json.loads(output))
        print(f"{megapixels} MP: the mask {records[-1]['mask']:.2f} s, all {records[-1]['total']:.2f} s",
              file=sys.stderr)
    if records:
        cap = options.max_pixels / 1e6
        report.update(sizes=records, slope=growth_slope(records, high=cap), slope_up_to_mp=cap,
                      slope_above=growth_slope(records, low=cap))
        print(table(records))
        print(f"up to the {cap:g} MP working size time grows as {_exponent(report['slope'])} (1.00 is linear); "
              f"from it on, where the engine works at that size and only decoding, upsampling and the edges' "
              f"full-resolution band grow, as {_exponent(report['slope_above'])}")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = report_stem(options.device, report["machine"])
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    plot(report, out / f"{stem}.png")
    print(f"wrote {out / stem}.json and .png")
    return 0


def add_parser(commands) -> None:
    from apps.arguments import add_engine_options, thread_count
    from gdc.threads import DEFAULT_THREADS

    parser = commands.add_parser(
        "speed", help="gdc against GrabCut, beside a busy core, jobs/s per worker count, time by image size"
    )
    parser.add_argument("--data", help="a data set folder (images/, scribbles/) holding --image; default: a generated scene")
    parser.add_argument("--scribbles", default="scribbles", help="scribble folder name in --data (default scribbles)")
    parser.add_argument("--image", default=DEFAULT_IMAGE, help=f"image name in --data (default {DEFAULT_IMAGE}); two classes, for GrabCut")
    parser.add_argument("--workers", default="1,2", help="worker counts of gdc serve to measure jobs/s for (default 1,2; empty: skip)")
    parser.add_argument("--worker-threads", type=thread_count, default=DEFAULT_THREADS,
                        help=f"torch threads of each worker (default {DEFAULT_THREADS})")
    parser.add_argument("--rounds", action=argparse.BooleanOptionalAction, default=True,
                        help="time round 1 and a refine through gdc serve: the web page and HTTP (default on)")
    parser.add_argument("--jobs", type=int, default=8, help="jobs submitted at once per worker count (default 8)")
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help=f"megapixels to measure (default {DEFAULT_SIZES}; empty: skip)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each measurement, after a warm-up (default 3)")
    parser.add_argument("--output-dir", default="benchmarks", help="where to write JSON and the plot")
    add_engine_options(parser)
    parser.set_defaults(func=run)


if __name__ == "__main__":  # one size, in its own process: python -m benchmarks.speed SPEC_JSON
    from gdc.threads import passive_openmp

    passive_openmp()
    from gdc.options import SegmentOptions
    from gdc.torch_threads import set_threads

    spec = json.loads(sys.argv[1])
    set_threads(spec["threads"])
    print(json.dumps(measure_size(spec["megapixels"], spec["repeats"], SegmentOptions(**spec["options"]))))
