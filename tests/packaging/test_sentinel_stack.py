"""The Sentinel variant of the Docker stack, started for real, and its primary killed with jobs in flight.

A Redis primary and replica (gdc-redis), three Sentinels, the API and a CPU worker, all on the
host's network with ports of their own (docker-compose.sentinel.yml over the host-network
overrides, docker-compose.sentinel-host.yml), as Compose project ``gdc-sentinel-test``. The
images are the ones tests/packaging/test_stack.py runs (the session's ``images`` fixture); it
skips where that one does.
"""
from __future__ import annotations

import subprocess
import time
import uuid

import pytest
from redis import Redis
from redis.exceptions import RedisError

from apps.launch import free_port
from benchmarks.tiny import tiny_image, tiny_scribbles
from gdc.client import ApiError, ServerUnreachable
from gdc.imageio import encode_png
from tests.conftest import wait_for
from tests.packaging.test_stack import MISSING, WORKERS, Stack, docker, follow, succeeded

pytestmark = pytest.mark.skipif(MISSING is not None, reason=str(MISSING))
SENTINEL_PORTS = ("SENTINEL_PORT_1", "SENTINEL_PORT_2", "SENTINEL_PORT_3")
HEALTH_CHECK = ("python", "/opt/gdc/healthcheck.py", "worker")  # docker/Dockerfile's HEALTHCHECK of the worker
JOB = {"steps": 2, "samples": 1, "superpixel_size": 60}  # tiny jobs: the failover is what is measured
SUBMIT_SECONDS = 120  # the failover takes ~6 s (down-after 5 s); a stack that never fails over fails here


class SentinelStack(Stack):
    """The stack with Redis primary, replica and three Sentinels, each on a loopback port of its own."""

    project = "gdc-sentinel-test"
    files = (*Stack.files, "docker-compose.sentinel.yml", "docker-compose.sentinel-host.yml")

    def __init__(self, figures: list[str]) -> None:
        super().__init__(figures)
        self.sentinel_ports = [free_port() for _ in SENTINEL_PORTS]
        self.env.update({"REPLICA_PORT": str(free_port()), **dict(zip(SENTINEL_PORTS, map(str, self.sentinel_ports)))})

    def primary_port(self) -> int:
        """The port of the server the first Sentinel names as primary."""
        with Redis("127.0.0.1", self.sentinel_ports[0], socket_timeout=2) as sentinel:
            return int(sentinel.sentinel_get_master_addr_by_name("gdc")[1])

    def role(self, port: int) -> str | None:
        """``master`` or ``slave``; None while the server does not answer."""
        try:
            with Redis("127.0.0.1", port, socket_timeout=2, decode_responses=True) as server:
                return server.info("replication")["role"]
        except RedisError:
            return None

    def sentinels_settled(self) -> bool:
        """Every Sentinel knows the replica and the two other Sentinels, which a failover needs: a Sentinel
        learns of the replica from the primary's INFO (every 10 s), so one that never asked it before the
        primary died finds no replica to promote ("-failover-abort-no-good-slave")."""
        for port in self.sentinel_ports:
            with Redis("127.0.0.1", port, socket_timeout=2) as sentinel:
                master = sentinel.sentinel_master("gdc")
            if master["num-slaves"] < 1 or master["num-other-sentinels"] < 2:
                return False
        return True

    def worker_healthy(self) -> bool:
        """The worker image's health check, run in the worker's container now: Redis lists the worker."""
        container = self.containers(WORKERS)[0]
        return subprocess.run(["docker", "exec", container, *HEALTH_CHECK], capture_output=True).returncode == 0

    def submit_tiny(self, seed: int) -> str:
        """Submit one tiny job, asking again while the API answers 503 (the primary is being replaced)."""
        image, scribbles = encode_png(tiny_image(seed)), encode_png(tiny_scribbles())
        key = uuid.uuid4().hex  # an answer lost in the failover must not make a second job
        deadline = time.monotonic() + SUBMIT_SECONDS
        while True:
            try:
                return self.client.submit(image, scribbles, idempotency_key=key, **JOB)
            except (ApiError, ServerUnreachable) as error:
                if time.monotonic() > deadline:
                    pytest.fail(f"no job accepted for {SUBMIT_SECONDS} s: {error}")
                time.sleep(0.3)


@pytest.fixture(scope="module")
def sentinel_stack(images, stack_figures) -> SentinelStack:
    stack = SentinelStack(stack_figures)
    stack.compose("down", "-v", "--remove-orphans")  # what an interrupted run left
    try:
        started = time.monotonic()
        # Not --wait: the worker's first health check comes 30 s after it started (the test runs it itself).
        stack.scale(1, wait=False)
        wait_for(lambda: stack.ready_workers() == 1, 180, "/readyz to count the worker")
        stack.figures.append(f"Sentinel stack (2 Redis, 3 Sentinels, API, 1 worker) ready in {time.monotonic() - started:.0f} s")
        yield stack
    finally:
        stack.compose("down", "-v", "--remove-orphans", "--timeout", "1")  # no graceful stop to wait for


def test_killing_the_primary_container_fails_over_and_loses_no_job(sentinel_stack):
    stack = sentinel_stack
    primary = stack.primary_port()
    assert primary == int(stack.env["REDIS_PORT"]) and stack.role(int(stack.env["REPLICA_PORT"])) == "slave"
    assert stack.worker_healthy()  # it finds the worker through the Sentinels
    wait_for(stack.sentinels_settled, 60, "every Sentinel to know the replica and the two others", every=1)
    before = [stack.submit_tiny(seed) for seed in range(6)]
    container = stack.containers("redis")[0]
    docker("update", "--restart=no", container)  # the host is gone: nothing brings the primary back
    docker("kill", container)
    killed = time.monotonic()
    after = [stack.submit_tiny(seed) for seed in range(6, 12)]  # each waits out the 503s
    accepted = time.monotonic() - killed
    statuses, _ = follow(stack, before + after, timeout=300)
    flowing = time.monotonic() - killed
    promoted = stack.primary_port()
    stack.report(
        "docker kill of the Redis primary (Sentinel stack)", statuses,
        jobs_after_the_kill_accepted_within=f"{accepted:.1f}s", all_ended_within=f"{flowing:.1f}s",
    )
    assert promoted == int(stack.env["REPLICA_PORT"])
    assert succeeded(statuses) == len(before) + len(after), statuses
    assert stack.worker_healthy()  # through the promoted replica now
    # The old primary's host comes back: the Sentinels make it a replica of the new one.
    docker("start", container)
    wait_for(lambda: stack.role(primary) == "slave", 60, "the old primary to rejoin as a replica")
