"""A worker's pulse comes early when a retry's back-off or a running job's heartbeat deadline ends before the next
one, so the retry runs, or the abandoned job is settled, on time; and a dead worker is settled at once."""
from datetime import datetime, timedelta, timezone

import pytest
from redis import Redis
from rq import Retry
from rq.job import Job
from rq.worker import Worker

from worker.main import SOONEST_PULSE_SECONDS, SegmentWorker
from worker.queue import open_queue
from worker.sweep import abandon_workers, sweep


@pytest.fixture
def worker(make_settings) -> SegmentWorker:
    settings = make_settings(heartbeat_ttl=30)  # a pulse every 10 s
    return SegmentWorker([settings.queue], connection=Redis.from_url(settings.redis_url), settings=settings)


def seconds_from_now(seconds: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


def test_the_pulse_comes_when_a_retry_is_due_not_a_pulse_later(worker):
    queue = worker.queues[0]
    assert worker._until_next_pulse() == worker.pulse_every == 10
    job = queue.enqueue_call("worker.tasks.run_segment", kwargs={})
    queue.scheduled_job_registry.schedule(job, seconds_from_now(2))  # its back-off ends in 2 s
    assert 1 <= worker._until_next_pulse() <= 2
    queue.scheduled_job_registry.schedule(job, seconds_from_now(-5))  # overdue: as soon as the pulse may
    assert worker._until_next_pulse() == SOONEST_PULSE_SECONDS


def test_a_due_retry_whose_job_expired_is_dropped_so_it_wakes_no_pulse(worker, make_settings):
    queue = worker.queues[0]
    job = queue.enqueue_call("worker.tasks.run_segment", kwargs={})
    queue.scheduled_job_registry.schedule(job, seconds_from_now(-1))
    queue.connection.delete(job.key)  # the job's record expired while it waited
    sweep(queue, make_settings())
    assert queue.scheduled_job_registry.get_job_ids() == []
    assert worker._until_next_pulse() == worker.pulse_every


@pytest.mark.parametrize(("retries", "status"), [(1, "scheduled"), (0, "failed")])
def test_a_dead_workers_job_is_settled_and_the_worker_no_longer_counted(retries, status, make_settings):
    settings = make_settings(heartbeat_ttl=30)
    queue = open_queue(Redis.from_url(settings.redis_url), settings.queue)
    job = queue.enqueue_call("worker.tasks.run_segment", kwargs={}, retry=Retry(retries, [10]) if retries else None)
    dead = SegmentWorker([queue], connection=queue.connection, settings=settings)
    dead.register_birth()
    dead.prepare_execution(job)  # RQ's execution of the job, beating for 30 s more: as when its process was killed
    dead.prepare_job_execution(job)
    assert Worker.count(queue=queue) == 1
    abandon_workers(queue, Worker.all(queue=queue), settings)
    assert Worker.count(queue=queue) == 0
    assert Job.fetch(job.id, connection=queue.connection, serializer=queue.serializer).get_status() == status
    assert queue.started_job_registry.get_job_ids() == []  # at once: not when its heartbeat would have lapsed
