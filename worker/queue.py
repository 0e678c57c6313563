"""The job queue: opening it, enqueueing a segmentation while it has room, cancelling one, and enqueueing its callback.

The queue uses RQ's JSON serializer; jobs are enqueued by dotted path (:data:`SEGMENT_TASK`,
:data:`CALLBACK_TASK`), so the API never imports the tasks or torch. A job's arguments are JSON
carrying a Redis key, not pixels.
"""
from __future__ import annotations

from contextlib import suppress
from enum import Enum

from redis import Redis
from redis.client import Pipeline
from rq import Queue, Retry
from rq.exceptions import InvalidJobOperation
from rq.job import Job
from rq.serializers import JSONSerializer

from . import store
from .job import ENDED, Status, public_status, status_from_rq
from .keys import Kind, key_for
from .meta import JobMeta
from .settings import QueueSettings

SEGMENT_TASK = "worker.tasks.run_segment"
CALLBACK_TASK = "worker.tasks.send_callback"


def open_queue(connection: Redis, name: str) -> Queue:
    """The job queue ``name``, with JSON job arguments and results (no pickle)."""
    return Queue(name, connection=connection, serializer=JSONSerializer)


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
    prompts: dict | None = None,
) -> None:
    """Add storing the upload and enqueueing its job to ``pipeline`` (the caller executes it).

    The job's arguments are JSON: the upload's Redis key, the engine options, for a
    refine the id of the job whose warm start it starts from, and ``prompts``, a job's
    ``box`` ([x0, y0, x1, y1]) and ``points`` ([[x, y, label], ...]) when it has them.
    """
    store.save_upload(pipeline, job_id, image, scribbles_png, settings.queued_ttl)
    queue.enqueue_call(
        SEGMENT_TASK,
        kwargs={"upload": key_for(Kind.UPLOAD, job_id), "options": options, "previous": previous, **(prompts or {})},
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


class Outcome(str, Enum):
    """What :func:`run_if_room` did."""

    RAN = "ran"  # the commands ran
    FULL = "full"  # the queue held ``limit`` jobs already: nothing ran
    TAKEN = "taken"  # the record was set already (its value comes with it): nothing ran


# Checks and writes in one script, which Redis runs alone: atomic, one round trip, and never started over. Under
# WATCH on the queue, every enqueue overtaken by another (or by a worker taking a job) began again, upload and
# all: 4.1 tries a job with 20 clients on one API process. The written keys are not declared: not for Cluster.
_RUN_IF_ROOM = """
if KEYS[2] then
  local found = redis.call('GET', KEYS[2])
  if found then return {'taken', found} end
end
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[1]) then return {'full'} end
local at = 2
while at <= #ARGV do
  local words = tonumber(ARGV[at])
  redis.call(unpack(ARGV, at + 1, at + words))
  at = at + words + 1
end
return {'ran'}
"""


def run_if_room(queue: Queue, limit: int, commands: Pipeline, record: str | None = None) -> tuple[Outcome, bytes | None]:
    """Run the commands ``commands`` collected (a pipeline never executed, e.g. by :func:`enqueue_segment`) as one
    atomic step, unless ``queue`` holds ``limit`` jobs or more, or the key ``record`` is set; what happened, and
    ``record``'s value when it was set."""
    args: list = [limit]
    for words, _ in commands.command_stack:
        args += [len(words), *words]
    keys = [queue.key, *([record] if record is not None else [])]
    outcome, *found = queue.connection.register_script(_RUN_IF_ROOM)(keys=keys, args=args)
    return Outcome(outcome.decode()), found[0] if found else None


def cancel_job(queue: Queue, job: Job, settings: QueueSettings) -> None:
    """Stop a queued or running job for good and drop its upload and results.

    The cancel flag outlives the job record, so the job reads ``canceled`` until it expires;
    a running job's worker sees the flag at the engine's next step.
    """
    connection = queue.connection
    connection.set(key_for(Kind.CANCEL, job.id), 1, ex=settings.failure_ttl)
    if status_from_rq(job.get_status(refresh=True)) is Status.QUEUED:
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
