"""The sweep: settling jobs whose worker died, and putting back jobs a worker took but never started.

Work whose worker died is found from the heartbeats in RQ's StartedJobRegistry, then retried
with back-off or failed, with the reason recorded and the callback sent. Live workers sweep
every few seconds and the API on reads of running jobs, one sweep at a time per queue. A
worker known to be dead (``gdc serve`` saw its process exit) is settled at once
(:func:`abandon_workers`), without waiting for its heartbeat to lapse.
"""
from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable
from contextlib import suppress

from redis.exceptions import WatchError
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.utils import current_timestamp
from rq.worker import Worker

from . import store
from .job import Status, fetch_job, status_from_rq
from .keys import Kind, key_for
from .meta import ErrorCode, save_error
from .queue import notify
from .settings import QueueSettings

log = logging.getLogger(__name__)


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
            try:
                scheduled.requeue(job_id)
            except NoSuchJobError:  # expired while it waited: its entry would wake every pulse early
                scheduled.remove(job_id)
            except InvalidJobOperation:  # requeued by another sweep meanwhile
                pass
        _return_stranded(queue, settings)
    finally:
        connection.delete(lock)


def workers_of_process(queue: Queue, pid: int) -> list[Worker]:
    """The workers on ``queue`` that the process ``pid`` of this host registered (a fresh one after each Redis
    outage, each dropped as it ends, so normally one)."""
    host = socket.gethostname()
    return [worker for worker in Worker.all(queue=queue) if worker.pid == pid and worker.hostname == host]


def abandon_workers(queue: Queue, workers: Iterable[Worker], settings: QueueSettings) -> None:
    """Settle ``workers``, whose processes are known to have ended: they leave the lists that ``/readyz`` and
    ``/metrics`` count, and the jobs they ran are retried or failed now, as the sweep does once heartbeats lapse."""
    connection = queue.connection
    for worker in workers:
        with connection.pipeline() as pipeline:
            for execution in worker.get_current_executions(refresh=True):  # past its deadline: abandoned
                pipeline.zadd(queue.started_job_registry.key, {execution.composite_key: 0}, xx=True)
            pipeline.execute()
        worker.register_death()
    sweep(queue, settings)


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
    """Record why a job whose worker died failed or is retried; a failed one's data goes and its callback is sent."""
    status = job.get_status(refresh=True)
    if status == JobStatus.FAILED:
        save_error(job, ErrorCode.WORKER_LOST, "the worker running this job stopped and no retries were left")
        store.delete_job_data(queue.connection, job.id)
        notify(queue, job, settings)
    elif status_from_rq(status) is Status.QUEUED:
        save_error(
            job, ErrorCode.WORKER_LOST, f"the worker running this job stopped; retrying ({job.retries_left} left)",
            requeued=True,
        )
