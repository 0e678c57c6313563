"""The measuring steps of benchmarks/gpu/run.sh that no ``gdc`` command does (issue 20).

    python benchmarks/gpu/steps.py photo-time   SPEED_JSON PHOTO SCRIBBLES --device cuda
    python benchmarks/gpu/steps.py throughput   URL PHOTO SCRIBBLES --in-flight 1,2,4 --jobs 24 --json F
    python benchmarks/gpu/steps.py profile      PHOTO SCRIBBLES --device cuda --output F
    python benchmarks/gpu/steps.py summary      OUT_DIR

``photo-time`` adds to ``gdc bench speed``'s JSON the end-to-end engine time of one icg-dev
photo (``icg_625x391_total_s``, the issue's ≤ 100 ms target), so speed.py stays as it is.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PHOTO_KEY = "icg_625x391"
TARGET_PHOTO_SECONDS = 0.100
TARGET_JOBS_PER_SECOND = 20.0
MIOU_TOLERANCE = 0.005  # the CPU's mIoU within 0.5 points


def read_photo(photo: str, scribbles: str):
    from gdc.imageio import read_image, read_labels

    return read_image(Path(photo).read_bytes()), read_labels(Path(scribbles).read_bytes())


def photo_time(args: argparse.Namespace) -> int:
    """Median wall time of segment() on one photo, after a warm-up, and its median phases; into SPEED_JSON."""
    from apps.arguments import engine_options
    from gdc.engine import segment

    image, scribbles = read_photo(args.photo, args.scribbles)
    options = engine_options(args)
    segment(image, scribbles, options)  # warm-up: the stem, kernels, the allocator
    totals, phases = [], []
    for _ in range(args.repeats):
        started = time.perf_counter()
        result = segment(image, scribbles, options)  # numpy out: the device has finished
        totals.append(time.perf_counter() - started)
        phases.append(result.timings)
    path = Path(args.speed_json)
    report = json.loads(path.read_text()) if path.exists() else {}
    report[f"{PHOTO_KEY}_total_s"] = statistics.median(totals)
    report[f"{PHOTO_KEY}_phases_s"] = {name: statistics.median(p[name] for p in phases) for name in phases[0]}
    report[f"{PHOTO_KEY}_photo"] = Path(args.photo).name
    path.write_text(json.dumps(report, indent=2))
    print(f"{Path(args.photo).name} on {options.device}: {1000 * report[f'{PHOTO_KEY}_total_s']:.1f} ms "
          f"(median of {args.repeats}); phases {report[f'{PHOTO_KEY}_phases_s']}")
    return 0


def throughput(args: argparse.Namespace) -> int:
    """Jobs per second through a running server, with 1, 2, 4 ... jobs in flight."""
    from gdc.client import Client

    image = Path(args.photo).read_bytes()
    scribbles = Path(args.scribbles).read_bytes()

    def one_job(client: Client) -> float:
        started = time.perf_counter()
        job_id = client.submit(image, scribbles, steps=args.steps, samples=args.samples)
        client.wait(job_id, timeout=120, poll=args.poll)
        client.result(job_id, "mask")
        return time.perf_counter() - started

    records = []
    with Client(args.url) as client:
        for _ in range(args.warmup):
            one_job(client)
        for in_flight in (int(n) for n in args.in_flight.split(",")):
            started = time.perf_counter()
            with ThreadPoolExecutor(in_flight) as pool:
                latencies = list(pool.map(lambda _: one_job(client), range(args.jobs)))
            seconds = time.perf_counter() - started
            records.append(dict(in_flight=in_flight, jobs=args.jobs, seconds=seconds, jobs_per_second=args.jobs / seconds,
                                median_latency_s=statistics.median(latencies)))
            print(f"{in_flight} in flight: {args.jobs / seconds:.2f} jobs/s, "
                  f"median latency {statistics.median(latencies):.3f} s", flush=True)
    Path(args.json).write_text(json.dumps(dict(url=args.url, photo=Path(args.photo).name, runs=records), indent=2))
    return 0


def profile(args: argparse.Namespace) -> int:
    """Top operators and kernels by device time (CPU time on a CPU), and the engine's phase times."""
    import torch
    from torch.profiler import ProfilerActivity

    from apps.arguments import engine_options
    from gdc.engine import segment

    image, scribbles = read_photo(args.photo, args.scribbles)
    options = engine_options(args)
    segment(image, scribbles, options)  # warm-up
    cuda = options.device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    timings = []
    with torch.profiler.profile(activities=activities) as profiler:
        for _ in range(args.repeats):
            timings.append(segment(image, scribbles, options).timings)
    averages = profiler.key_averages()
    phases = {name: statistics.median(t[name] for t in timings) for name in timings[0]}
    lines = [f"# {Path(args.photo).name} on {options.device}, {args.repeats} runs under the profiler", "",
             "## engine phases, median seconds (profiler overhead included)", ""]
    lines += [f"{name:>14}: {seconds:.4f}" for name, seconds in phases.items()]
    lines += ["", f"{'total':>14}: {sum(phases.values()):.4f}", ""]
    if cuda:
        lines += ["## by self device time (kernels)", "", averages.table(sort_by="self_device_time_total", row_limit=25), ""]
    lines += ["## by self CPU time", "", averages.table(sort_by="self_cpu_time_total", row_limit=25)]
    Path(args.output).write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:len(phases) + 8]))
    return 0


def load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def summary(args: argparse.Namespace) -> int:
    """summary.md in OUT_DIR from the steps' JSON files, each figure against its target."""
    out = Path(args.out_dir)
    lines = ["# gdc on the GPU: benchmarks/gpu/run.sh", ""]
    if args.tests:
        lines += [f"engine tests: {Path(args.tests).read_text().strip() or 'no result'}", ""]
    speed = load(out / "speed-cuda.json")
    if speed:
        lines += [f"machine: {speed.get('machine')}, device {speed.get('device')}", "", "## speed (gdc bench speed)", "",
                  "| MP | size | total s | peak GPU MB | " + " | ".join(speed["sizes"][0]["phases"]) + " |",
                  "|---" * (4 + len(speed["sizes"][0]["phases"])) + "|"]
        for size in speed["sizes"]:
            lines.append(f"| {size['megapixels']:.2f} | {size['width']}x{size['height']} | {size['total']:.3f} | "
                         f"{size.get('peak_cuda_mb', float('nan')):.0f} | "
                         + " | ".join(f"{s:.3f}" for s in size["phases"].values()) + " |")
        total = speed.get(f"{PHOTO_KEY}_total_s")
        if total is not None:
            verdict = "meets" if total <= TARGET_PHOTO_SECONDS else "misses"
            lines += ["", f"{PHOTO_KEY}_total_s = {total:.4f} s ({verdict} the {TARGET_PHOTO_SECONDS:.3f} s target); "
                      f"phases {json.dumps({k: round(v, 4) for k, v in speed[f'{PHOTO_KEY}_phases_s'].items()})}"]
    gpu, cpu = load(out / "eval-cuda.json"), load(out / "eval-cpu.json")
    if gpu:
        lines += ["", "## quality (gdc eval icg-dev, seed 0)", ""]
        gpu_miou = gpu["summary"]["miou"]["mean"]
        lines.append(f"GPU: {gpu['images']} images, mIoU {100 * gpu_miou:.2f}, {gpu['summary']['seconds']['mean']:.3f} s/image")
        if cpu:
            cpu_miou = cpu["summary"]["miou"]["mean"]
            within = abs(gpu_miou - cpu_miou) <= MIOU_TOLERANCE
            lines.append(f"CPU: {cpu['images']} images, mIoU {100 * cpu_miou:.2f}, {cpu['summary']['seconds']['mean']:.3f} "
                         f"s/image; difference {100 * (gpu_miou - cpu_miou):+.2f} "
                         f"({'within' if within else 'OUTSIDE'} ±{100 * MIOU_TOLERANCE:.1f})")
    for title, name in (("one worker", "throughput.json"), ("two workers sharing the GPU", "throughput-2workers.json")):
        served = load(out / name)
        if served:
            lines += ["", f"## {title} through gdc serve", ""]
            for run in served["runs"]:
                verdict = "meets" if run["jobs_per_second"] >= TARGET_JOBS_PER_SECOND else "below"
                lines.append(f"{run['in_flight']} in flight: {run['jobs_per_second']:.2f} jobs/s ({verdict} "
                             f"{TARGET_JOBS_PER_SECOND:g}), median latency {run['median_latency_s']:.3f} s")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    from apps.arguments import add_engine_options

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    steps = parser.add_subparsers(dest="step", required=True)
    timed = steps.add_parser("photo-time", help="end-to-end engine time of one photo, into the speed JSON")
    timed.add_argument("speed_json")
    timed.add_argument("photo")
    timed.add_argument("scribbles")
    add_engine_options(timed)
    timed.add_argument("--repeats", type=int, default=10)
    timed.set_defaults(func=photo_time)
    served = steps.add_parser("throughput", help="jobs/s through a running server")
    served.add_argument("url")
    served.add_argument("photo")
    served.add_argument("scribbles")
    served.add_argument("--in-flight", default="1,2,4")
    served.add_argument("--jobs", type=int, default=24, help="jobs per in-flight level")
    served.add_argument("--warmup", type=int, default=2)
    served.add_argument("--poll", type=float, default=0.01, help="seconds between status polls")
    served.add_argument("--json", required=True)
    served.add_argument("--steps", type=int, help="engine steps per job (default: the server's)")
    served.add_argument("--samples", type=int, help="stochastic passes per job (default: the server's)")
    served.set_defaults(func=throughput)
    profiled = steps.add_parser("profile", help="torch profiler: top kernels and the phases")
    profiled.add_argument("photo")
    profiled.add_argument("scribbles")
    add_engine_options(profiled)
    profiled.add_argument("--repeats", type=int, default=3)
    profiled.add_argument("--output", required=True)
    profiled.set_defaults(func=profile)
    summed = steps.add_parser("summary", help="summary.md from the steps' JSON files")
    summed.add_argument("out_dir")
    summed.add_argument("--tests", help="a file holding pytest's last line")
    summed.set_defaults(func=summary)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
