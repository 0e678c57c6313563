"""Container health checks of the gdc images: ``healthcheck.py api`` or ``healthcheck.py worker``.

Exit status 0 healthy, 1 not (Docker's HEALTHCHECK contract), with the reason on stderr.

- ``api``: ``GET /healthz`` on the port uvicorn listens on (``UVICORN_PORT``) answers 200.
- ``worker``: Redis (``REDIS_URL``, or the primary of ``GDC_REDIS_SENTINELS``) lists a live RQ worker started in this container, i.e. from
  this hostname. RQ lets a worker's entry expire soon after its heartbeats stop (a minute or
  so), so a worker that lost Redis or hangs fails the check. The engine loads before the
  worker registers: the image's start period covers that.
"""
from __future__ import annotations

import os
import socket
import sys
import urllib.request

TIMEOUT_SECONDS = 5


def check_api() -> str | None:
    """Why the API in this container is unhealthy, or None."""
    url = f"http://127.0.0.1:{os.environ['UVICORN_PORT']}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            return None if response.status == 200 else f"{url} answered {response.status}"
    except OSError as error:  # URLError and HTTPError are OSErrors
        return f"{url}: {error}"


def check_worker() -> str | None:
    """Why the worker in this container is unhealthy, or None."""
    from redis.exceptions import RedisError
    from rq.worker import Worker

    from service.settings import Settings
    from worker.connection import connect

    settings = Settings()
    if not settings.redis_configured:
        return "neither REDIS_URL nor GDC_REDIS_SENTINELS is set"
    hostname = socket.gethostname()
    try:  # connect() is how the worker reaches Redis: a URL, or the primary the Sentinels name
        with connect(settings.model_copy(update={"redis_timeout": TIMEOUT_SECONDS})) as redis:
            workers = Worker.all(connection=redis)
    except RedisError as error:
        return f"Redis ({settings.redis_target}) is unreachable: {error}"
    if any(worker.hostname == hostname for worker in workers):
        return None
    return f"no live worker from host {hostname!r} is registered in Redis"


CHECKS = {"api": check_api, "worker": check_worker}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in CHECKS:
        print(f"usage: healthcheck.py {{{'|'.join(CHECKS)}}}", file=sys.stderr)
        return 1  # Docker reserves 2
    problem = CHECKS[argv[0]]()
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
