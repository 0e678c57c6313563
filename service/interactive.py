"""Segmenting while an annotation tool waits: one ordinary gdc job, enqueued and awaited.

Label Studio's and CVAT's routes turn their tools' clicks and brush strokes into a label
map here and get the label map back. The job goes through :func:`service.submit.create_job` like any
``POST /segment``, so it meets the same limits, queue and workers.
"""
from __future__ import annotations

import numpy as np
from fastapi.concurrency import run_in_threadpool
from PIL import Image, ImageDraw
from rq import Queue

from gdc.errors import InputError
from gdc.imageio import encode_png, read_labels
from worker import store
from worker.job import Status, fetch_job
from worker.meta import ErrorCode
from worker.queue import cancel_job

from .errors import ResultUnavailable, WaitTimedOut
from .settings import Settings
from .submit import create_job, wait_for_end

# A clicked point becomes a disk this fraction of the image's shorter side across (at least 3 px).
POINT_DISK_FRACTION = 0.02


def point_radius(width: int, height: int) -> float:
    """The radius in pixels of the disk a clicked point stands for."""
    return max(1.5, POINT_DISK_FRACTION * min(width, height) / 2)


def draw_points(labels: np.ndarray, points: list[tuple[float, float]], value: int) -> None:
    """Paint a small disk of class ``value`` at each (x, y) of ``points`` into ``labels`` (H, W) uint8."""
    height, width = labels.shape
    radius = point_radius(width, height)
    canvas = Image.fromarray(labels)
    draw = ImageDraw.Draw(canvas)
    for x, y in points:
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=value)
    labels[...] = np.asarray(canvas)


async def segment_and_wait(
    queue: Queue,
    settings: Settings,
    image: bytes,
    scribbles: np.ndarray,
    *,
    previous: str | None = None,
) -> tuple[str, np.ndarray]:
    """Run one gdc job on ``image`` (file bytes) and ``scribbles`` (H, W label map); its id and label map.

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
        scribbles=encode_png(scribbles),
        strokes=None,
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
