"""Tiny images, fast engine options and job-following helpers for the reliability tests.

Every job here is a 64x48 image with two scribbled classes and options that keep the
engine to a few tens of milliseconds, so the tests measure the service, not the engine.
"""

from __future__ import annotations

import itertools
import time

import httpx
import numpy as np
import pytest

from gdc.imageio import encode_png
from tests.conftest import Stacks

WIDTH, HEIGHT = 64, 48
# A job of a few tens of milliseconds: the service's own overhead dominates.
QUICK = {"steps": 2, "samples": 1, "superpixel_size": 60}
# Long enough (seconds) to still be running when a test kills something under it.
LONG = {"steps": 500, "samples": 200, "superpixel_size": 60}
ENDED = ("succeeded", "failed", "canceled")
# Workers share two cores: one torch thread each, so two workers do not oversubscribe them.
ONE_THREAD = {"worker_threads": 1}


def tiny_image(seed: int) -> np.ndarray:
    """A 64x48 RGB image: a bright disc on a dark noisy background, placed by ``seed``."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    y, x = np.ogrid[:HEIGHT, :WIDTH]
    cy, cx = rng.integers(16, HEIGHT - 16), rng.integers(16, WIDTH - 16)
    image[(y - cy) ** 2 + (x - cx) ** 2 < 100] = (220, 200, 40)
    return image


def tiny_scribbles() -> np.ndarray:
    """Class 1 at the image centre, class 2 in the corners."""
    labels = np.zeros((HEIGHT, WIDTH), np.uint8)
    labels[HEIGHT // 2 - 2 : HEIGHT // 2 + 2, WIDTH // 2 - 2 : WIDTH // 2 + 2] = 1
    labels[:4, :4] = labels[-4:, -4:] = 2
    return labels


def tiny_upload(seed: int = 0) -> dict:
    """Multipart ``files`` for POST /segment: a tiny image and its scribbles."""
    return {
        "image": ("tiny.png", encode_png(tiny_image(seed)), "image/png"),
        "scribbles": ("scribbles.png", encode_png(tiny_scribbles()), "image/png"),
    }


def submit(http: httpx.Client, seed: int = 0, options: dict = QUICK, **data) -> str:
    """POST /segment a tiny job; its id (fails the test unless accepted)."""
    response = http.post("/segment", files=tiny_upload(seed), data={**options, **data})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def final_statuses(http: httpx.Client, ids: list[str], timeout: float) -> dict[str, str]:
    """Each job's status once all have ended; fails the test if one has not after ``timeout`` s.

    The API may be down for a while (a restart): unanswered polls are tried again.
    """
    deadline = time.monotonic() + timeout
    statuses: dict[str, str] = {}
    while True:
        for job_id in ids:
            if statuses.get(job_id) in ENDED:
                continue
            try:
                answer = http.get(f"/jobs/{job_id}")
            except httpx.TransportError:
                break
            statuses[job_id] = answer.json()["status"] if answer.status_code == 200 else f"HTTP {answer.status_code}"
        if all(statuses.get(job_id) in ENDED for job_id in ids):
            return statuses
        if time.monotonic() > deadline:
            stuck = {job_id: status for job_id, status in statuses.items() if status not in ENDED}
            pytest.fail(f"{len(stuck)} of {len(ids)} jobs had not ended after {timeout} s: {stuck}")
        time.sleep(0.2)


def running_phase(http: httpx.Client, job_id: str) -> str | None:
    """The job's engine phase while it runs, else None."""
    job = http.get(f"/jobs/{job_id}").json()
    return job["progress"]["phase"] if job["status"] == "running" else None


MAX_UPLOAD_BYTES = 2_000_000
API_KEY = "reliability-key"


@pytest.fixture(scope="session")
def shared_stack(live_stacks):
    """An API wanting ``X-API-Key: API_KEY`` and one worker, for the tests that only send requests."""
    return live_stacks(workers=1, max_upload_bytes=MAX_UPLOAD_BYTES, api_keys=API_KEY, **ONE_THREAD)


@pytest.fixture
def keyed_http(shared_stack):
    with httpx.Client(base_url=shared_stack.url, headers={"X-API-Key": API_KEY}, timeout=60) as client:
        yield client


@pytest.fixture
def stacks_on():
    """``stacks_on(server)``: :class:`Stacks` on a Redis server of the test's own; all stopped when it ends."""
    opened: list[Stacks] = []

    def on(server) -> Stacks:
        opened.append(Stacks(server.connection_url, itertools.count()))
        return opened[-1]

    yield on
    for stacks in opened:
        stacks.close()
