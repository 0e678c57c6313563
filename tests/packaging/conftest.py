"""Fixtures of the packaging tests: the parsed Dockerfile and compose file, ./run's torch pin,
the images the Docker stack tests run, and their figures, printed at the end of the run."""
from __future__ import annotations

import subprocess
import time

import pytest

from tests.conftest import REPO
from tests.packaging.docker_files import DOCKERFILE, Dockerfile, read_compose, read_torch_pin

STACK_FIGURES: list[str] = []
IMAGES = {"api": "gdc-api", "worker": "gdc-worker-cpu", "redis": "gdc-redis"}


@pytest.fixture(scope="session")
def dockerfile() -> Dockerfile:
    return Dockerfile(DOCKERFILE)


@pytest.fixture(scope="session")
def compose() -> dict:
    return read_compose()


@pytest.fixture(scope="session")
def torch_pin() -> str:
    return read_torch_pin()


@pytest.fixture(scope="session")
def stack_figures() -> list[str]:
    """Lines for the summary: build times, image sizes, jobs submitted, succeeded and lost."""
    return STACK_FIGURES


@pytest.fixture(scope="session")
def images(stack_figures) -> dict[str, str]:
    """The images docker/build-offline.sh builds, built once for every stack test (Docker's cache
    makes it quick when nothing changed); the tests that use it skip first where Docker is missing."""
    started = time.monotonic()
    built = subprocess.run([str(REPO / "docker" / "build-offline.sh")], capture_output=True, text=True, timeout=3000)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-5000:]
    stack_figures.extend(line for line in built.stderr.splitlines() if line.startswith("build-offline:"))
    stack_figures.append(f"images ready in {time.monotonic() - started:.0f} s")
    return IMAGES


def pytest_terminal_summary(terminalreporter) -> None:
    # Captured output is shown only for failures; CI's log should keep these figures either way.
    if STACK_FIGURES:
        terminalreporter.write_sep("-", "Docker stack")
        for line in STACK_FIGURES:
            terminalreporter.write_line(line)
