"""``gdc bench speed``: where the time goes, and how it grows with the image (issue 6).

Each image size runs in a fresh process, so its peak memory is its own. The image is a
photo that scikit-image ships, resized, with scribbles drawn in code (thin strokes of
three classes, as users draw them); each phase is timed from encoded bytes in to an
encoded mask out. ``--jobs`` measures throughput with several images in flight.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

PHASES = ("decode", "superpixels", "features", "optimise", "sample", "upsample", "encode")
DEFAULT_SIZES = "0.1,0.2,0.5,1,2,4"


def test_scene(megapixels: float) -> tuple[bytes, np.ndarray]:
    """(JPEG bytes, scribbles) of about ``megapixels``, 3:2, three classes in 1-3 px strokes."""
    import io

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
    # Background on the left and right edges, the suit, the face and hair.
    for value, points in (
        (1, [(0.05, 0.1), (0.08, 0.9)]), (1, [(0.95, 0.1), (0.92, 0.9)]),
        (2, [(0.3, 0.8), (0.7, 0.85)]),
        (3, [(0.42, 0.25), (0.55, 0.35)]),
    ):
        draw.line([(x * width, y * height) for x, y in points], fill=value, width=stroke)
    return encoded.getvalue(), np.asarray(scribbles)


def run_once(encoded: bytes, scribbles: np.ndarray, options) -> dict[str, float]:
    """Seconds per phase for one image, bytes in and PNG bytes out."""
    from ..imageio import encode_png, read_image
    from ..engine import segment

    started = time.perf_counter()
    image = read_image(encoded)
    decoded = time.perf_counter()
    result = segment(image, scribbles, options)
    encode_start = time.perf_counter()
    encode_png(result.labels)
    finished = time.perf_counter()
    return {"decode": decoded - started, **result.timings, "encode": finished - encode_start}


def measure_size(megapixels: float, repeats: int, options) -> dict:
    """Median phase times over ``repeats`` runs after one warm-up, and this process's peak memory."""
    import torch

    encoded, scribbles = test_scene(megapixels)
    run_once(encoded, scribbles, options)  # warm-up: loads the stem, settles the allocator
    if options.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    runs = [run_once(encoded, scribbles, options) for _ in range(repeats)]
    phases = {phase: statistics.median(run.get(phase, 0.0) for run in runs) for phase in PHASES}
    record = dict(
        megapixels=scribbles.size / 1e6,
        width=scribbles.shape[1],
        height=scribbles.shape[0],
        phases=phases,
        total=statistics.median(sum(run.values()) for run in runs),
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    if options.device.startswith("cuda"):
        record["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return record


def measure_throughput(jobs: int, in_flight: int, megapixels: float, options) -> dict:
    """Jobs per second with ``in_flight`` images processed at once (one CUDA stream each on a GPU)."""
    import torch

    encoded, scribbles = test_scene(megapixels)
    cuda = options.device.startswith("cuda")

    def job(index: int) -> None:
        seeded = options.model_copy(update={"seed": index})
        if cuda:
            with torch.cuda.stream(torch.cuda.Stream()):
                run_once(encoded, scribbles, seeded)
            torch.cuda.synchronize()
        else:
            run_once(encoded, scribbles, seeded)

    job(0)  # warm-up
    started = time.perf_counter()
    with ThreadPoolExecutor(in_flight) as pool:
        list(pool.map(job, range(jobs)))
    seconds = time.perf_counter() - started
    return dict(jobs=jobs, in_flight=in_flight, megapixels=megapixels, seconds=seconds, jobs_per_second=jobs / seconds)


def growth_slope(records: list[dict], up_to_megapixels: float = float("inf")) -> float:
    """The exponent b of total time ∝ pixels^b, fitted in log-log space (1 is linear).

    Only sizes up to ``up_to_megapixels`` count: beyond the engine's working-size cap the
    time is nearly flat, which would flatter the fit.
    """
    kept = [r for r in records if r["megapixels"] <= up_to_megapixels]
    if len(kept) < 2:
        return float("nan")
    pixels = np.log([r["megapixels"] for r in kept])
    seconds = np.log([r["total"] for r in kept])
    return float(np.polyfit(pixels, seconds, 1)[0])


def machine() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def table(records: list[dict]) -> str:
    header = f"{'MP':>5} {'size':>11} " + " ".join(f"{p:>11}" for p in PHASES) + f" {'total':>8} {'peak MB':>8}"
    lines = [header]
    for r in records:
        cells = " ".join(f"{r['phases'][p]:11.3f}" for p in PHASES)
        lines.append(f"{r['megapixels']:5.2f} {r['width']:>5}x{r['height']:<5} {cells} {r['total']:8.3f} {r['peak_rss_mb']:8.0f}")
    return "\n".join(lines)


def plot(records: list[dict], slope: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    megapixels = [r["megapixels"] for r in records]
    figure, axis = plt.subplots(figsize=(7, 4.5))
    bottom = np.zeros(len(records))
    for phase in PHASES:
        seconds = np.array([r["phases"][phase] for r in records])
        axis.bar(range(len(records)), seconds, bottom=bottom, label=phase)
        bottom += seconds
    axis.set_xticks(range(len(records)), [f"{m:.1f}" for m in megapixels])
    axis.set_xlabel("megapixels")
    axis.set_ylabel("seconds per image")
    axis.set_title(f"gdc segment, per phase (time ∝ pixels^{slope:.2f})")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def run(args: argparse.Namespace) -> int:
    from ..arguments import engine_options

    options = engine_options(args)
    records = []
    for megapixels in (float(s) for s in args.sizes.split(",")):
        spec = json.dumps(dict(megapixels=megapixels, repeats=args.repeats, options=options.model_dump()))
        output = subprocess.run(
            [sys.executable, "-m", "gdc.bench.speed", spec], check=True, capture_output=True, text=True
        ).stdout
        records.append(json.loads(output))
        print(f"{megapixels} MP: {records[-1]['total']:.2f} s", file=sys.stderr)
    cap = options.max_pixels / 1e6
    slope = growth_slope(records, cap)
    print(table(records))
    print(f"up to the {cap:g} MP working size, time grows as pixels^{slope:.2f} (1.00 is linear); "
          "larger images are segmented at that size, so only decoding and upsampling grow")
    report = dict(
        machine=machine(), device=options.device, options=options.model_dump(), sizes=records, slope=slope, slope_up_to_mp=cap
    )
    if args.jobs:
        report["throughput"] = measure_throughput(args.jobs, args.in_flight, 0.25, options)
        print(f"throughput: {report['throughput']['jobs_per_second']:.2f} jobs/s "
              f"({args.jobs} jobs of 0.25 MP, {args.in_flight} in flight)")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"speed-{options.device.split(':')[0]}"
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    plot(records, slope, out / f"{stem}.png")
    print(f"wrote {out / stem}.json and .png")
    return 0


def add_parser(commands) -> None:
    from ..arguments import add_engine_options

    parser = commands.add_parser("speed", help="per-phase time and peak memory from 0.1 to 4 megapixels")
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help=f"megapixels to measure (default {DEFAULT_SIZES})")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per size, after a warm-up (default 3)")
    parser.add_argument("--jobs", type=int, default=0, help="also measure throughput over this many jobs")
    parser.add_argument("--in-flight", type=int, default=1, help="images processed at once for --jobs (default 1)")
    parser.add_argument("--output-dir", default="benchmarks", help="where to write JSON and the plot")
    add_engine_options(parser)
    parser.set_defaults(func=run)


if __name__ == "__main__":  # one size, in its own process: python -m gdc.bench.speed SPEC_JSON
    from ..options import SegmentOptions

    spec = json.loads(sys.argv[1])
    print(json.dumps(measure_size(spec["megapixels"], spec["repeats"], SegmentOptions(**spec["options"]))))
