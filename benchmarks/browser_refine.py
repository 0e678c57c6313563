"""Seconds from the web page's Segment button to the mask on screen, first round and refine (issue 16).

Starts ``gdc serve`` (embedded Redis, one worker), opens the page in headless Debian
chromium with Playwright, loads an icg-dev photo, paints half of each class's strokes
(through points along each stroke), segments, paints the rest and segments again (the
page sends ``previous``). Prints both times and each job's engine time.

    .venv/bin/python -m benchmarks.browser_refine ../shared/data/icg-dev image_0003_9020   # from the repository root
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from playwright.sync_api import expect, sync_playwright
from skimage.measure import label

from gdc.bench.refine import first_half
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import free_port, stop_process


def strokes(scribbles: np.ndarray) -> list[tuple[int, list[tuple[int, int]]]]:
    """(class, points) per connected stroke: its pixels ordered along its longer side, every 8th."""
    found = []
    for value in np.unique(scribbles[scribbles > 0]):
        parts = label(scribbles == value, connectivity=2)
        for part in range(1, parts.max() + 1):
            ys, xs = np.nonzero(parts == part)
            order = np.argsort(xs if np.ptp(xs) >= np.ptp(ys) else ys)
            found.append((int(value), [(int(xs[i]), int(ys[i])) for i in order[::8]] + [(int(xs[order[-1]]), int(ys[order[-1]]))]))
    return found


def paint(page, canvas_size, value: int, points) -> None:
    page.locator(f'.class-pick[value="{value}"]').check()
    box = page.locator("#scribble-layer").bounding_box()
    width, height = canvas_size

    def screen(x, y):
        return box["x"] + (x + 0.5) * box["width"] / width, box["y"] + (y + 0.5) * box["height"] / height

    page.mouse.move(*screen(*points[0]))
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*screen(*point), steps=2)
    page.mouse.up()


def segment_seconds(page, url: str) -> tuple[float, dict]:
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/segment")) as posted:
        started = time.perf_counter()
        page.get_by_role("button", name="Segment").click()
    expect(page.locator("#status")).to_contain_text("Done", timeout=300_000)
    seconds = time.perf_counter() - started
    return seconds, httpx.get(f"{url}/jobs/{posted.value.json()['id']}").json()


def main(data_dir: str, name: str) -> int:
    image_path = next((Path(data_dir) / "images").glob(f"{name}.*"))
    scribbles = np.asarray(Image.open(Path(data_dir) / "scribbles" / f"{name}.png"))
    first = first_half(scribbles)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "gdc.cli", "serve", "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            expect(page.locator("#option-fields input").first).to_be_attached()
            page.set_input_files("#image-file", str(image_path))
            size = tuple(page.eval_on_selector("#scribble-layer", "c => [c.width, c.height]"))
            classes = int(scribbles.max())
            for _ in range(classes - 2):
                page.get_by_role("button", name="Add class").click()
            later = [(value, points) for value, points in strokes(scribbles) if not first[points[0][1], points[0][0]]]
            for value, points in strokes(first):
                paint(page, size, value, points)
            seconds, job = segment_seconds(page, url)
            print(f"round 1: {seconds:.2f} s button to mask; engine {sum(job['timings'].values()):.2f} s")
            for value, points in later:
                paint(page, size, value, points)
            seconds, job = segment_seconds(page, url)
            print(
                f"round 2 (refine of {job['previous']}, warm {job['warm']}): {seconds:.2f} s button to mask; "
                f"engine {sum(job['timings'].values()):.2f} s"
            )
            browser.close()
    finally:
        stop_process(server)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
