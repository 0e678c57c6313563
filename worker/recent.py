"""What a worker keeps in memory of the jobs it just ran, so a refine of one skips Redis and the decoder.

A refine names its previous job; a person painting refines the job they just got back, and
with one worker (or a few) that job most often ran on the worker taking the refine. That
worker still has the previous job's decoded image and warm start, so the refine need not
fetch the warm start from Redis and unpack it, nor decode the image file again (on a
625x391 photo about 10 and 6 ms of a 0.3 s refine; at a 1 MP working size the warm start
is ~7 MB). Any other worker reads both from Redis as before.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from gdc.warm import WarmStart


@dataclass(frozen=True)
class RecentJob:
    """A finished job's image, as its file's bytes and decoded, and its warm start."""

    image_file: bytes
    image: np.ndarray
    warm_start: WarmStart

    @property
    def size(self) -> int:
        """Bytes held, roughly: the arrays' and the file's."""
        warm = self.warm_start
        arrays = [warm.features, *warm.head.values(), *warm.optimiser.values()]
        if warm.segments is not None:
            arrays.append(warm.segments)
        return len(self.image_file) + self.image.nbytes + sum(array.nbytes for array in arrays)


class RecentJobs:
    """The last jobs a worker ran, newest kept, oldest dropped past ``limit`` bytes (0 keeps none).

    The arrays are shared, never copied: the engine reads a warm start and an image without
    changing them.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._jobs: OrderedDict[str, RecentJob] = OrderedDict()
        self._held = 0

    def keep(self, job_id: str, job: RecentJob) -> None:
        """Hold ``job`` under ``job_id``, dropping the oldest jobs until all fit (one too large is not kept)."""
        if job.size > self.limit:
            return
        self._forget(job_id)
        self._jobs[job_id] = job
        self._held += job.size
        while self._held > self.limit:
            _, dropped = self._jobs.popitem(last=False)
            self._held -= dropped.size

    def get(self, job_id: str | None) -> RecentJob | None:
        """The job held under ``job_id``, or None."""
        job = self._jobs.get(job_id) if job_id is not None else None
        if job is not None:
            self._jobs.move_to_end(job_id)
        return job

    def _forget(self, job_id: str) -> None:
        """Drop the job held under ``job_id``, if any."""
        job = self._jobs.pop(job_id, None)
        if job is not None:
            self._held -= job.size
