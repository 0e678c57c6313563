"""Fixtures of the packaging tests: the parsed Dockerfile and compose file, ./run's torch pin."""
from __future__ import annotations

import pytest

from tests.packaging.docker_files import DOCKERFILE, Dockerfile, read_compose, read_torch_pin


@pytest.fixture(scope="session")
def dockerfile() -> Dockerfile:
    return Dockerfile(DOCKERFILE)


@pytest.fixture(scope="session")
def compose() -> dict:
    return read_compose()


@pytest.fixture(scope="session")
def torch_pin() -> str:
    return read_torch_pin()
