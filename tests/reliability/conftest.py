"""Job-following helpers for the reliability tests, whose jobs are the tiny ones of :mod:`benchmarks.tiny`."""

from __future__ import annotations

import itertools
import time

import httpx
import pytest

from benchmarks.tiny import QUICK, tiny_upload
from tests.conftest import Stacks

# Long enough (seconds) to still be running when a test kills something under it.
LONG = {"steps": 500, "samples": 200, "superpixel_size": 60}
ENDED = ("succeeded", "failed", "canceled")
# Workers share two cores: one torch thread each, so two workers do not oversubscribe them.
ONE_THREAD = {"worker_threads": 1}


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
