"""Segmentation jobs on RQ as the service sees them; no torch, so the API uses it too.

The queue uses RQ's JSON serializer; jobs are enqueued by dotted path. Public statuses
are RQ's job states folded into five (``queued``, ``running``, ``succeeded``, ``failed``,
``canceled``). Work whose worker died is found by :func:`sweep` from the heartbeats in
RQ's StartedJobRegistry, then retried with back-off or failed, and its callback sent.
"""
from __future__ import annotations

import logging
import secrets
import time
from contextlib import suppress
from enum import Enum

from redis import Redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import WatchError
from redis.retry import Retry as RedisRetry
from redis.sentinel import Sentinel, SentinelManagedConnection
from rq import Queue, Retry
from rq.exceptions import DeserializationError, InvalidJobOperation, NoSuchJobError
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.results import Result
from rq.serializers import JSONSerializer
from rq.utils import current_timestamp

from . import store
from .keys import Kind, key_for
from .meta import ErrorCode, JobMeta, save_error
from .settings import QueueSettings

log = logging.getLogger(__name__)
SEGMENT_TASK = "worker.tasks.run_segment"
CALLBACK_TASK = "worker.tasks.send_callback"
# A job canceled while queued records no result to wake a waiter (:func:`wait_for`), so a waiter looks at the
# status at least this often; well under GDC_REDIS_TIMEOUT, past which the blocked read would count as Redis failing.
WAKE_SECONDS = 0.5
# What new_job_id() makes; the API refuses anything else before it reaches Redis.
JOB_ID_PATTERN = r"^[0-9a-f]{32}$"


def new_job_id() -> str:
    """A fresh job id: 128 random bits, unguessable (whoever holds it can read the job).

    Hex, so that an id never starts with "-" (a command line would read it as an option) and a
    double click selects it whole in a terminal.
    """
    return secrets.token_hex(16)


class Status(str, Enum):
    """What clients see of a job."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


ENDED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELED)

_FROM_RQ = {
    JobStatus.CREATED: Status.QUEUED,
    JobStatus.QUEUED: Status.QUEUED,
    JobStatus.DEFERRED: Status.QUEUED,
    JobStatus.SCHEDULED: Status.QUEUED,  # waiting out a retry back-off
    JobStatus.RATE_LIMITED: Status.QUEUED,
    JobStatus.READY_TO_ENQUEUE: Status.QUEUED,
    JobStatus.STARTED: Status.RUNNING,
    JobStatus.FINISHED: Status.SUCCEEDED,
    JobStatus.FAILED: Status.FAILED,
    JobStatus.STOPPED: Status.FAILED,
    JobStatus.CANCELED: Status.CANCELED,
}


def connect(settings: QueueSettings) -> Redis:
    """A Redis client that gives up after ``settings.redis_timeout`` s (then callers answer 503).

    With ``settings.redis_sentinels`` the client asks the Sentinels for the primary on every
    new connection, and drops its connections when the server it reaches is no longer the
    primary, so it follows a failover by itself. A refused or dropped connection is retried a
    few times within about a second, which rides over a Redis restart; a timeout is not
    retried, so no request hangs.
    """
    options = {
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
        "retry": RedisRetry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 3, (RedisConnectionError,)),
    }
    if not settings.redis_sentinels:
        return Redis.from_url(settings.redis_url, **options)
    sentinels = [(host, int(port)) for host, _, port in (item.rpartition(":") for item in settings.redis_sentinels)]
    sentinel = Sentinel(
        sentinels,
        sentinel_kwargs={**options, "password": _secret(settings.redis_sentinel_password)},
        password=_secret(settings.redis_password),
        **options,
    )
    return sentinel.master_for(settings.redis_sentinel_master, connection_class=_SentinelConnection)


class _SentinelConnection(SentinelManagedConnection):
    """redis-py's Sentinel connection, closed after a failed read as its plain connection is.

    ``SentinelManagedConnection.read_response`` defaults ``disconnect_on_error`` to False (redis-py
    8.1), so a read that timed out during a failover left its answer on the socket for the next
    command to read: /readyz got an EXPIRE's 1 where it asked for a set, and answered 500.
    """

    def read_response(self, *args, disconnect_on_error: bool = True, **kwargs):
        return super().read_response(*args, disconnect_on_error=disconnect_on_error, **kwargs)


def _secret(value) -> str | None:
    return None if value is None else value.get_secret_value()


def replicate(connection: Redis, settings: QueueSettings, job_id: str) -> bool:
    """Wait until ``settings.redis_replicas_to_wait`` replicas hold the job just enqueued (Redis ``WAIT``).

    Redis replicates asynchronously: a job the primary acknowledged is lost when the primary
    dies before a replica has it and Sentinel promotes that replica. Waiting for a replica
    before answering 202 closes that gap. False when fewer confirmed within half of
    ``settings.redis_timeout`` (a replica down: the job stands, on the primary alone).
    """
    wanted = settings.redis_replicas_to_wait
    if wanted == 0:
        return True
    with connection.pipeline(transaction=False) as pipeline:
        # WAIT counts its own connection's writes, and the pool may hand out another connection
        # than the enqueueing one: so write once here (re-arm the upload's TTL) and WAIT behind
        # it. Replication keeps order, so a replica holding this write holds the job too.
        pipeline.expire(key_for(Kind.UPLOAD, job_id), settings.queued_ttl)
        pipeline.wait(wanted, int(settings.redis_timeout * 500))  # within the socket's timeout
        _, confirmed = pipeline.execute()
    return confirmed >= wanted


def open_queue(connection: Redis, name: str) -> Queue:
    """The job queue ``name``, with JSON job arguments and results (no pickle)."""
    return Queue(name, connection=connection, serializer=JSONSerializer)


def fetch_job(queue: Queue, job_id: str) -> Job | None:
    """The job with this id, or None when unknown, expired, or not JSON (nothing is ever unpickled)."""
    try:
        job = Job.fetch(job_id, connection=queue.connection, serializer=queue.serializer)
        job.func_name  # noqa: B018 - decodes the JSON payload now, so a foreign (e.g. pickled) job is unknown
    except (NoSuchJobError, DeserializationError, ValueError):
        return None
    return job


def public_status(job: Job) -> Status:
    """The job's status as clients see it; a cancel request wins over what RQ recorded."""
    if job.connection.exists(key_for(Kind.CANCEL, job.id)):
        return Status.CANCELED
    return _FROM_RQ[job.get_status(refresh=True)]


def wait_for(job: Job, seconds: float, *, or_mask: bool = False) -> None:
    """Return once ``job`` ended (or, ``or_mask``, once its mask is stored), or after ``seconds``.

    Woken by RQ's result stream, which a worker writes the moment it records a job's end, and by the
    job's ``gdc:ready`` stream, written with its mask, so it returns without a polling interval's delay.
    Raises NoSuchJobError or InvalidJobOperation when the job is deleted meanwhile.
    """
    deadline = time.monotonic() + seconds
    streams = {Result.get_key(job.id): "0-0"} | ({key_for(Kind.READY, job.id): "0-0"} if or_mask else {})

    def waiting() -> bool:
        return public_status(job) not in ENDED and not (or_mask and store.has_mask(job.connection, job.id))

    while waiting() and (left := deadline - time.monotonic()) > 0:
        block_ms = max(1, round(min(left, WAKE_SECONDS) * 1000))
        for stream, entries in job.connection.xread(streams, block=block_ms) or ():
            streams[stream.decode()] = entries[-1][0]
    job.refresh()  # the meta (progress, warm) as it is now


def _retry(times: int, backoff: list[int]) -> Retry | None:
    return Retry(max=times, interval=backoff) if times > 0 else None


def enqueue_segment(
    pipeline,
    queue: Queue,
    settings: QueueSettings,
    *,
    job_id: str,
    image: bytes,
    scribbles_png: bytes,
    options: dict,
    meta: JobMeta,
    previous: str | None = None,
) -> None:
    """Add storing the upload and enqueueing its job to ``pipeline`` (the caller executes it).

    The job's arguments are JSON: the upload's Redis key, the engine options and, for a
    refine, the id of the job whose warm start it starts from.
    """
    store.save_upload(pipeline, job_id, image, scribbles_png, settings.queued_ttl)
    queue.enqueue_call(
        SEGMENT_TASK,
        kwargs={"upload": key_for(Kind.UPLOAD, job_id), "options": options, "previous": previous},
        job_id=job_id,
        timeout=settings.job_timeout,
        ttl=settings.queued_ttl,
        result_ttl=settings.result_ttl,
        failure_ttl=settings.failure_ttl,
        retry=_retry(settings.job_retries, settings.retry_backoff),
        meta=meta.as_dict(),
        description=f"segment {meta.width}x{meta.height}, {len(meta.classes)} classes",
        pipeline=pipeline,
    )


def holds(connection, job: Job, execution_id: str) -> bool:
    """Whether RQ's execution ``execution_id`` of ``job`` still holds the job.

    A worker cut off the network stops beating; the sweep then takes its job out of RQ's
    StartedJobRegistry and queues it again, so another worker runs it. Heartbeats only
    extend entries already there, so once taken the entry never comes back: the cut-off
    worker, back on the network, checks this before writing anything, and writes nothing
    over the newer run. ``connection`` may be a pipeline watching the registry.
    """
    return connection.zscore(job.started_job_registry.key, f"{job.id}:{execution_id}") is not None


def delete_ended_job(job: Job) -> None:
    """Delete an ended job's record, its RQ results and executions.

    RQ's ``Job.delete`` fetches every execution the job's registry lists and raises ValueError for
    one whose hash expired first (a run whose worker lost Redis long enough); such ids are dropped
    from the registry before.
    """
    registry = job.execution_registry
    for execution_id in registry.get_execution_ids():
        if not job.connection.exists(Execution(execution_id, job.id, connection=job.connection).key):
            job.connection.zrem(registry.key, execution_id)
    job.delete()


def cancel_job(queue: Queue, job: Job, settings: QueueSettings) -> None:
    """Stop a queued or running job for good and drop its upload and results.

    The cancel flag outlives the job record, so the job reads ``canceled`` until it expires;
    a running job's worker sees the flag at the engine's next step.
    """
    connection = queue.connection
    connection.set(key_for(Kind.CANCEL, job.id), 1, ex=settings.failure_ttl)
    if _FROM_RQ[job.get_status(refresh=True)] is Status.QUEUED:
        with suppress(InvalidJobOperation):
            job.cancel()
        connection.expire(job.key, settings.failure_ttl)
        notify(queue, job, settings)
    store.delete_job_data(connection, job.id)


def notify(queue: Queue, job: Job, settings: QueueSettings) -> None:
    """Enqueue the delivery of the job's final status to its callback URL, once."""
    url = job.get_meta(refresh=True).get("callback_url")
    if not url or public_status(job) not in ENDED:
        return
    if not queue.connection.set(key_for(Kind.NOTIFIED, job.id), 1, nx=True, ex=settings.failure_ttl):
        return
    queue.enqueue_call(
        CALLBACK_TASK,
        kwargs={"job_id": job.id, "url": url},
        at_front=True,  # a receiver should not wait behind queued segmentations
        result_ttl=settings.result_ttl,
        failure_ttl=settings.failure_ttl,
        retry=_retry(settings.callback_retries, settings.callback_backoff),
        description=f"callback for {job.id}",
    )


def sweep(queue: Queue, settings: QueueSettings) -> None:
    """Settle jobs whose worker stopped beating, enqueue retries whose back-off is over, and put
    back jobs a worker took but never started (:func:`_return_stranded`).

    RQ's StartedJobRegistry scores each running job with its worker's next heartbeat
    deadline; past it, the worker is gone. RQ's cleanup then retries the job (with
    back-off) or fails it; here we also record why and send the callback. Live workers
    run this every few seconds and the API on reads of running jobs, under a lock so
    two sweeps never retry the same job twice.
    """
    connection = queue.connection
    lock = key_for(Kind.SWEEP, queue.name)
    if not connection.set(lock, 1, nx=True, px=10_000):
        return
    try:
        started = queue.started_job_registry
        abandoned = started.get_expired_job_ids()
        if abandoned:
            started.cleanup()
        for job in Job.fetch_many(abandoned, connection=connection, serializer=queue.serializer):
            if job is not None:
                _record_abandoned(queue, job, settings)
        scheduled = queue.scheduled_job_registry
        for job_id in scheduled.get_jobs_to_schedule(current_timestamp()):
            with suppress(InvalidJobOperation, NoSuchJobError):
                scheduled.requeue(job_id)
        _return_stranded(queue, settings)
    finally:
        connection.delete(lock)


def _return_stranded(queue: Queue, settings: QueueSettings) -> None:
    """Put a job that a worker took but never started back at the front of its queue.

    RQ takes a job by moving it onto the queue's intermediate list (BLMOVE), and off it in the
    transaction that enters it in the StartedJobRegistry. A worker that loses Redis between the
    two (Redis restarting, the worker's host cut off) leaves the job there, 'queued' yet in no
    queue, and no heartbeat ever finds it; RQ's own check would fail it at a maintenance ten
    minutes later. A job seen there unstarted by sweeps a heartbeat TTL apart goes back unrun, its
    retries untouched. A sighting is forgotten after three TTLs, so one made in the instant
    between a normal take and start does not count against the job when it comes back after that.
    """
    connection = queue.connection
    intermediate = queue.intermediate_queue
    taken = intermediate.get_job_ids()
    if not taken:  # the usual case: read no registry
        return
    started = set(queue.started_job_registry.get_job_ids(cleanup=False))
    for job_id in taken:
        if job_id in started:
            continue
        seen = key_for(Kind.STRANDED, job_id)
        if connection.set(seen, time.time(), nx=True, ex=3 * settings.heartbeat_ttl):
            continue  # first sighting
        if time.time() - float(connection.get(seen) or "inf") < settings.heartbeat_ttl:
            continue
        job = fetch_job(queue, job_id)
        waiting = job is not None and job.get_status(refresh=False) == JobStatus.QUEUED  # not canceled meanwhile
        with connection.pipeline() as pipeline, suppress(WatchError):
            pipeline.watch(intermediate.key)  # a worker starting the job after all takes it off this list
            if pipeline.lpos(intermediate.key, job_id) is None:
                continue
            pipeline.multi()
            pipeline.lrem(intermediate.key, 1, job_id)
            if waiting:
                queue.push_job_id(job_id, pipeline=pipeline, at_front=True)
            pipeline.delete(seen)
            pipeline.execute()
            if waiting:
                log.warning("job %s: its worker took it and lost Redis before starting it; queued again", job_id)


def _record_abandoned(queue: Queue, job: Job, settings: QueueSettings) -> None:
    status = job.get_status(refresh=True)
    if status == JobStatus.FAILED:
        save_error(job, ErrorCode.WORKER_LOST, "the worker running this job stopped and no retries were left")
        store.delete_job_data(queue.connection, job.id)
        notify(queue, job, settings)
    elif _FROM_RQ[status] is Status.QUEUED:
        save_error(
            job, ErrorCode.WORKER_LOST, f"the worker running this job stopped; retrying ({job.retries_left} left)",
            requeued=True,
        )
