"""How many CPU threads torch uses per process, and how its idle threads wait (issue 15).

Torch-free, so the API can size workers with it. The commands that load torch choose a count
with :func:`gdc.torch_threads.set_threads`; :func:`gdc.engine.segment` runs on that count, or on
``DEFAULT_THREADS`` in a process that chose none (a script or notebook calling the library), and
gives the caller's torch setting back when it returns.

The head's operations are small (a 156 x 98 grid of 32 channels for a 625 x 391 photo), so
each one splits into a few microseconds of work per thread followed by a barrier. When
another program holds one of the cores, the thread that shares it arrives late at every
barrier, and OpenMP's default spin-waiting burns the core it waits on: on the 2-core machine a
busy core made two-thread runs 2.3x (up to 15-20x under heavier load) slower, against 1.1x
for one thread. So one thread per process is the default, and parallelism comes from more
processes (workers), each of which a busy core slows down by its own share only.
"""
from __future__ import annotations

import os

# One torch thread per process; see the module docstring for the measurements.
DEFAULT_THREADS = 1
def passive_openmp() -> None:
    """Let idle OpenMP threads sleep rather than spin, unless the environment says otherwise.

    OpenMP reads ``OMP_WAIT_POLICY`` once, when torch loads it: call this before importing torch.
    It matters only with more than one thread.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0))
