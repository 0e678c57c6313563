"""Counts that ``/metrics`` reports but other processes make: how long jobs waited and ran, and how many workers
``gdc serve`` started again.

Prometheus scrapes the API, while jobs run in the workers and ``gdc serve`` supervises them, and a worker's counts
must outlive it. So the counts sit in one Redis hash per queue, which the workers and ``gdc serve`` increment and the
API reads when scraped. A histogram is kept as Prometheus' own client keeps one: a count per bucket, and a sum.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import accumulate

from redis import Redis

from .keys import Kind, key_for

# Seconds, for both histograms: a refine of a small photo runs 0.1 s on a CPU, a 12 MP photo 7 s; a job may run
# GDC_JOB_TIMEOUT (600 s), and wait longer.
BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, math.inf)
JOB_WAIT = "job_wait_seconds"  # enqueued (or queued again for a retry) to started
JOB_DURATION = "job_duration_seconds"  # started to ended, per status
WORKER_RESTARTS = "worker_restarts"


@dataclass(frozen=True)
class Series:
    """One histogram series as read back: its label, the count at or below each of BUCKETS, and the sum."""

    label: str
    cumulative: list[int]
    sum: float


def observe(connection: Redis, queue: str, histogram: str, seconds: float, label: str = "") -> None:
    """Count ``seconds`` into ``histogram`` of ``queue``, in the series ``label`` (e.g. a job's status)."""
    bound = next(bound for bound in BUCKETS if seconds <= bound)
    with connection.pipeline(transaction=False) as pipeline:
        pipeline.hincrby(key_for(Kind.METRICS, queue), f"{histogram}:{label}:{bound:g}", 1)
        pipeline.hincrbyfloat(key_for(Kind.METRICS, queue), f"{histogram}:{label}:sum", seconds)
        pipeline.execute()


def histogram(connection: Redis, queue: str, name: str) -> list[Series]:
    """The series of histogram ``name`` of ``queue`` counted so far, one per label."""
    fields = {field.decode(): value for field, value in connection.hgetall(key_for(Kind.METRICS, queue)).items()}
    series = []
    for label in sorted({field.split(":")[1] for field in fields if field.startswith(f"{name}:")}):
        counts = [int(fields.get(f"{name}:{label}:{bound:g}", 0)) for bound in BUCKETS]
        series.append(Series(label, list(accumulate(counts)), float(fields.get(f"{name}:{label}:sum", 0))))
    return series


def track_restarts(connection: Redis, queue: str) -> None:
    """Start counting worker restarts on ``queue`` (from zero, or where a previous run over the same data left off),
    so ``/readyz`` and ``/metrics`` report them."""
    connection.hsetnx(key_for(Kind.METRICS, queue), WORKER_RESTARTS, 0)


def count_restart(connection: Redis, queue: str) -> None:
    connection.hincrby(key_for(Kind.METRICS, queue), WORKER_RESTARTS, 1)


def restarts(connection: Redis, queue: str) -> int | None:
    """Worker restarts counted on ``queue``; None where no ``gdc serve`` supervises its workers."""
    counted = connection.hget(key_for(Kind.METRICS, queue), WORKER_RESTARTS)
    return None if counted is None else int(counted)
