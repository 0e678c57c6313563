"""``gdc bench batch``: ``gdc batch`` through a fresh ``gdc serve`` (or ``--local``): jobs/s, queue depth, 429s.

Starts ``gdc serve --workers N`` with ``GDC_MAX_QUEUED`` on a free port, runs ``gdc batch``
over a folder (given, or ``--jobs`` small generated images), samples the queue length from
``/metrics`` meanwhile, and checks that every image came back. Prints one JSON report.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ..imageio import encode_png


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_small_images(root: Path, count: int) -> tuple[Path, Path]:
    """``count`` distinct small photos (about 0.006 MP, each shifted a pixel more) with their scribbles."""
    from .speed import test_scene
    from ..imageio import read_image

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


def _start_server(port: int, workers: int, max_queued: int) -> subprocess.Popen:
    import httpx

    env = {**os.environ, "GDC_MAX_QUEUED": str(max_queued)}
    env.pop("REDIS_URL", None)  # an embedded one of its own
    command = [sys.executable, "-m", "gdc.cli", "serve", "--port", str(port), "--workers", str(workers)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
            if ready.status_code == 200 and ready.json()["workers"] >= workers:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.terminate()
    raise RuntimeError(f"gdc serve had not {workers} workers listening within 120 s")


def run(args: argparse.Namespace) -> int:
    import signal

    import httpx

    with tempfile.TemporaryDirectory() as scratch:
        if args.images:
            images, scribbles = Path(args.images), Path(args.scribbles)
        else:
            images, scribbles = make_small_images(Path(scratch), args.jobs)
        out = Path(scratch) / "out"
        passed = args.batch_args[1:] if args.batch_args[:1] == ["--"] else args.batch_args
        command = [sys.executable, "-m", "gdc.cli", "batch", str(images), str(scribbles), "-o", str(out), *passed]
        server = watcher = None
        if args.local:
            command += ["--local", "--processes", str(args.workers)]
        else:
            port = _free_port()
            server = _start_server(port, args.workers, args.max_queued)
            url = f"http://127.0.0.1:{port}"
            command += ["--server", url, "--concurrency", str(args.concurrency)]
            watcher = QueueWatcher(url)
            watcher.start()
        try:
            started = time.perf_counter()
            code = subprocess.run(command).returncode
            seconds = time.perf_counter() - started
            if watcher is not None:
                watcher.stopped.set()
                watcher.join()
                metrics = httpx.get(f"{url}/metrics", timeout=5).text
        finally:
            if server is not None:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(60)
        failures = json.loads((out / "failures.json").read_text()) if (out / "failures.json").exists() else []
        pairs = len(list(scribbles.glob("*.png")))
        labelled = len([p for p in out.glob("*.png")])
        report = {
            "mode": "local" if args.local else "server",
            "workers": args.workers,
            "images": pairs,
            "labelled": labelled,
            "exit_code": code,
            "seconds": round(seconds, 2),
            "jobs_per_second": round(labelled / seconds, 3),
            "batch_args": passed,
            "failures": failures[:10],
        }
        if watcher is not None:
            report |= {
                "max_queued": args.max_queued,
                "concurrency": args.concurrency,
                "deepest_queue_seen": watcher.deepest,
                "refused_429": _metric(metrics, r'gdc_http_requests_total\{method="POST",route="/segment",status="429"\}'),
                "accepted_202": _metric(metrics, r'gdc_http_requests_total\{method="POST",route="/segment",status="202"\}'),
            }
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if labelled == pairs and code == 0 else 1


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "batch",
        help="gdc batch through a fresh gdc serve or --local: jobs/s, deepest queue, 429s",
        description="Arguments after -- go to gdc batch as they are (e.g. -- --steps 0 --samples 1).",
    )
    parser.add_argument("--images", help="folder of images (default: --jobs generated small images)")
    parser.add_argument("--scribbles", help="their scribbles folder (with --images)")
    parser.add_argument("--jobs", type=int, default=2000, help="small images to generate (default 2000)")
    parser.add_argument("--workers", type=int, default=1, help="gdc serve workers, or --local processes (default 1)")
    parser.add_argument("--max-queued", type=int, default=100, help="GDC_MAX_QUEUED of the server (default 100)")
    parser.add_argument("--concurrency", type=int, default=16, help="gdc batch --concurrency (default 16)")
    parser.add_argument("--local", action="store_true", help="gdc batch --local instead of a server")
    parser.add_argument("--json", help="also write the report here")
    parser.add_argument("batch_args", nargs=argparse.REMAINDER, help="options for gdc batch, after --")
    parser.set_defaults(func=run)
