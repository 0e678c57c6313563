"""Start gdc's processes from a script and wait until they are ready: ``gdc serve``, an API alone, workers.

The one place that knows what "ready" means from outside: ``/readyz`` answers 200 and counts
the workers wanted. Benchmarks and tests that drive a real service use it, as can any script::

    with running_service(workers=2) as url:
        Client(url).submit(...)
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress

import httpx

from service.serve import KEEP_ALIVE_SECONDS

START_SECONDS = 180  # a worker imports torch and loads the stem before /readyz counts it
STOP_SECONDS = 20  # a warm shutdown waits for the engine's next step


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def gdc_command(*words: str) -> list[str]:
    """The ``gdc`` command line ``words`` as this interpreter runs it (no installed script needed)."""
    return [sys.executable, "-m", "apps.cli", *words]


def answer(url: str) -> httpx.Response | None:
    """``GET url``'s answer; None while nothing answers there."""
    try:
        return httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None


def ready_workers(url: str) -> int | None:
    """The live workers the service at ``url`` counts in ``/readyz``; None while it does not answer 200."""
    ready = answer(f"{url}/readyz")
    return ready.json()["workers"] if ready is not None and ready.status_code == 200 else None


def wait_until(
    condition: Callable[[], object], timeout: float, what: str, *, processes: Iterable[subprocess.Popen] = (),
    every: float = 0.2, ignore: tuple[type[BaseException], ...] = (),
):
    """``condition()``'s first truthy answer, polled every ``every`` s; an exception of ``ignore`` counts as "not yet".

    Raises:
      RuntimeError: one of ``processes`` exited first (its command and code named), or ``timeout`` s passed.
    """
    deadline = time.monotonic() + timeout
    while True:
        with suppress(*ignore):
            if value := condition():
                return value
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{' '.join(map(str, process.args))} exited with {process.returncode} while "
                                   f"waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def wait_ready(url: str, *, workers: int = 1, processes: Iterable[subprocess.Popen] = (),
               timeout: float = START_SECONDS) -> None:
    """Return once the service at ``url`` is ready: its ``/readyz`` counts at least ``workers`` workers, or with
    ``workers=0`` (an API alone) its ``/healthz`` answers 200. Raises as :func:`wait_until`."""
    if workers:
        ready = lambda: (ready_workers(url) or 0) >= workers  # noqa: E731
        what = f"{url}/readyz to count {workers} worker(s)"
    else:
        ready = lambda: getattr(answer(f"{url}/healthz"), "status_code", None) == 200  # noqa: E731
        what = f"{url}/healthz to answer"
    wait_until(ready, timeout, what, processes=processes)


def stop(process: subprocess.Popen, timeout: float = STOP_SECONDS) -> None:
    """SIGTERM, as Docker or Ctrl-C would stop it; SIGKILL if it has not exited after ``timeout`` s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def process_env(**settings: object) -> dict[str, str]:
    """This process's environment without ``GDC_*`` and ``REDIS_URL``, plus ``settings`` as ``GDC_*`` variables."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GDC_") and key != "REDIS_URL"}
    return env | {f"GDC_{name.upper()}": str(value) for name, value in settings.items()}


def start_api(port: int, *, env: dict[str, str] | None = None, log_level: str = "info", processes: int = 1,
              **popen) -> subprocess.Popen:
    """The API alone (uvicorn serving ``service.app``) on the loopback's ``port``, on the Redis ``env`` names.

    ``processes`` > 1 runs that many API processes behind uvicorn's own supervisor (``--workers``), all on the one
    port; stopping the returned process stops them all.
    """
    command = [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app", "--host", "127.0.0.1",
               "--port", str(port), "--log-level", log_level, "--workers", str(processes),
               "--timeout-keep-alive", str(KEEP_ALIVE_SECONDS)]  # as gdc serve and the image
    return subprocess.Popen(command, env=env, **popen)


def start_serve(port: int, workers: int = 1, *, env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    """``gdc serve`` on ``port`` with ``workers`` workers and its own embedded Redis (``REDIS_URL`` is dropped)."""
    env = {key: value for key, value in (os.environ if env is None else env).items() if key != "REDIS_URL"}
    return subprocess.Popen(gdc_command("serve", "--port", str(port), "--workers", str(workers)), env=env, **popen)


@contextmanager
def running_service(workers: int = 1, *, env: dict[str, str] | None = None,
                    timeout: float = START_SECONDS) -> Iterator[str]:
    """``gdc serve`` with ``workers`` workers on a free port; yields its URL once they all listen, stops it after.

    Its output goes to a file, not a pipe (nobody reads uvicorn's access log, and a full pipe would
    stall it); a failed start raises RuntimeError with the output's end.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile("w+") as log:
        process = start_serve(port, workers, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            try:
                wait_ready(url, workers=workers, processes=[process], timeout=timeout)
            except RuntimeError as error:
                log.seek(0)
                raise RuntimeError(f"{error}; gdc serve said:\n{log.read()[-2000:]}") from None
            yield url
        finally:
            stop(process)
