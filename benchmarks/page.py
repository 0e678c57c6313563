"""The web page's rounds, timed from the Segment button to the mask on screen (headless Chromium).

Used by ``gdc bench speed``: it opens the page of a running service in the system's Chromium
(Debian's ``chromium``, or ``GDC_CHROMIUM``) through Playwright, loads the photo, paints half
of each class's strokes with the mouse, presses *Segment*, then paints the rest and presses it
again (a refine). The time is read inside the page: from the click to the status saying
"Done", which the page writes once it has drawn the mask.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

CHROMIUM = Path(os.environ.get("GDC_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ROUND_SECONDS = 300
# Click, then resolve with the milliseconds until the status reads "Done" (or reject with the page's error).
_CLICK_TO_MASK = """(limit) => new Promise((resolve, reject) => {
  const status = document.getElementById("status");
  const error = document.getElementById("error");
  const started = performance.now();
  const observer = new MutationObserver(() => {
    if (status.textContent.startsWith("Done")) resolve(performance.now() - started);
    else if (error.textContent) reject(new Error(error.textContent));
    else return;
    observer.disconnect();
  });
  for (const node of [status, error]) observer.observe(node, { childList: true, characterData: true, subtree: true });
  setTimeout(() => reject(new Error(`no mask after ${limit} ms`)), limit);
  document.getElementById("segment").click();
})"""


def available() -> str | None:
    """None when the page can be timed here, else why not."""
    if not CHROMIUM.is_file():
        return f"no browser at {CHROMIUM} (apt-get install chromium, or set GDC_CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install 'gdc[ui]')"
    return None


def strokes(scribbles: np.ndarray) -> list[tuple[int, list[tuple[int, int]]]]:
    """(class, points) per connected stroke: its pixels ordered along its longer side, every 8th."""
    from skimage.measure import label

    found = []
    for value in np.unique(scribbles[scribbles > 0]):
        parts = label(scribbles == value, connectivity=2)
        for part in range(1, parts.max() + 1):
            ys, xs = np.nonzero(parts == part)
            order = np.argsort(xs if np.ptp(xs) >= np.ptp(ys) else ys)
            points = [(int(xs[i]), int(ys[i])) for i in order[::8]] + [(int(xs[order[-1]]), int(ys[order[-1]]))]
            found.append((int(value), points))
    return found


def _paint(page, size: tuple[int, int], painted: list[tuple[int, list[tuple[int, int]]]]) -> None:
    box = page.locator("#scribble-layer").bounding_box()

    def screen(x: int, y: int) -> tuple[float, float]:
        return box["x"] + (x + 0.5) * box["width"] / size[0], box["y"] + (y + 0.5) * box["height"] / size[1]

    for value, points in painted:
        page.locator(f'.class-pick[value="{value}"]').check()
        page.mouse.move(*screen(*points[0]))
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*screen(*point), steps=2)
        page.mouse.up()


def page_rounds(url: str, image_path: Path, first: np.ndarray, scribbles: np.ndarray, repeats: int) -> dict:
    """Seconds from the Segment button to the mask on screen: ``{"round1": [...], "refine": [...]}``.

    Round 1 paints ``first`` (a subset of ``scribbles``' strokes), the refine the rest; each
    repeat opens the page afresh, so each round 1 is a cold job. Live mode is switched off.
    """
    from playwright.sync_api import expect, sync_playwright

    later = [(value, points) for value, points in strokes(scribbles) if not first[points[0][1], points[0][0]]]
    seconds = {"round1": [], "refine": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for _ in range(repeats):
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(url)
                expect(page.locator("#option-fields input").first).to_be_attached()
                page.get_by_label("Live: segment after each stroke").uncheck()
                page.set_input_files("#image-file", str(image_path))
                size = tuple(page.eval_on_selector("#scribble-layer", "c => [c.width, c.height]"))
                for _ in range(int(scribbles.max()) - 2):
                    page.get_by_role("button", name="Add class").click()
                for name, painted in (("round1", strokes(first)), ("refine", later)):
                    _paint(page, size, painted)
                    seconds[name].append(page.evaluate(_CLICK_TO_MASK, ROUND_SECONDS * 1000) / 1000)
                page.close()
        finally:
            browser.close()
    return seconds
