"""One segmentation job as the API and the workers see it: its id, its public status, reading and waiting on it.

Public statuses are RQ's job states folded into five (``queued``, ``running``, ``succeeded``,
``failed``, ``canceled``), a cancel request winning over what RQ recorded. Jobs are read with
RQ's JSON serializer only, so nothing is ever unpickled.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from enum import Enum

from rq import Queue
from rq.exceptions import DeserializationError, InvalidJobOperation, NoSuchJobError
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.results import Result

from . import store
from .keys import Kind, key_for

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


def status_from_rq(status: JobStatus) -> Status:
    """RQ's job state as clients see it, leaving out a cancel request (:func:`public_status` adds that)."""
    return _FROM_RQ[status]


def public_status(job: Job) -> Status:
    """The job's status as clients see it, read now in one round trip; a cancel request wins over what RQ recorded.

    Raises InvalidJobOperation when the job's record is gone, as RQ's ``get_status`` does.
    """
    with job.connection.pipeline(transaction=False) as pipeline:
        pipeline.exists(key_for(Kind.CANCEL, job.id))
        pipeline.hget(job.key, "status")
        canceled, status = pipeline.execute()
    if canceled:
        return Status.CANCELED
    if not status:
        raise InvalidJobOperation(f"Failed to retrieve status for job: {job.id}")
    return status_from_rq(JobStatus(status.decode()))


def fetch_job(queue: Queue, job_id: str) -> Job | None:
    """The job with this id, or None when unknown, expired, or not JSON (nothing is ever unpickled)."""
    try:
        job = Job.fetch(job_id, connection=queue.connection, serializer=queue.serializer)
    except NoSuchJobError:
        return None
    return job if _is_json(job) else None


def _is_json(job: Job) -> bool:
    try:
        job.func_name  # noqa: B018 - decodes the JSON payload now, so a foreign (e.g. pickled) job is unknown
    except (DeserializationError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class JobSnapshot:
    """A job with its public status and its place in the queue, as read at one moment."""

    job: Job
    status: Status
    position: int | None  # jobs ahead of it while queued, else None


def snapshot(job: Job) -> JobSnapshot:
    """``job``'s status and position read now (two round trips)."""
    status = public_status(job)
    return JobSnapshot(job, status, job.get_position() if status is Status.QUEUED else None)


# What a status poll needs in one round trip: the job's record, its cancel flag and, only while it is queued
# (LPOS walks the queue), its position there. Polls are the API's most frequent request.
_READ_SNAPSHOT = """
local record = redis.call('HGETALL', KEYS[1])
if #record == 0 then return false end
local canceled = redis.call('EXISTS', KEYS[2])
local position = false
if canceled == 0 and redis.call('HGET', KEYS[1], 'status') == 'queued' then
  position = redis.call('LPOS', KEYS[3], ARGV[1])
end
return {record, canceled, position}
"""


def read_snapshot(queue: Queue, job_id: str) -> JobSnapshot | None:
    """:func:`fetch_job` and :func:`snapshot` in one round trip, for a job on ``queue``; None as fetch_job."""
    keys = [Job.key_for(job_id), key_for(Kind.CANCEL, job_id), queue.key]
    found = queue.connection.register_script(_READ_SNAPSHOT)(keys=keys, args=[job_id])
    if not found:
        return None
    record, canceled, position = found
    job = Job(job_id, connection=queue.connection, serializer=queue.serializer)
    job.restore(dict(zip(record[::2], record[1::2], strict=True)))
    if not _is_json(job):
        return None
    status = Status.CANCELED if canceled else status_from_rq(job.get_status(refresh=False))
    return JobSnapshot(job, status, position)


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
