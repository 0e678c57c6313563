"""Prometheus metrics: queue and worker gauges read from Redis at scrape time, HTTP counts per route,
and what other processes count in Redis (:mod:`worker.metrics`): how long jobs waited and ran, and
the restarts of the workers ``gdc serve`` supervises."""
from __future__ import annotations

import time

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from rq import Queue
from rq.worker import Worker

from worker import metrics

HISTOGRAMS = {  # worker.metrics' histograms: their help, and the name of their series' label
    metrics.JOB_WAIT: ("Seconds a segmentation waited in the queue, from enqueued (or queued again) to started", None),
    metrics.JOB_DURATION: ("Seconds a segmentation ran, from started to ended, by the status it ended in", "status"),
}


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
        yield from self.histograms()
        restarts = metrics.restarts(queue.connection, queue.name)
        if restarts is not None:
            yield CounterMetricFamily(
                "gdc_worker_restarts", "Worker processes gdc serve started again after one exited", value=restarts
            )

    def histograms(self):
        bounds = [floatToGoString(bound) for bound in metrics.BUCKETS]
        for name, (documentation, label) in HISTOGRAMS.items():
            family = HistogramMetricFamily(f"gdc_{name}", documentation, labels=[label] if label else None)
            for series in metrics.histogram(self.queue.connection, self.queue.name, name):
                family.add_metric([series.label] if label else [], list(zip(bounds, series.cumulative)), series.sum)
            yield family


class RequestMetrics:
    """Counts and times every HTTP request by method, route template (no job ids in labels) and status.

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` (``@app.middleware``) cost 0.3 ms of a
    status GET's 1.2 ms (benchmarks/RESULTS.md, 8. The API alone).
    """

    def __init__(self, app, answered: Counter, latency: Histogram) -> None:
        self.app = app
        self.answered = answered
        self.latency = latency

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before it answers

        async def sending(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")  # the router sets it on this scope
            self.answered.labels(scope["method"], route, str(status)).inc()
            self.latency.labels(scope["method"], route).observe(time.perf_counter() - started)


def install_metrics(app: FastAPI, queue: Queue) -> None:
    """Give ``app`` its own registry (``app.state.metrics``) and count its requests into it."""
    registry = CollectorRegistry()
    registry.register(QueueCollector(queue))
    answered = Counter("gdc_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=registry)
    latency = Histogram("gdc_http_request_seconds", "Seconds to answer", ["method", "route"], registry=registry)
    app.state.metrics = registry
    app.add_middleware(RequestMetrics, answered=answered, latency=latency)
