"""A bounded load on a live server: N submissions from C concurrent clients, each following its jobs.

Each client submits a tiny job, polls ``GET /jobs/{id}`` until it ends, and takes the next
submission until N are made. Latencies are measured per request on the client side, so
they include the API's queueing behind the workers' CPU use. Used by ``test_load.py`` and
by the soak (``python -m tests.reliability.soak``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import numpy as np

from benchmarks.tiny import QUICK, tiny_upload
from tests.reliability.conftest import ENDED


@dataclass
class LoadResult:
    """What one load run saw, request by request."""

    submissions: int
    concurrency: int
    seconds: float = 0.0
    accepted: list[str] = field(default_factory=list)  # job ids, in the order the API gave them
    final: dict[str, str] = field(default_factory=dict)  # job id -> last status seen
    refused: Counter = field(default_factory=Counter)  # "HTTP 503", "ConnectError", ... -> count
    post_seconds: list[float] = field(default_factory=list)
    get_seconds: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        """The figures: counts, jobs per second, p50/p99 latency in milliseconds."""

        def percentiles(seconds: list[float]) -> dict:
            values = np.array(seconds) * 1000
            return {
                "requests": len(values),
                "p50_ms": round(float(np.percentile(values, 50)), 1),
                "p99_ms": round(float(np.percentile(values, 99)), 1),
                "max_ms": round(float(values.max()), 1),
            }

        return {
            "submissions": self.submissions,
            "concurrency": self.concurrency,
            "accepted": len(self.accepted),
            "succeeded": sum(status == "succeeded" for status in self.final.values()),
            "failed_or_unfinished": sum(status != "succeeded" for status in self.final.values()),
            "refused": dict(self.refused),
            "seconds": round(self.seconds, 1),
            "jobs_per_second": round(len(self.accepted) / self.seconds, 1),
            "POST /segment": percentiles(self.post_seconds),
            "GET /jobs/{id}": percentiles(self.get_seconds),
        }


async def _client(
    http: httpx.AsyncClient, numbers, result: LoadResult, options: dict, poll: float, job_timeout: float
) -> None:
    for number in numbers:
        started = time.perf_counter()
        try:
            answer = await http.post("/segment", files=tiny_upload(number), data=options)
        except httpx.TransportError as error:
            result.refused[type(error).__name__] += 1
            continue
        result.post_seconds.append(time.perf_counter() - started)
        if answer.status_code != 202:
            result.refused[f"HTTP {answer.status_code}"] += 1
            continue
        job_id = answer.json()["id"]
        result.accepted.append(job_id)
        deadline = time.monotonic() + job_timeout
        while time.monotonic() < deadline:
            await asyncio.sleep(poll)
            started = time.perf_counter()
            answer = await http.get(f"/jobs/{job_id}")
            result.get_seconds.append(time.perf_counter() - started)
            result.final[job_id] = (
                answer.json()["status"] if answer.status_code == 200 else f"HTTP {answer.status_code}"
            )
            if result.final[job_id] in ENDED:
                break


async def _load(
    url: str, submissions: int, concurrency: int, options: dict, poll: float, job_timeout: float
) -> LoadResult:
    result = LoadResult(submissions, concurrency)
    numbers = iter(range(submissions))  # shared: each client takes the next submission
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        started = time.perf_counter()
        clients = (_client(http, numbers, result, options, poll, job_timeout) for _ in range(concurrency))
        await asyncio.gather(*clients)
        result.seconds = time.perf_counter() - started
    return result


def run_load(
    url: str,
    submissions: int,
    concurrency: int,
    options: dict = QUICK,
    poll: float = 0.5,
    job_timeout: float = 300,
) -> LoadResult:
    """Put the load on the server at ``url`` and return what was seen; blocks until every job ended."""
    return asyncio.run(_load(url, submissions, concurrency, options, poll, job_timeout))
