"""Prometheus metrics: queue and worker gauges read from Redis at scrape time, HTTP counts per route,
and the restarts of the workers ``gdc serve`` supervises."""
from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import FastAPI, Request
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from rq import Queue
from rq.worker import Worker


class QueueCollector(Collector):
    """Jobs per RQ state and live workers of one queue; read when Prometheus scrapes."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    def describe(self):
        return []  # keeps registration from reading Redis

    def collect(self):
        queue = self.queue
        jobs = GaugeMetricFamily("gdc_jobs", "Jobs on the queue per RQ state", labels=["state"])
        jobs.add_metric(["queued"], queue.count)
        for state, registry in (
            ("started", queue.started_job_registry),
            ("scheduled", queue.scheduled_job_registry),
            ("finished", queue.finished_job_registry),
            ("failed", queue.failed_job_registry),
            ("canceled", queue.canceled_job_registry),
        ):
            jobs.add_metric([state], registry.get_job_count(cleanup=False))
        yield jobs
        workers = Worker.all(queue=queue)
        yield GaugeMetricFamily("gdc_workers", "Workers registered on the queue", value=len(workers))
        # What a batch checks "each image ran once" against; a stopped worker's counts leave with it.
        ended = GaugeMetricFamily("gdc_worker_jobs", "Jobs the live workers have ended, per outcome", labels=["outcome"])
        ended.add_metric(["succeeded"], sum(worker.successful_job_count for worker in workers))
        ended.add_metric(["failed"], sum(worker.failed_job_count for worker in workers))
        yield ended


def install_metrics(app: FastAPI, queue: Queue) -> None:
    """Give ``app`` its own registry (``app.state.metrics``) and count its requests into it."""
    registry = CollectorRegistry()
    registry.register(QueueCollector(queue))
    answered = Counter("gdc_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=registry)
    latency = Histogram("gdc_http_request_seconds", "Seconds to answer", ["method", "route"], registry=registry)
    app.state.metrics = registry

    @app.middleware("http")
    async def measure(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")  # the template: no job ids in labels
        answered.labels(request.method, route, str(response.status_code)).inc()
        latency.labels(request.method, route).observe(time.perf_counter() - started)
        return response


class RestartCollector(Collector):
    """Worker restarts so far, read from the supervisor when Prometheus scrapes."""

    def __init__(self, restarts: Callable[[], int]) -> None:
        self.restarts = restarts

    def collect(self):
        yield CounterMetricFamily(
            "gdc_worker_restarts", "Worker processes gdc serve started again after one exited", value=self.restarts()
        )


def count_worker_restarts(app: FastAPI, restarts: Callable[[], int]) -> None:
    """Report ``restarts()`` (a supervisor's count) on ``/metrics`` and ``/readyz`` of ``app``."""
    app.state.worker_restarts = restarts
    app.state.metrics.register(RestartCollector(restarts))
