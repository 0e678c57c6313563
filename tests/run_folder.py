"""What the processes of one test run share: a folder, and the figures printed at the end of the run.

``./run test`` runs the tests in two worker processes (pytest-xdist). Only the controller prints
the run's summary, and a worker's state dies with it, so what a test wants in the summary, or
what one process makes for tests in another (Label Studio), goes through a folder: made by the
first process of the run, named to the workers in the environment they inherit, and removed at
the end. Without workers (``-n 0``) the one process is the first.

Loaded as a plugin by tests/conftest.py.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

RUN_FOLDER = "GDC_TEST_RUN_FOLDER"
_MADE_HERE = pytest.StashKey[Path]()


def run_folder() -> Path:
    return Path(os.environ[RUN_FOLDER])


def is_worker(config: pytest.Config) -> bool:
    """Whether this process is one of pytest-xdist's workers (they collect and run; the controller reports)."""
    return hasattr(config, "workerinput")


class Figures:
    """Lines for the end of the run's output under ``title``, from any process: CI's log keeps them
    whether the tests pass or fail (captured output is shown for failures only)."""

    def __init__(self, title: str) -> None:
        self.path = run_folder() / "figures" / f"{title}.txt"

    def append(self, line: str) -> None:
        self.path.parent.mkdir(exist_ok=True)
        with self.path.open("a") as lines:  # one short write: lines from two processes do not interleave
            lines.write(line.rstrip("\n") + "\n")

    def extend(self, lines) -> None:
        for line in lines:
            self.append(line)


def pytest_configure(config: pytest.Config) -> None:
    if RUN_FOLDER not in os.environ:
        folder = Path(tempfile.mkdtemp(prefix="gdc-test-run-"))
        os.environ[RUN_FOLDER] = str(folder)  # before the workers start: they inherit it
        config.stash[_MADE_HERE] = folder


def pytest_terminal_summary(terminalreporter) -> None:
    for figures in sorted((run_folder() / "figures").glob("*.txt")):
        terminalreporter.write_sep("-", figures.stem)
        for line in figures.read_text().splitlines():
            terminalreporter.write_line(line)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _MADE_HERE in config.stash:
        shutil.rmtree(config.stash[_MADE_HERE], ignore_errors=True)
        del os.environ[RUN_FOLDER]
