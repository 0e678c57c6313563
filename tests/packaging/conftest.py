"""Fixtures of the packaging tests: the parsed Dockerfile and compose file, ./run's torch pin,
and the Docker stack test's figures, printed at the end of the run."""
from __future__ import annotations

import pytest

from tests.packaging.docker_files import DOCKERFILE, Dockerfile, read_compose, read_torch_pin

STACK_FIGURES: list[str] = []


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


def pytest_terminal_summary(terminalreporter) -> None:
    # Captured output is shown only for failures; CI's log should keep these figures either way.
    if STACK_FIGURES:
        terminalreporter.write_sep("-", "Docker stack")
        for line in STACK_FIGURES:
            terminalreporter.write_line(line)
