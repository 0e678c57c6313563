"""The warm worker: load the engine once, then run jobs in-process with RQ's SimpleWorker.

RQ's "Performance Notes" advise importing heavy modules before ``work()``; SimpleWorker
runs each job in this process (no ``fork()``, which CUDA does not survive), so torch, the
device and the stem stay loaded between jobs.

SimpleWorker does not beat while a job runs. A pulse thread does: every third of
``GDC_HEARTBEAT_TTL`` it extends the running job's entry in RQ's StartedJobRegistry and
sweeps the queue (:func:`worker.sweep.sweep`), and renews a ``cuda:auto`` worker's GPU lease
(:mod:`worker.gpus`). A worker killed mid-job stops beating; within
``GDC_HEARTBEAT_TTL`` its job is past its deadline and the next sweep, by any live worker
or by the API, retries it with back-off or fails it. The pulse comes early for that deadline
and for the end of a retry's back-off. It gives up a job that ran past its timeout, so a
wedged worker cannot hold a job forever either.

Each segmentation's wait and run go into the histograms ``/metrics`` reports (:mod:`worker.metrics`).

RQ's work loop quits on a Redis error it does not handle (Redis restarting mid-job, or
full); :func:`run` then starts a fresh worker, so a worker outlives any Redis outage.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from contextlib import suppress

from redis.exceptions import RedisError
from rq import worker_registration
from rq.exceptions import InvalidJobOperation
from rq.job import Job
from rq.queue import Queue
from rq.serializers import JSONSerializer
from rq.worker import SimpleWorker

from . import metrics
from .connection import connect
from .gpus import AUTO_GPU, GpuLease, claim_gpu
from .job import ENDED, holds, public_status
from .keys import Kind, key_for
from .queue import SEGMENT_TASK, notify
from .settings import QueueSettings
from .sweep import sweep
from .tasks import WorkerContext, current_worker

log = logging.getLogger(__name__)
RECONNECT_SECONDS = 2  # pause before a fresh worker replaces one whose loop Redis broke
# How long the thread reading RQ's command channel blocks in one read. RQ reads 60 s at a time, and redis-py's
# stop() waits for the read to end: a worker told to stop took up to a minute to exit.
COMMAND_READ_SECONDS = 1
# The pulse comes sooner when a retry or an abandoned job is due (:meth:`SegmentWorker._until_next_pulse`), at most
# this often.
SOONEST_PULSE_SECONDS = 0.5


def visible_gpus() -> list[str]:
    """The UUIDs of the GPUs torch sees, in index order."""
    import torch

    return [str(torch.cuda.get_device_properties(index).uuid) for index in range(torch.cuda.device_count())]


def worker_device(settings: QueueSettings, gpus: list[str]) -> tuple[str, GpuLease | None]:
    """The torch device to use and, for ``cuda:auto``, this worker's lease on one of ``gpus`` (UUIDs)."""
    if settings.device != AUTO_GPU:
        return settings.device, None
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"  # unique among live workers
    ttl = settings.heartbeat_ttl
    # Waiting one TTL lets a worker restarted after a kill get back the GPU its old self held.
    lease = claim_gpu(connect(settings), gpus, owner, ttl=ttl, wait=ttl)
    return lease.device, lease


def preload(weights: str, device: str, threads: int) -> None:
    """Import the engine, start the device, load the stem and warm the engine (:func:`gdc.warmup.warm_up`) before
    the first job, on ``threads`` CPU threads."""
    # What the result's polygons need (worker.store imports them lazily, for the API's sake):
    # ~0.5 s here rather than in the first job. skimage loads submodules on first attribute use.
    import shapely  # noqa: F401
    import torch
    from skimage.measure import find_contours  # noqa: F401

    from gdc.options import SegmentOptions
    from gdc.warmup import warm_up

    torch.set_num_threads(threads)
    torch.zeros(1, device=device)  # fails here, not in a job, when the device is missing
    # A photo-sized job of one step with the jobs' samples: the first job then takes 0.98-1.08x the next
    # (AVX2, float32), against 1.06-1.11x after the 32x32 one of one step and one sample run here before.
    warm_up(SegmentOptions(weights=weights, device=device))


class SegmentWorker(SimpleWorker):
    """SimpleWorker with heartbeats during jobs, sweeps of abandoned jobs, and callbacks."""

    def __init__(self, queues, *, settings: QueueSettings, gpu_lease: GpuLease | None = None, **kwargs) -> None:
        kwargs.setdefault("serializer", JSONSerializer)
        kwargs.setdefault("worker_ttl", settings.heartbeat_ttl + 15)  # idle: dequeue blocks heartbeat_ttl s
        super().__init__(queues, **kwargs)
        self.context = WorkerContext(settings)
        self.pulse_every = settings.heartbeat_ttl / 3
        self.gpu_lease = gpu_lease  # renewed with each pulse: the lease's TTL is heartbeat_ttl too
        self._stopped = threading.Event()
        self.shutting_down = threading.Event()
        self._running: tuple[Job, object] | None = None

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        # RQ adds a minute of slack to the job timeout; the pulse beats often, so a short TTL finds dead workers fast.
        return self.context.settings.heartbeat_ttl

    def subscribe(self) -> None:
        """RQ's, with reads of COMMAND_READ_SECONDS."""
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=COMMAND_READ_SECONDS, daemon=True, exception_handler=self._pubsub_exception_handler
        )

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        super().prepare_job_execution(job, remove_from_intermediate_queue)  # marks the job started
        if job.func_name == SEGMENT_TASK and job.enqueued_at is not None:
            waited = (job.started_at - job.enqueued_at).total_seconds()
            with suppress(RedisError):  # a count lost, not the job
                metrics.observe(self.connection, job.origin, metrics.JOB_WAIT, waited)

    def perform_job(self, job: Job, queue: Queue, execution) -> bool:
        token = current_worker.set(self.context)
        self._running = (job, execution)
        self.context.execution_id = execution.id
        try:
            return super().perform_job(job, queue, execution)
        finally:
            self._running = None
            self.context.execution_id = None
            current_worker.reset(token)
            status = public_status(job)
            if status in ENDED:
                notify(queue, job, self.context.settings)
                if job.func_name == SEGMENT_TASK and job.ended_at is not None:
                    ran = (job.ended_at - job.started_at).total_seconds()
                    with suppress(RedisError):
                        metrics.observe(self.connection, queue.name, metrics.JOB_DURATION, ran, label=status.value)

    def canceled_on_request(self, job: Job) -> bool:
        """The job stopped because DELETE asked it to (not because this worker is shutting down)."""
        return not self.context.stopping.is_set() and bool(self.connection.exists(key_for(Kind.CANCEL, job.id)))

    def handle_exception(self, job: Job, *exc_info) -> None:
        if self.canceled_on_request(job):  # asked for, so no traceback: one line says it happened
            self.log.info("Worker %s: job %s canceled on request", self.name, job.id)
            return
        super().handle_exception(job, *exc_info)

    def superseded(self, job: Job, execution) -> bool:
        """The job was given to another worker while this one was cut off from Redis: its outcome here is dropped."""
        if execution is None or holds(self.connection, job, execution.id):
            return False
        self.log.warning(
            "Worker %s: job %s was given to another worker meanwhile; this run's outcome is dropped", self.name, job.id
        )
        return True

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry, execution) -> None:
        if not self.superseded(job, execution):
            super().handle_job_success(job, queue, started_job_registry, execution)

    def handle_job_failure(self, job: Job, queue: Queue, started_job_registry=None, exc_string="", execution=None):
        if self.superseded(job, execution):
            return None
        if not self.canceled_on_request(job):
            return super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)
        # RQ would file it as failed; a cancel goes to RQ's CanceledJobRegistry, where /metrics counts it.
        with self.connection.pipeline() as pipeline:
            self.cleanup_execution(job, pipeline=pipeline, execution=execution)
            pipeline.execute()
        with suppress(InvalidJobOperation):  # already canceled
            job.cancel()
        self.connection.expire(job.key, self.context.settings.failure_ttl)

    def handle_warm_shutdown_request(self) -> None:
        super().handle_warm_shutdown_request()  # RQ's: no new job, exit once the running one returns
        self.shutting_down.set()
        if not self.context.settings.finish_job_on_stop:
            self.context.stopping.set()  # the running job stops at the engine's next step and is retried

    def clean_registries(self) -> None:
        for queue in self.queues:  # ours first: it records why and sends callbacks, RQ's alone would not
            sweep(queue, self.context.settings)
        super().clean_registries()

    def bootstrap(self, *args, **kwargs) -> None:
        # RQ installs its signal handlers after bootstrap, which registers the worker: a SIGTERM in between (a
        # scale-down just after a start) would kill it with its registration left behind. Note a stop instead;
        # the work loop checks for one before its first dequeue.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._stop_before_work)
        super().bootstrap(*args, **kwargs)
        threading.Thread(target=self._pulse, name="gdc-pulse", daemon=True).start()

    def _stop_before_work(self, signum, frame) -> None:
        self.handle_warm_shutdown_request()
        self._stop_requested = True

    def teardown(self) -> None:
        self._stopped.set()
        super().teardown()

    def _pulse(self) -> None:
        while not self._stopped.wait(self._until_next_pulse()):
            try:
                if self.gpu_lease is not None:
                    self.gpu_lease.renew()
                self._beat()
                self._rejoin()
                for queue in self.queues:
                    sweep(queue, self.context.settings)
            except Exception:  # a Redis hiccup must not end the thread that keeps jobs alive
                log.exception("worker pulse failed; trying again in %.1f s", self.pulse_every)

    def _until_next_pulse(self) -> float:
        """Seconds to the next pulse: ``pulse_every``, or less when a retry's back-off or a running job's heartbeat
        deadline ends before, so that the pulse's sweep queues the retry, or settles the job, on time."""
        try:
            due = [
                score - time.time()
                for queue in self.queues
                for registry in (queue.scheduled_job_registry, queue.started_job_registry)
                for _, score in self.connection.zrange(registry.key, 0, 0, withscores=True)
            ]
        except RedisError:
            return self.pulse_every
        return max(SOONEST_PULSE_SECONDS, min([self.pulse_every, *due]))

    def _rejoin(self) -> None:
        """Register again when this worker's registration lapsed, or it would work on unseen, left out of
        /readyz and /metrics. It lapses two ways while Redis is out of reach for longer than the heartbeat:
        the worker's key expires (RQ's heartbeat then recreates only its last_heartbeat, not the worker the
        registry lists); or a cleaning of the registry (each /readyz runs one) finds the key missing just
        before this worker writes it again, and drops it from the lists just after."""
        if not self.connection.hexists(self.key, "birth"):
            self.connection.delete(self.key)
            self.register_birth()
        elif not self._listed():
            worker_registration.register(self)
        else:
            return
        log.warning("worker %s: registered again; its registration lapsed while Redis was out of reach", self.name)

    def _listed(self) -> bool:
        """Whether the lists of workers that /readyz and /metrics read (all, and each queue's) hold this one."""
        by_queue = worker_registration.WORKERS_BY_QUEUE_KEY
        lists = [self.redis_workers_keys, *(by_queue % name for name in self.queue_names())]
        with self.connection.pipeline(transaction=False) as pipeline:
            for key in lists:
                pipeline.sismember(key, self.key)
            return all(pipeline.execute())

    def _beat(self) -> None:
        running = self._running
        if running is None:
            return
        job, execution = running
        working = time.time() - job.started_at.timestamp() if job.started_at else 0.0
        if working <= (job.timeout or self.context.settings.job_timeout) + self.context.settings.heartbeat_ttl:
            self.maintain_heartbeats(job, execution)


def run(settings: QueueSettings, queues: list[str], *, burst: bool = False) -> int:
    """Preload the engine on ``settings.device`` and work ``queues`` until stopped; the exit code."""
    from gdc.options import SegmentOptions

    started = time.perf_counter()
    gpu_lease = None
    try:
        device, gpu_lease = worker_device(settings, visible_gpus() if settings.device == AUTO_GPU else [])
        settings = settings.model_copy(update={"device": device})
        preload(SegmentOptions().weights, device, settings.worker_threads)
        if gpu_lease is not None:
            gpu_lease.renew()  # loading the engine may have taken a good part of the lease's TTL
            shared = "" if gpu_lease.exclusive else ", shared: every GPU is leased"
            print(f"gdc worker: {device} leased by {gpu_lease.owner}{shared}", flush=True)
    # torch reports a missing device with RuntimeError or AssertionError; a lease needs Redis to answer.
    except (RuntimeError, AssertionError, RedisError) as error:
        print(f"gdc worker: error: cannot use device {settings.device!r}: {error}", file=sys.stderr)
        _release(gpu_lease)
        return 2
    print(f"gdc worker: engine ready on {settings.device} in {time.perf_counter() - started:.1f} s", flush=True)
    try:
        return _work(settings, queues, gpu_lease, burst=burst)
    finally:
        _release(gpu_lease)


def _release(gpu_lease: GpuLease | None) -> None:
    if gpu_lease is None:
        return
    try:
        gpu_lease.release()
    except RedisError:  # Redis went first (Ctrl-C on `gdc serve`): the lease lapses by itself
        pass


def _work(settings: QueueSettings, queues: list[str], gpu_lease: GpuLease | None, *, burst: bool) -> int:
    while True:
        try:
            worker = SegmentWorker(queues, connection=connect(settings), settings=settings, gpu_lease=gpu_lease)
        except RedisError as error:  # no answer yet: a restarted server, or Sentinels that name no primary mid-failover
            print(f"gdc worker: cannot reach Redis ({error}); trying again in {RECONNECT_SECONDS} s", flush=True)
            time.sleep(RECONNECT_SECONDS)
            continue
        print(f"gdc worker {worker.name}: listening on {', '.join(queues)} at {settings.redis_target}", flush=True)
        try:
            worker.work(burst=burst, logging_level="INFO")
        except RedisError as error:  # raised while registering or deregistering
            print(f"gdc worker {worker.name}: Redis failed: {error}", flush=True)
        stopping = worker.shutting_down
        if burst or stopping.is_set():
            # Ctrl-C on `gdc serve` reaches the embedded server too, which may be gone before we deregister.
            print(f"gdc worker {worker.name}: stopped", flush=True)
            return 0
        print(f"gdc worker {worker.name}: lost Redis; a fresh worker starts in {RECONNECT_SECONDS} s", flush=True)
        if stopping.wait(RECONNECT_SECONDS):
            return 0
