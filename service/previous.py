"""The ``previous`` field of POST /segment: the job a refine starts from.

A refine sends the complete current scribbles and the id of an earlier job on the same
image; the image itself may be left out. While the earlier job's data is kept, the new job
starts from its warm start (superpixels, features, trained head); once that has expired,
a refine that brought the image runs from scratch and says so (``warm: false``), one that
did not is refused with 410 naming the job.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rq import Queue

from gdc.errors import InputError
from worker import store
from worker.job import Status, fetch_job, public_status
from worker.meta import JobMeta
from worker.queue import SEGMENT_TASK

from .errors import JobNotReady, PreviousGone
from .uploads import read_image_upload


@dataclass(frozen=True)
class Previous:
    """The job a refine names, as far as the new job needs it.

    Attributes:
      job_id: its id.
      image: the image file to segment: the one sent, else the previous job's own.
      options: the previous job's engine options, which the refine keeps unless it sets them.
      kept: whether its warm start is still stored (False: the refine runs cold).
      size: (height, width) of ``image`` when it is the previous job's own, checked when that job was
        accepted; None when only decoding the image sent can tell.
    """

    job_id: str
    image: bytes
    options: dict
    kept: bool
    size: tuple[int, int] | None = None


def find_previous(queue: Queue, job_id: str, image: bytes | None, max_pixels: int) -> Previous:
    """The previous job of a refine; raises why when it cannot be used.

    A job whose mask is stored can be refined while it still stores its other results: its warm start
    went with the mask, and a person may paint the next stroke as soon as the mask is shown.

    Raises:
      JobNotReady: the previous job has no mask yet.
      PreviousGone: its data is gone and no image was sent.
      InputError: the image sent is not the previous job's.
    """
    job = fetch_job(queue, job_id)
    if job is not None and job.func_name != SEGMENT_TASK:  # callback deliveries share the queue
        job = None
    status = None if job is None else public_status(job)
    redis = queue.connection
    finishing = status is Status.RUNNING and store.has_mask(redis, job_id)
    if status is not None and status not in (Status.SUCCEEDED, Status.FAILED, Status.CANCELED) and not finishing:
        raise JobNotReady(f"previous job {job_id} is {status.value}; refine it once it has its mask")
    stored = store.load_image(redis, job_id) if status is Status.SUCCEEDED or finishing else None
    kept = stored is not None and store.has_warm_start(redis, job_id)
    if image is None and stored is None:
        raise PreviousGone(
            f"previous job {job_id} is unknown or its data expired; send the image too to segment from scratch"
        )
    if image is not None and stored is not None:
        check_same_image(image, stored, job_id, max_pixels)
    options = job.kwargs.get("options", {}) if job is not None else {}
    size = None
    if stored is not None and (image is None or image == stored):
        meta = JobMeta.of(job)
        size = (meta.height, meta.width)
    return Previous(job_id=job_id, image=image if image is not None else stored, options=options, kept=kept, size=size)


def check_same_image(image: bytes, stored: bytes, job_id: str, max_pixels: int) -> None:
    """Refuse an image that differs from the previous job's: the same file, or the same pixels in another file."""
    if image == stored:
        return
    sent, theirs = read_image_upload(image, max_pixels), read_image_upload(stored, max_pixels)
    if sent.shape != theirs.shape:
        raise InputError(
            f"image is {sent.shape[1]}x{sent.shape[0]} but previous job {job_id} segmented a "
            f"{theirs.shape[1]}x{theirs.shape[0]} image; send that image, or none"
        )
    if not np.array_equal(sent, theirs):
        raise InputError(
            f"image differs from the image of previous job {job_id} (same size, other pixels); "
            "send that image, or none"
        )
