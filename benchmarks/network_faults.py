"""Losing a host with a ``gdc batch`` in flight, on :class:`~benchmarks.hosts.GdcOnHosts`.

Each fault runs a batch of tiny images from the client host and returns a :class:`FaultRun`:
jobs submitted, label maps written, jobs lost (accepted, then unknown to the server: the
batch sends the image again) and images sent as more than one job, the seconds until jobs
flowed again, and the API's answer times (GET /readyz from the client host every 0.25 s)
while the fault lasted. ``tests/reliability/test_network_faults.py`` runs them small in CI;
``python -m benchmarks.faults`` runs them long for benchmarks/reliability.md.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from rq.job import Job
from rq.worker import Worker

from apps.batch import JOURNAL, jobs_submitted, journal_events
from gdc.imageio import encode_png
from worker.connection import connect
from worker.queue import open_queue
from worker.settings import QueueSettings

from .hosts import API_PORT, GdcOnHosts, Hosts, python, wait_until
from .tiny import tiny_image, tiny_scribbles, tiny_upload

# Heartbeats every second, a lost worker's job retried after 3 s; a replica must hold each job
# before POST /segment answers (GDC_REDIS_REPLICAS_TO_WAIT). Retries cover two faults in a row.
SETTINGS = {"heartbeat_ttl": 3, "retry_backoff": 1, "job_retries": 5, "worker_threads": 1, "redis_replicas_to_wait": 1}
# For a network with 400 ms round trips and 5% loss, where one lost segment costs a retransmission
# of a second or more: Redis calls may take 10 s (WAIT for the replica half of it) and a
# heartbeat 15 s before a worker counts as gone. With SETTINGS' 2 s and 3 s there, calls time out,
# jobs are handed over while their worker still runs them, and the batch barely moves.
SLOW_NETWORK_SETTINGS = {**SETTINGS, "heartbeat_ttl": 15, "redis_timeout": 10}
BATCH_OPTIONS = ("--steps", "2", "--samples", "1", "--superpixel-size", "60")
# Seconds of engine work on one thread: still running when its worker is cut off.
LONG_JOB = {"steps": 300, "samples": 30, "superpixel_size": 60}


@dataclass
class FaultRun:
    """What one fault did to one batch."""

    fault: str
    submitted: int  # jobs the batch's journal records
    succeeded: int  # label maps written
    lost: int  # accepted jobs the server no longer knew (sent again)
    duplicated: int  # images sent as more than one job
    recovery: float | None  # seconds from the fault until jobs flowed again
    latencies: list[float] = field(repr=False)  # the API's answer times during the fault, seconds
    unanswered: int  # probes that got no answer within 5 s

    def percentile(self, q: float) -> float | None:
        return float(np.percentile(self.latencies, q)) if self.latencies else None

    def row(self) -> str:
        """A Markdown table row: fault, submitted, succeeded, lost, duplicated, recovery, API p50 / p99."""
        recovery = "-" if self.recovery is None else f"{self.recovery:.1f} s"
        p50, p99 = (self.percentile(q) for q in (50, 99))
        latency = "-" if p50 is None else f"{p50 * 1000:.0f} / {p99 * 1000:.0f} ms"
        return (
            f"| {self.fault} | {self.submitted} | {self.succeeded} | {self.lost} | {self.duplicated} | {recovery} "
            f"| {latency}, {self.unanswered} unanswered |"
        )


TABLE_HEADER = (
    "| Fault | Submitted | Succeeded | Lost | Duplicated | Recovery | API p50 / p99 (GET /readyz) |\n"
    "| --- | --- | --- | --- | --- | --- | --- |"
)


class Prober(threading.Thread):
    """GET /readyz from the client host every 0.25 s; :meth:`window` gives the answer times between two moments."""

    def __init__(self, hosts: Hosts, url: str) -> None:
        super().__init__(daemon=True)
        self.hosts, self.url = hosts, url
        self.answers: list[tuple[float, float]] = []  # (when, seconds)
        self.unanswered: list[float] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        with self.hosts.inside("client"), httpx.Client(timeout=5) as http:
            while not self.stopped.wait(0.25):
                started = time.time()
                try:
                    http.get(f"{self.url}/readyz")
                    self.answers.append((started, time.time() - started))
                except httpx.HTTPError:
                    self.unanswered.append(started)

    def window(self, start: float, end: float) -> tuple[list[float], int]:
        latencies = [seconds for when, seconds in self.answers if start <= when <= end]
        return latencies, sum(1 for when in self.unanswered if start <= when <= end)

    def stop(self) -> None:
        self.stopped.set()
        self.join()


class BatchRun:
    """``gdc batch`` over ``images`` tiny images, run on the client host."""

    def __init__(self, deployment: GdcOnHosts, root: Path, name: str, images: int, concurrency: int = 8) -> None:
        self.images, self.scribbles, self.out = root / "images", root / "scribbles", root / "out"
        for folder in (self.images, self.scribbles):
            folder.mkdir(parents=True)
        for seed in range(images):
            (self.images / f"{seed:04d}.png").write_bytes(encode_png(tiny_image(seed)))
            (self.scribbles / f"{seed:04d}.png").write_bytes(encode_png(tiny_scribbles()))
        self.count = images
        self.process = deployment.hosts.start(
            "client", name,
            *python("-m", "apps.cli", "batch", str(self.images), str(self.scribbles), "-o", str(self.out),
                    "--server", deployment.url, "--concurrency", str(concurrency), *BATCH_OPTIONS),
        )

    def label_maps(self) -> list[float]:
        """When each label map written so far was written (wall clock)."""
        return sorted(path.stat().st_mtime for path in self.out.glob("[0-9]*.png"))

    def first_map_after(self, moment: float, timeout: float) -> float:
        """Seconds from ``moment`` until the first label map written after it."""
        return wait_until(lambda: next((t - moment for t in self.label_maps() if t > moment), None), timeout, "a label map")

    def wait_for_maps(self, count: int, timeout: float) -> None:
        wait_until(lambda: len(self.label_maps()) >= count, timeout, f"{count} label maps")

    def finish(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def outcome(self, fault: str, recovery: float | None, latencies: list[float], unanswered: int) -> FaultRun:
        jobs = jobs_submitted(self.out)
        lost = sum(1 for event in journal_events(self.out / JOURNAL) if "lost" in event)
        return FaultRun(
            fault=fault,
            submitted=sum(len(ids) for ids in jobs.values()),
            succeeded=len(self.label_maps()),
            lost=lost,
            duplicated=sum(1 for ids in jobs.values() if len(ids) > 1),
            recovery=recovery,
            latencies=latencies,
            unanswered=unanswered,
        )


def _run(deployment: GdcOnHosts, root: Path, name: str, images: int, fault, wait_for_maps: bool = True) -> FaultRun:
    """Start a batch and the prober, apply ``fault(batch) -> (description, recovery)`` once a fifth of the
    maps are written (at once without ``wait_for_maps``), and let the batch finish."""
    prober = Prober(deployment.hosts, deployment.url)
    prober.start()
    try:
        batch = BatchRun(deployment, root / name, name, images)
        if wait_for_maps:
            batch.wait_for_maps(max(1, images // 5), 300)
        began = time.time()
        description, recovery = fault(batch)
        ended = time.time()
        code = batch.finish(timeout=600)
        assert code == 0, deployment.hosts.log(name)[-3000:]
    finally:
        prober.stop()
    return batch.outcome(description, recovery, *prober.window(began, max(ended, began + 1)))


def primary_killed(deployment: GdcOnHosts, root: Path, images: int) -> FaultRun:
    """``kill -9`` of the Redis primary: the Sentinels promote the replica; the killed server then returns as a replica."""
    redis = deployment.redis
    with deployment.hosts.inside("client"):
        old = redis.primary()

    def kill(batch: BatchRun):
        killed = time.time()
        redis.kill(old)
        with deployment.hosts.inside("client"):
            wait_until(lambda: redis.primary() not in (None, old), 60, "the Sentinels to promote the replica")
        promoted = time.time() - killed
        recovery = batch.first_map_after(killed + 0.5, 120) + 0.5  # maps fetched before the kill land within ms
        return f"`kill -9` of the Redis primary (replica promoted after {promoted:.1f} s)", recovery

    run = _run(deployment, root, "primary-killed", images, kill)
    redis.start_server(old)  # the host comes back: the Sentinels make it a replica of the new primary
    with deployment.hosts.inside("client"):
        wait_until(lambda: redis.replicas_in_sync(redis.primary()) >= 1, 60, "the old primary to rejoin as a replica")
    return run


def api_cut_off(deployment: GdcOnHosts, root: Path, images: int, seconds: float) -> FaultRun:
    """The API's host off the network for ``seconds``: the batch waits, then goes on without sending anything twice."""

    def cut(batch: BatchRun):
        deployment.hosts.cut("api")
        time.sleep(seconds)
        deployment.hosts.mend("api")
        mended = time.time()
        return f"API host cut off for {seconds:.0f} s", batch.first_map_after(mended, 120)

    return _run(deployment, root, "api-cut-off", images, cut)


def network_impaired(
    deployment: GdcOnHosts, root: Path, images: int, delay_ms: int, loss_percent: float
) -> tuple[FaultRun, dict]:
    """``delay_ms`` delay and ``loss_percent`` loss on every host's link for the whole batch (:meth:`Hosts.impair`).

    Returns the run, and what the network did: the client's round trip to the API before and
    during the impairment (the least of a few TCP handshakes: a lost SYN waits a second), the
    packets dropped on all links, the batch's seconds, and the failovers the Sentinels made
    meanwhile (none is wanted: a slow primary is not a dead one).
    """
    hosts, redis = deployment.hosts, deployment.redis
    api = hosts.addresses["api"]

    def round_trip() -> float:
        return min(hosts.round_trip("client", api, API_PORT) for _ in range(5))

    # One lost Sentinel ping must not look like a dead primary: 5 s, as production would set it.
    with hosts.inside("client"):
        redis.set_down_after(5000)
    failovers_before = redis.failovers()
    network = {"round_trip_before": round_trip()}
    for host in hosts.addresses:
        hosts.impair(host, delay_ms, loss_percent)
    try:
        network["round_trip"] = round_trip()
        prober = Prober(hosts, deployment.url)
        prober.start()
        try:
            began = time.time()
            batch = BatchRun(deployment, root / "impaired", "impaired", images)
            code = batch.finish(timeout=600 + 20 * images)  # 14-40 s a job for each of the 2 workers
            network["batch_seconds"] = time.time() - began
            assert code == 0, hosts.log("impaired")[-3000:]
        finally:
            prober.stop()
        network["dropped"] = sum(hosts.dropped(host) for host in hosts.addresses)
    finally:
        for host in hosts.addresses:
            hosts.unimpair(host)
        with hosts.inside("client"):
            redis.set_down_after()
    network["failovers"] = redis.failovers() - failovers_before
    description = (
        f"{delay_ms} ms delay and {loss_percent:g}% loss on every link "
        f"(round trip {network['round_trip'] * 1000:.0f} ms, {network['dropped']} packets dropped)"
    )
    return batch.outcome(description, None, *prober.window(began, time.time())), network


def worker_cut_off(deployment: GdcOnHosts, root: Path, images: int, seconds: float) -> tuple[FaultRun, dict]:
    """A worker's host off the network for ``seconds`` while it runs a long job; a batch of tiny jobs meanwhile.

    Returns the batch's run, and what became of the long job: its status, how many runs RQ
    recorded as succeeded, whether the run cut off is among them, the host cut off and the one
    whose run stands.
    """
    hosts = deployment.hosts
    with hosts.inside("client"), httpx.Client(base_url=deployment.url, timeout=10) as http:
        answer = http.post("/segment", files=tiny_upload(7), data=LONG_JOB)
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["id"]
    cut_off = {}

    def cut(batch: BatchRun):
        with hosts.inside("client"), httpx.Client(base_url=deployment.url, timeout=10) as http:
            wait_until(lambda: http.get(f"/jobs/{job_id}").json()["status"] == "running", 120, "the long job to run")
            cut_off.update(host=_worker_host(deployment, job_id), run=_execution(deployment, job_id))
            cut_at = time.time()
            hosts.cut(cut_off["host"])
            try:
                cut_off["was_running"] = http.get(f"/jobs/{job_id}").json()["status"] == "running"
                wait_until(lambda: http.get(f"/jobs/{job_id}").json()["status"] == "succeeded", seconds + 300,
                           "the long job to succeed on another worker")
                recovery = time.time() - cut_at
                time.sleep(max(0.0, seconds - (time.time() - cut_at)))
            finally:
                hosts.mend(cut_off["host"])
        return f"worker host cut off for {seconds:.0f} s mid-job", recovery

    run = _run(deployment, root, "worker-cut-off", images, cut, wait_for_maps=False)
    with hosts.inside("client"):
        # The cut-off worker is back: give it time to finish what it was doing, then see what stands.
        wait_until(lambda: deployment.readyz().get("workers") == len(deployment.worker_hosts), 120,
                   "the cut-off worker to register again")
        time.sleep(SETTINGS["heartbeat_ttl"] * 2)
        succeeded = [result for result in _job(deployment, job_id).results() if result.type.name == "SUCCESSFUL"]
        long_job = {
            "status": httpx.get(f"{deployment.url}/jobs/{job_id}", timeout=10).json()["status"],
            "running_when_cut": cut_off["was_running"],
            "successful_runs": len(succeeded),
            "standing_run_is_the_cut_off_one": any(result.execution_id == cut_off["run"] for result in succeeded),
            "cut_off": cut_off["host"],
            "ran_on": _worker_host(deployment, job_id),  # may be the cut-off host again, in a run of its own
        }
    return run, long_job


def _queue_connection(deployment: GdcOnHosts):
    return connect(QueueSettings(redis_sentinels=deployment.redis.sentinels.split(",")))


def _job(deployment: GdcOnHosts, job_id: str) -> Job:
    queue = open_queue(_queue_connection(deployment), "gdc")
    return Job.fetch(job_id, connection=queue.connection, serializer=queue.serializer)


def _execution(deployment: GdcOnHosts, job_id: str) -> str:
    """The id of RQ's execution running the job now (its entry in the StartedJobRegistry is ``job:execution``)."""
    job = _job(deployment, job_id)
    running = [entry.decode() for entry in job.connection.zrange(job.started_job_registry.key, 0, -1)]
    return next(entry.split(":", 1)[1] for entry in running if entry.startswith(f"{job_id}:"))


def _worker_host(deployment: GdcOnHosts, job_id: str) -> str:
    """The host of the worker that last took the job (from the pid RQ registered)."""
    job = _job(deployment, job_id)
    workers = {worker.name: worker.pid for worker in Worker.all(connection=job.connection)}
    pid = workers[job.worker_name]
    return next(host for host, process in deployment.workers.items() if process.pid == pid)


def write_report(runs: list[FaultRun], path: Path) -> None:
    """The runs as JSON (figures and every answer time), for benchmarks/reliability.md."""
    path.write_text(json.dumps([run.__dict__ for run in runs], indent=1))


def replication_wait_cost(deployment: GdcOnHosts, writes: int = 200) -> dict[str, float]:
    """Median seconds of a write to the primary from the client host, alone and followed by ``WAIT 1``
    (what GDC_REDIS_REPLICAS_TO_WAIT=1 adds to each POST /segment)."""
    with deployment.hosts.inside("client"):
        redis = _queue_connection(deployment)
        timings: dict[str, list[float]] = {"write": [], "write_and_wait": []}
        for n in range(writes):
            for kind, wait in (("write", False), ("write_and_wait", True)):
                with redis.pipeline(transaction=False) as pipeline:
                    pipeline.set(f"gdc:bench:wait:{n}", n, ex=60)
                    if wait:
                        pipeline.wait(1, 1000)
                    started = time.perf_counter()
                    pipeline.execute()
                    timings[kind].append(time.perf_counter() - started)
    return {kind: float(np.median(values)) for kind, values in timings.items()}
