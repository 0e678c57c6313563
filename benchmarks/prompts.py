"""``gdc bench prompts``: gdc from a box and from clicks beside OpenCV's grabCut and the random walker (issue 44).

Two tables on a data set with ground truth (GrabCut-50 in benchmarks/RESULTS.md, section 13), the
object being class 0 (a binary mask's foreground, :func:`apps.evaluate.object_truth`):

- **box**: gdc from :func:`apps.evaluate.truth_box` (the object's bounding box grown by
  ``BOX_MARGIN`` pixels) against grabCut initialised with the same rectangle (GC_INIT_WITH_RECT),
  in the same run: mIoU (:func:`apps.evaluate.score`) and median seconds per image.
- **clicks**: the standard click protocol (Xu et al., CVPR 2016; the NoC metric of the click
  interactors since). Each click goes to the point farthest from the boundary of the largest error
  region, positive on a missed object pixel, negative on a false one; the first, with nothing
  segmented yet, lands at the object's centre. Up to ``--clicks`` clicks; NoC@85 and NoC@90 are the
  mean clicks to reach that foreground IoU, ``--clicks`` when never reached. gdc runs each click as a
  refine on the previous round's ``warm_start`` with every click so far; grabCut
  (:func:`benchmarks.peers.grabcut_labels`) and the random walker (:func:`benchmarks.peers.random_walker_labels`)
  get the same click discs as strokes. Before the first negative click no method has a background
  to learn from, so each is also given the image's frame, one click disc wide, as background, the
  common practice for grabCut; grabCut's other unmarked pixels start as probable background, as in
  ``gdc bench peers``.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.ndimage import distance_transform_edt, label

from apps.arguments import at_least_one
from apps.evaluate import BOX_MARGIN, VOID, Sample, load_dataset, object_truth, score_labels, truth_box
from benchmarks import peers

THRESHOLDS = (0.85, 0.90)  # the foreground IoU of NoC@85 and NoC@90
MAX_CLICKS = 20
# The click protocol's peers, given the clicks as scribbles (1 object, 2 background).
CLICK_PEERS: dict[str, peers.Labeller] = {"grabcut": peers.grabcut_labels, "random-walker": peers.random_walker_labels}


def gdc_box_labels(image: np.ndarray, box, seed: int) -> np.ndarray:
    """gdc with its default options at ``seed``, from the box alone."""
    from gdc.engine import segment_prompted
    from gdc.options import SegmentOptions

    return segment_prompted(image, options=SegmentOptions(seed=seed), box=box).labels


def grabcut_box_labels(image: np.ndarray, box) -> np.ndarray:
    """OpenCV grabCut from the rectangle alone (GC_INIT_WITH_RECT), as many iterations as ``gdc bench peers``."""
    import cv2

    rectangle = (box.x0, box.y0, box.x1 - box.x0, box.y1 - box.y0)
    foreground = peers.run_grabcut(image, np.zeros(image.shape[:2], np.uint8), cv2.GC_INIT_WITH_RECT, rectangle)
    return np.where(foreground, 1, 2).astype(np.uint8)


def box_rows(samples: list[Sample], seed: int, log: Callable[[str], None]) -> dict[str, list[dict]]:
    """gdc and grabCut from each sample's :func:`truth_box`, taking turns per image: mIoU, accuracy and seconds."""
    methods = {"gdc": lambda image, box: gdc_box_labels(image, box, seed), "grabcut": grabcut_box_labels}
    warm_up = samples[0]
    for labeller in methods.values():  # untimed: imports and model loading are not the first image's
        labeller(warm_up.image, truth_box(warm_up.truth))
    rows: dict[str, list[dict]] = {name: [] for name in methods}
    for sample in samples:
        box, truth = truth_box(sample.truth), object_truth(sample.truth)
        for name, labeller in methods.items():
            started = time.perf_counter()
            labels = labeller(sample.image, box)
            seconds = time.perf_counter() - started
            miou, accuracy = score_labels(labels, truth)
            rows[name].append(dict(name=sample.name, miou=miou, accuracy=accuracy, seconds=seconds))
            log(f"box    {sample.name:<16} {name:<14} mIoU {100 * miou:5.1f}  {seconds:6.2f} s")
    return rows


def foreground_iou(labels: np.ndarray, truth: np.ndarray) -> float:
    """IoU of the object (labels 1, truth class 0), void pixels ignored."""
    valid = truth != VOID
    predicted, actual = labels[valid] == 1, truth[valid] == 0
    return float(np.count_nonzero(predicted & actual) / max(np.count_nonzero(predicted | actual), 1))


def next_click(labels: np.ndarray | None, truth: np.ndarray) -> tuple[int, int, bool]:
    """(x, y, positive): the protocol's click at the point farthest from the boundary (the image's edge
    included) of the largest error region, positive where the object was missed; ``labels`` None: nothing yet."""
    valid = truth != VOID
    predicted = np.zeros(truth.shape, bool) if labels is None else labels == 1
    missed, false = valid & (truth == 0) & ~predicted, valid & (truth != 0) & predicted
    largest, positive, size = None, True, 0
    for errors, is_missed in ((missed, True), (false, False)):
        regions, count = label(errors)
        if count:
            sizes = np.bincount(regions.ravel())[1:]
            if sizes.max() > size:
                size, largest, positive = sizes.max(), regions == sizes.argmax() + 1, is_missed
    depth = distance_transform_edt(np.pad(largest, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(depth.argmax(), depth.shape)
    return int(x), int(y), positive


def frame_strokes(shape: tuple[int, int], clicks: list[tuple[int, int, bool]]) -> np.ndarray:
    """(H, W) uint8 scribbles: the image's border, one click disc wide, as background until the first negative click."""
    from gdc.prompts import BACKGROUND, click_radius

    height, width = shape
    strokes = np.zeros(shape, np.uint8)
    if all(positive for _, _, positive in clicks):
        strokes[...] = BACKGROUND
        inset = max(1, round(2 * click_radius(width, height)))
        strokes[inset:-inset, inset:-inset] = 0
    return strokes


def click_strokes(shape: tuple[int, int], clicks: list[tuple[int, int, bool]]) -> np.ndarray:
    """Scribbles (1 object, 2 background) of the clicks' discs over :func:`frame_strokes`, for the peers."""
    from gdc.prompts import BACKGROUND, OBJECT, draw_discs

    strokes = frame_strokes(shape, clicks)
    draw_discs(strokes, [(x, y) for x, y, positive in clicks if not positive], BACKGROUND)
    draw_discs(strokes, [(x, y) for x, y, positive in clicks if positive], OBJECT)
    return strokes


def gdc_session(image: np.ndarray, seed: int) -> Callable[[list[tuple[int, int, bool]]], np.ndarray]:
    """A gdc click session: each call a round with every click so far, warm from the round before."""
    from gdc.engine import segment_prompted
    from gdc.options import SegmentOptions
    from gdc.prompts import Click

    options, previous = SegmentOptions(seed=seed), None

    def round_of(clicks):
        nonlocal previous
        result = segment_prompted(
            image, frame_strokes(image.shape[:2], clicks), options,
            clicks=[Click(x, y, positive) for x, y, positive in clicks], previous=previous,
        )
        previous = result.warm_start
        return result.labels

    return round_of


def peer_session(labeller: peers.Labeller, image: np.ndarray) -> Callable[[list[tuple[int, int, bool]]], np.ndarray]:
    return lambda clicks: labeller(image, click_strokes(image.shape[:2], clicks))


def click_run(session, truth: np.ndarray, max_clicks: int) -> dict:
    """The protocol on one image: the IoU after each click (stopping past the last threshold) and the seconds."""
    clicks, ious, labels, seconds = [], [], None, 0.0
    while len(clicks) < max_clicks and (not ious or ious[-1] < max(THRESHOLDS)):
        clicks.append(next_click(labels, truth))
        started = time.perf_counter()
        labels = session(clicks)
        seconds += time.perf_counter() - started
        ious.append(foreground_iou(labels, truth))
    noc = {f"noc{round(100 * t)}": next((k + 1 for k, iou in enumerate(ious) if iou >= t), max_clicks) for t in THRESHOLDS}
    return dict(ious=ious, seconds_per_click=seconds / len(clicks), **noc)


def click_rows(samples: list[Sample], seed: int, max_clicks: int, log: Callable[[str], None]) -> dict[str, list[dict]]:
    """Each method through the click protocol on each sample, taking turns per image."""
    sessions = {"gdc": lambda image: gdc_session(image, seed)} | {
        name: (lambda image, labeller=labeller: peer_session(labeller, image)) for name, labeller in CLICK_PEERS.items()
    }
    rows: dict[str, list[dict]] = {name: [] for name in sessions}
    for sample in samples:
        truth = object_truth(sample.truth)
        for name, session in sessions.items():
            run = dict(name=sample.name, **click_run(session(sample.image), truth, max_clicks))
            rows[name].append(run)
            log(f"clicks {sample.name:<16} {name:<14} NoC@85 {run['noc85']:2d}  NoC@90 {run['noc90']:2d}  "
                f"{run['seconds_per_click']:.2f} s/click")
    return rows


def click_summary(rows: list[dict]) -> dict:
    return dict(
        images=len(rows),
        noc85=float(np.mean([row["noc85"] for row in rows])),
        noc90=float(np.mean([row["noc90"] for row in rows])),
        median_seconds_per_click=float(statistics.median(row["seconds_per_click"] for row in rows)),
    )


def benchmark(
    root: str | Path, *, images: int | None, max_clicks: int, seed: int, click_images: int | None = None,
    log=lambda line: None,
) -> dict:
    """The box table on the first ``images`` of the data set under ``root``, the click table on the first
    ``click_images`` of those (all when None); a JSON-ready report."""
    from gdc.options import SegmentOptions

    samples = list(itertools.islice(load_dataset(root, None), images))
    boxes = box_rows(samples, seed, log)
    clicks = click_rows(samples[:click_images], seed, max_clicks, log)
    return dict(
        data=str(root),
        images=len(samples),
        click_images=len(samples[:click_images]),
        seed=seed,
        box_margin=BOX_MARGIN,
        max_clicks=max_clicks,
        machine=dict(platform=platform.platform(), cpus=os.cpu_count()),
        versions=peers.versions(),
        gdc_options=SegmentOptions().model_dump(),
        box={name: dict(summary=peers.summarise(rows), images=rows) for name, rows in boxes.items()},
        clicks={name: dict(summary=click_summary(rows), images=rows) for name, rows in clicks.items()},
    )


def format_tables(report: dict) -> str:
    """The box and click tables in Markdown."""
    def title(images):
        return f"{Path(report['data']).name}, {images} images, gdc seed {report['seed']}"

    lines = [
        f"**Box (the object's bounding box + {report['box_margin']} px), {title(report['images'])}**", "",
        "| method | mIoU | pixel acc | median s |", "|---|---:|---:|---:|",
    ]
    for name, method in report["box"].items():
        s = method["summary"]
        lines.append(f"| {name} | {100 * s['miou']:.1f} | {100 * s['accuracy']:.1f} | {s['median_seconds']:.2f} |")
    lines += [
        "", f"**Clicks (at most {report['max_clicks']}), {title(report['click_images'])}**", "",
        "| method | NoC@85 | NoC@90 | median s per click |", "|---|---:|---:|---:|",
    ]
    for name, method in report["clicks"].items():
        s = method["summary"]
        lines.append(f"| {name} | {s['noc85']:.2f} | {s['noc90']:.2f} | {s['median_seconds_per_click']:.2f} |")
    return "\n".join(lines)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``prompts`` command to a ``bench`` command's subparsers."""
    parser = subparsers.add_parser(
        "prompts",
        help="gdc from a box and from clicks against grabCut (and the random walker) on a data set",
        description="A box table (gdc and grabCut from the same rectangle) and the click protocol's NoC@85/90 "
        "(gdc, grabCut, random walker); print both, write prompts-DATA.json.",
    )
    parser.add_argument("data_dir", help="folder with images/ and gt/")
    parser.add_argument("--images", type=at_least_one("images"), help="only the first N images")
    parser.add_argument("--clicks", type=at_least_one("clicks"), default=MAX_CLICKS,
                        help=f"most clicks per image (default {MAX_CLICKS}); NoC counts this when never reached")
    parser.add_argument("--click-images", type=at_least_one("images"),
                        help="the click protocol on only the first N of those images (default all): it takes "
                        "up to --clicks rounds of each method per image")
    parser.add_argument("--seed", type=int, default=0, help="gdc's seed (default 0); the peers are deterministic")
    parser.add_argument("--output-dir", default="benchmarks", help="where the JSON goes (default benchmarks)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    report = benchmark(args.data_dir, images=args.images, max_clicks=args.clicks, seed=args.seed,
                       click_images=args.click_images, log=print)
    print()
    print(format_tables(report))
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    path = output / f"prompts-{Path(args.data_dir).resolve().name}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    bench = argparse.ArgumentParser(prog="gdc bench")
    add_parser(bench.add_subparsers(required=True, metavar="COMMAND"))
    parsed = bench.parse_args()
    sys.exit(parsed.func(parsed))
