"""Segmenting while an annotation tool waits: one ordinary gdc job, enqueued and awaited.

Label Studio's and CVAT's routes turn their tools' brush strokes into a label map and their
boxes and clicks into :mod:`gdc.prompts`' here, and get the label map back. The job goes
through :func:`service.submit.create_job` like any ``POST /segment``, so it meets the same
limits, queue and workers.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from fastapi.concurrency import run_in_threadpool
from rq import Queue

from gdc.errors import InputError
from gdc.imageio import encode_png, read_labels
from gdc.prompts import Box, Click
from worker import store
from worker.job import Status, fetch_job
from worker.meta import ErrorCode
from worker.queue import cancel_job

from .errors import ResultUnavailable, WaitTimedOut
from .settings import Settings
from .submit import create_job, wait_for_end


def box_around(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> Box:
    """The pixel box holding a tool's box of corners (x0, y0) and (x1, y1), in either order, clipped to the
    ``width`` x ``height`` image: a tool's box may reach a little past the image's edge."""
    left, right = sorted((x0, x1))
    top, bottom = sorted((y0, y1))
    return Box(
        max(0, math.floor(left)), max(0, math.floor(top)), min(width, math.ceil(right)), min(height, math.ceil(bottom))
    )


async def segment_and_wait(
    queue: Queue,
    settings: Settings,
    image: bytes,
    scribbles: np.ndarray | None = None,
    *,
    box: Box | None = None,
    clicks: Sequence[Click] = (),
    previous: str | None = None,
) -> tuple[str, np.ndarray]:
    """Run one gdc job on ``image`` (file bytes) and ``scribbles`` (H, W label map), a ``box`` or ``clicks``, any
    of them (:mod:`gdc.prompts`: the object is class 1); its id and label map.

    ``previous`` names an earlier job on the same image file, succeeded
    or with its mask stored, for the job to refine (``POST /segment``'s ``previous``); once that job's data is
    gone, the job runs cold.

    Returns as soon as the job's mask is stored, before its other results.

    Raises:
      InputError: gdc refused the input.
      WaitTimedOut: the job had no mask within ``settings.interactive_wait`` seconds (it is canceled then:
        nobody waits for it).
      ResultUnavailable: the job failed otherwise, was canceled, or its mask expired before it was read.
    """
    job_id = await run_in_threadpool(
        create_job,
        queue,
        settings,
        image=image,
        previous=previous,
        scribbles=None if scribbles is None else encode_png(scribbles),
        strokes=None,
        box=box,
        clicks=clicks,
        options={},
        callback_url=None,
        idempotency=None,
    )
    job = await wait_for_end(queue, job_id, settings.interactive_wait, or_mask=True)
    mask = None
    if job is not None and job.status in (Status.RUNNING, Status.SUCCEEDED):
        # The mask is stored before the job's other results: the tool has its labels while those still encode.
        mask = await run_in_threadpool(store.load_result, queue.connection, job_id, "mask")
    if mask is not None:
        return job_id, read_labels(mask)
    if job is None or job.status is Status.CANCELED:
        raise ResultUnavailable(f"gdc job {job_id} was canceled or expired before it ended")
    if job.status is not Status.SUCCEEDED and job.status is not Status.FAILED:
        if (running := fetch_job(queue, job_id)) is not None:
            await run_in_threadpool(cancel_job, queue, running, settings)
        raise WaitTimedOut(
            f"gdc job {job_id} did not end within {settings.interactive_wait:g} s (GDC_INTERACTIVE_WAIT); "
            "the workers are busy or too few"
        )
    if job.status is Status.FAILED:
        failure = f"gdc job {job_id} failed: {job.error.message if job.error else 'no reason given'}"
        if job.error is not None and job.error.code == ErrorCode.INVALID_INPUT.value:
            raise InputError(failure)
        raise ResultUnavailable(failure)
    raise ResultUnavailable(f"the result of gdc job {job_id} expired before it was read")
