"""A worker told to stop exits within seconds: its thread reading RQ's command channel gives up a read in a second,
and a stop that comes while it registers is kept."""
import os
import signal
import subprocess
import sys
import time

from redis import Redis
from rq.worker import Worker

from tests.conftest import REPO, process_env, wait_for
from worker.main import COMMAND_READ_SECONDS, SegmentWorker

STOP_SECONDS = 5


def test_the_command_thread_stops_within_one_read(make_settings):
    settings = make_settings()
    worker = SegmentWorker([settings.queue], connection=Redis.from_url(settings.redis_url), settings=settings)
    worker.subscribe()
    # The thread blocks in a read now, as it does after reading the reply to the UNSUBSCRIBE a stopping worker
    # sends, when that reply comes before the flag that stops it is cleared.
    time.sleep(0.2)
    started = time.monotonic()
    worker.pubsub_thread.stop(timeout=10)  # redis-py waits for the read to end
    assert time.monotonic() - started < COMMAND_READ_SECONDS + 1
    assert not worker.pubsub_thread.is_alive()


def test_a_sigterm_while_registering_stops_the_worker_cleanly(make_settings, monkeypatch):
    settings = make_settings()
    connection = Redis.from_url(settings.redis_url)
    worker = SegmentWorker([settings.queue], connection=connection, settings=settings)
    register_birth = worker.register_birth

    def registered_then_signalled():
        register_birth()
        os.kill(os.getpid(), signal.SIGTERM)  # before RQ's work loop installs its own handlers

    monkeypatch.setattr(worker, "register_birth", registered_then_signalled)
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker.work(burst=False)  # would block on the queue if the stop were lost
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert worker.shutting_down.is_set()
    assert Worker.count(connection=connection) == 0


def test_a_worker_process_exits_within_seconds_of_sigterm(redis_url):
    worker = subprocess.Popen([sys.executable, "-m", "worker"], env=process_env(redis_url=redis_url), cwd=REPO)
    try:
        with Redis.from_url(redis_url) as redis:
            wait_for(lambda: Worker.count(connection=redis) or worker.poll() is not None, 90, "the worker to register")
        assert worker.poll() is None
        worker.send_signal(signal.SIGTERM)
        started = time.monotonic()
        worker.wait(30)
        assert time.monotonic() - started < STOP_SECONDS
        assert worker.returncode == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
