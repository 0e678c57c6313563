"""The engine's thread policy applied to torch: :func:`gdc.engine.segment` runs under it.

A process chooses a count with :func:`set_threads` (the CLI's ``--threads``, ``gdc batch --local``'s
processes); ``segment`` runs on it, or on :data:`gdc.threads.DEFAULT_THREADS` where nothing was
chosen (a script or notebook), or on its own ``threads=``, and puts the caller's count back on
return. Apart from gdc/threads.py, which the torch-free API imports for the numbers.
"""
from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .threads import DEFAULT_THREADS

_chosen: int | None = None  # the count this process chose with set_threads


def set_threads(count: int) -> None:
    """Run torch on ``count`` CPU threads in this process, and have :func:`gdc.engine.segment` keep to it."""
    global _chosen
    torch.set_num_threads(count)
    _chosen = count


@contextmanager
def thread_policy(count: int | None = None) -> Iterator[int]:
    """Run the body on ``count`` torch threads (None: the process's :func:`set_threads` count, else
    ``DEFAULT_THREADS``), then put back the count the caller had; yields the count used.

    torch's count is per process: threads of one program that segment at once share it.
    """
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
