"""``gdc bench batch``: ``gdc batch`` through a fresh ``gdc serve`` (or ``--local``): jobs/s, queue depth, 429s.

Starts ``gdc serve --workers N`` with ``GDC_MAX_QUEUED`` on a free port, runs ``gdc batch``
over a folder (given, or ``--jobs`` small generated images), samples the queue length from
``/metrics`` meanwhile, and checks that every image came back. With ``--kill-after N`` the
first run is SIGKILLed once N label maps exist and run again, and the report says how many
jobs the journal submitted per image and the workers ran; ``--again`` times a third, identical
run (everything skipped); ``--truth`` scores the label maps as ``gdc eval`` does. Prints one
JSON report.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from apps.launch import free_port, gdc_command, start_serve, wait_ready
from gdc.errors import InputError
from gdc.imageio import encode_png


def make_small_images(root: Path, count: int) -> tuple[Path, Path]:
    """``count`` distinct small photos (about 0.006 MP, each shifted a pixel more) with their scribbles."""
    from gdc.imageio import read_image

    from .speed import test_scene

    encoded, scribbles = test_scene(0.006)
    photo = read_image(encoded)
    images, marks = root / "images", root / "scribbles"
    images.mkdir(parents=True), marks.mkdir(parents=True)
    for index in range(count):
        (images / f"small{index:05d}.png").write_bytes(encode_png(np.roll(photo, index, axis=(0, 1))))
        (marks / f"small{index:05d}.png").write_bytes(encode_png(np.roll(scribbles, index, axis=(0, 1))))
    return images, marks


def _metric(text: str, pattern: str) -> float:
    found = re.search(pattern + r" ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


class QueueWatcher(threading.Thread):
    """Samples the server's waiting jobs (``gdc_jobs{state="queued"}``) until stopped; keeps the deepest."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.deepest, self.stopped = url, 0.0, threading.Event()

    def run(self) -> None:
        import httpx

        while not self.stopped.wait(0.1):
            try:
                text = httpx.get(f"{self.url}/metrics", timeout=5).text
            except httpx.HTTPError:
                continue
            self.deepest = max(self.deepest, _metric(text, r'gdc_jobs\{state="queued"\}'))


def _jobs_run(metrics: str) -> float:
    """Jobs the workers ended; RQ counts a job in the step that ends it, so a fetched result is counted."""
    return _metric(metrics, r'gdc_worker_jobs\{outcome="succeeded"\}') + _metric(metrics, r'gdc_worker_jobs\{outcome="failed"\}')


def _start_server(port: int, workers: int, max_queued: int) -> subprocess.Popen:
    """``gdc serve`` with ``GDC_MAX_QUEUED``, in a session of its own (stopped whole by :func:`run`), once ready."""
    server = start_serve(port, workers, env={**os.environ, "GDC_MAX_QUEUED": str(max_queued)},
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_ready(f"http://127.0.0.1:{port}", workers=workers, processes=[server])
    return server


def _label_maps(out: Path) -> int:
    """Label maps written so far (a map being written is ``<stem>.png.partial`` until whole)."""
    return sum(1 for _ in out.glob("*.png")) if out.is_dir() else 0


def _run_batch(command: list[str], out: Path, kill_after: int | None = None) -> dict:
    """One ``gdc batch``, timed; with ``kill_after``, SIGKILLed as soon as that many label maps exist."""
    import signal

    before = _label_maps(out)
    started = time.perf_counter()
    batch = subprocess.Popen(command)
    killed_at = None
    if kill_after is not None:
        while batch.poll() is None:
            if (count := _label_maps(out)) >= kill_after:
                batch.send_signal(signal.SIGKILL)
                killed_at = count
                break
            time.sleep(0.2)
    code = batch.wait()
    run = {"seconds": round(time.perf_counter() - started, 2), "exit_code": code, "label_maps_before": before}
    if kill_after is not None:
        run["killed_at_label_maps"] = killed_at  # None: it ended before reaching kill_after
    return run | {"label_maps_after": _label_maps(out), "load_average_1min_after": round(os.getloadavg()[0], 2)}


def _coco_summary(path: Path) -> dict:
    import contextlib
    import io

    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints its progress
        coco = COCO(str(path))
    annotated = {annotation["image_id"] for annotation in coco.dataset["annotations"]}
    return {
        "images": len(coco.getImgIds()),
        "annotations": len(coco.getAnnIds()),
        "categories": len(coco.getCatIds()),
        "images_without_annotations": len(set(coco.getImgIds()) - annotated),
    }


def _quality(out: Path, truth_dir: Path, reference: Path | None) -> dict:
    """mIoU of the label maps against ``truth_dir`` as ``gdc eval`` scores them; against its report, if given."""
    from apps.evaluate import read_truth, score_labels
    from gdc.imageio import read_labels

    per_image = {}
    for truth in sorted(truth_dir.glob("*.png")):
        if (out / truth.name).exists():
            per_image[truth.stem] = score_labels(read_labels(out / truth.name), read_truth(truth))[0]
    quality = {"scored": len(per_image), "miou": float(np.mean(list(per_image.values()))) if per_image else None}
    if reference is not None:
        report = json.loads(reference.read_text())
        theirs = {image["name"]: image["miou"] for image in report["runs"][0]["images"]}
        shared = sorted(set(theirs) & set(per_image))
        differences = [abs(per_image[name] - theirs[name]) for name in shared]
        quality["reference"] = {
            "report": str(reference),
            "options": report["options"],
            "miou": report["summary"]["miou"]["mean"],
            "miou_difference": quality["miou"] - report["summary"]["miou"]["mean"] if per_image else None,
            "images_compared": len(shared),
            "images_within_0.001": sum(difference <= 0.001 for difference in differences),
            "largest_image_difference": max(differences, default=None),
        }
    return quality | {"per_image": per_image}


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        images, scribbles = (
            (Path(args.images), Path(args.scribbles)) if args.images else make_small_images(Path(scratch), args.jobs)
        )
        out = Path(args.output) if args.output else Path(scratch) / "out"
        if out.exists() and any(out.iterdir()):  # a measurement starts from nothing
            raise InputError(f"{out} is not empty: give --output a new or empty folder")
        passed = args.batch_args[1:] if args.batch_args[:1] == ["--"] else args.batch_args
        command = gdc_command("batch", str(images), str(scribbles), "-o", str(out), *passed)
        load_before = round(os.getloadavg()[0], 2)
        if args.local:
            runs, server_figures = _batch_runs(args, command + ["--local", "--processes", str(args.workers)], out), {}
        else:
            runs, server_figures = _through_a_server(args, command, out)
        report = _report(args, runs, out, scribbles, passed, load_before) | server_figures
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    killed = args.kill_after is None or runs[0]["killed_at_label_maps"] is not None
    return 0 if report["labelled"] == report["images"] and report["exit_code"] == 0 and killed else 1


def _batch_runs(args: argparse.Namespace, command: list[str], out: Path) -> list[dict]:
    """The batch, killed after ``--kill-after`` label maps and resumed, then ``--again`` once more."""
    runs = [_run_batch(command, out, args.kill_after)]
    if args.kill_after is not None:
        runs.append(_run_batch(command, out))  # the resumed run
    if args.again:
        runs.append(_run_batch(command, out))
    return runs


def _through_a_server(args: argparse.Namespace, command: list[str], out: Path) -> tuple[list[dict], dict]:
    """The batch runs on a fresh ``gdc serve``, its queue watched; the runs and the server's figures."""
    import signal

    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = _start_server(port, args.workers, args.max_queued)
    watcher = QueueWatcher(url)
    watcher.start()
    try:
        runs = _batch_runs(args, command + ["--server", url, "--concurrency", str(args.concurrency)], out)
        watcher.stopped.set()
        watcher.join()
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)
    return runs, {
        "max_queued": args.max_queued,
        "concurrency": args.concurrency,
        "deepest_queue_seen": watcher.deepest,
        "refused_429": _metric(metrics, r'gdc_http_requests_total\{method="POST",route="/segment",status="429"\}'),
        "accepted_202": _metric(metrics, r'gdc_http_requests_total\{method="POST",route="/segment",status="202"\}'),
        "jobs_run_by_workers": _jobs_run(metrics),
    }


def _report(
    args: argparse.Namespace, runs: list[dict], out: Path, scribbles: Path, passed: list[str], load_before: float
) -> dict:
    """What the runs measured: images labelled and jobs/s until all were (the labelling: before ``--again``),
    jobs sent twice, the COCO file's summary and, with ``--truth``, the label maps' quality."""
    from apps.batch import jobs_submitted

    labelling = runs[: 2 if args.kill_after is not None else 1]
    seconds = sum(run["seconds"] for run in labelling)
    labelled = _label_maps(out)
    failures = json.loads((out / "failures.json").read_text()) if (out / "failures.json").exists() else []
    report = {
        "mode": "local" if args.local else "server",
        "workers": args.workers,
        "images": len(list(scribbles.glob("*.png"))),
        "labelled": labelled,
        "exit_code": labelling[-1]["exit_code"],
        "seconds": round(seconds, 2),
        "jobs_per_second": round(labelled / seconds, 3),
        "batch_args": passed,
        "load_average_1min_before": load_before,
        "runs": runs,
        "failures": failures[:10],
    }
    if args.again:
        report["again_over_labelling"] = round(runs[-1]["seconds"] / seconds, 4)
    if submitted := jobs_submitted(out):
        report |= {
            "jobs_submitted": sum(len(ids) for ids in submitted.values()),
            "images_submitted_more_than_once": sorted(stem for stem, ids in submitted.items() if len(ids) > 1),
        }
    if (out / "coco.json").exists():
        report["coco"] = _coco_summary(out / "coco.json")
    if args.truth:
        report["quality"] = _quality(out, Path(args.truth), Path(args.reference) if args.reference else None)
    return report


def add_parser(commands) -> None:
    from apps.arguments import at_least_one

    parser = commands.add_parser(
        "batch",
        help="gdc batch through a fresh gdc serve or --local: jobs/s, deepest queue, 429s, a kill and resume",
        description="Arguments after -- go to gdc batch as they are (e.g. -- --steps 0 --samples 1).",
    )
    parser.add_argument("--images", help="folder of images (default: --jobs generated small images)")
    parser.add_argument("--scribbles", help="their scribbles folder (with --images)")
    parser.add_argument("--jobs", type=at_least_one("images"), default=2000, help="small images to generate (default 2000)")
    parser.add_argument("--workers", type=at_least_one("workers"), default=1, help="gdc serve workers, or --local processes (default 1)")
    parser.add_argument("--max-queued", type=at_least_one("jobs"), default=100, help="GDC_MAX_QUEUED of the server (default 100)")
    parser.add_argument("--concurrency", type=at_least_one("jobs"), default=16, help="gdc batch --concurrency (default 16)")
    parser.add_argument("--local", action="store_true", help="gdc batch --local instead of a server")
    parser.add_argument(
        "--kill-after", type=at_least_one("label maps"),
        help="SIGKILL gdc batch once this many label maps exist, then run it again to finish (the resume)",
    )
    parser.add_argument("--again", action="store_true", help="when done, time the same gdc batch once more (all skipped)")
    parser.add_argument("--output", help="keep gdc batch's OUT_DIR here (a new or empty folder; default: a temporary one)")
    parser.add_argument("--truth", help="ground-truth folder (<stem>.png): score the label maps as gdc eval does")
    parser.add_argument("--reference", help="with --truth: a gdc eval --json report to compare the mIoU with")
    parser.add_argument("--json", help="also write the report here")
    parser.add_argument("batch_args", nargs=argparse.REMAINDER, help="options for gdc batch, after --")
    parser.set_defaults(func=run)
