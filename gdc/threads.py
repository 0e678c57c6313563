"""How many CPU threads torch uses per process, and how its idle threads wait (issue 15).

Torch-free at import, so the API can size workers with it. The commands that load torch choose a
count with :func:`set_threads`; :func:`gdc.engine.segment` runs on that count, or on
``DEFAULT_THREADS`` in a process that chose none (a script or notebook calling the library), and
gives the caller's torch setting back when it returns (:func:`thread_policy`).

The head's operations are small (a 156 x 98 grid of 32 channels for a 625 x 391 photo), so
each one splits into a few microseconds of work per thread followed by a barrier. When
another program holds one of the cores, the thread that shares it arrives late at every
barrier, and OpenMP's default spin-waiting burns the core it waits on: on the 2-core machine a
busy core made two-thread runs 2.3x (up to 15-20x under heavier load) slower, against 1.1x
for one thread. So one thread per process is the default, and parallelism comes from more
processes (workers), each of which a busy core slows down by its own share only.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager

# One torch thread per process; see the module docstring for the measurements.
DEFAULT_THREADS = 1
_chosen: int | None = None  # the count this process chose with set_threads


def set_threads(count: int) -> None:
    """Run torch on ``count`` CPU threads in this process, and have :func:`gdc.engine.segment` keep to it."""
    import torch

    global _chosen
    torch.set_num_threads(count)
    _chosen = count


@contextmanager
def thread_policy(count: int | None = None) -> Iterator[int]:
    """Run the body on ``count`` torch threads (None: the process's :func:`set_threads` count, else
    ``DEFAULT_THREADS``), then put back the count the caller had; yields the count used.

    torch's count is per process: threads of one program that segment at once share it.
    """
    import torch

    count = count or _chosen or DEFAULT_THREADS
    before = torch.get_num_threads()
    if count != before:
        torch.set_num_threads(count)
    try:
        yield count
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def with_thread_policy(function):
    """Give ``function`` a keyword ``threads`` and run it under :func:`thread_policy` of it."""

    @functools.wraps(function)
    def run(*args, threads: int | None = None, **kwargs):
        with thread_policy(threads):
            return function(*args, **kwargs)

    return run


def passive_openmp() -> None:
    """Let idle OpenMP threads sleep rather than spin, unless the environment says otherwise.

    OpenMP reads ``OMP_WAIT_POLICY`` once, when torch loads it: call this before importing torch.
    It matters only with more than one thread.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0))
