"""Submitting a segmentation job: everything between a checked request and the queue.

Idempotency, the queue's bound, a refine's merge with its previous job, decoding and checking the
upload, and enqueueing. ``POST /segment`` and the annotation tools' routes (:mod:`service.interactive`)
call :func:`create_job`; none of this knows how the request arrived.
"""
from __future__ import annotations

import hashlib
import json
import logging
from contextlib import suppress

import numpy as np
from fastapi import HTTPException
from fastapi.concurrency import run_in_threadpool
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError

from gdc.errors import InputError
from gdc.imageio import encode_png
from gdc.inputs import check_image, scribble_classes
from worker.callbacks import check_callback_url
from worker.jobs import enqueue_segment, fetch_job, new_job_id, replicate, wait_for
from worker.keys import Kind, key_for
from worker.meta import JobMeta
from worker.schemas import JobPublic

from .previous import find_previous
from .schemas import resolve_options
from .settings import Settings
from .uploads import draw_strokes, read_image_upload, read_scribbles_upload

log = logging.getLogger(__name__)


# Seconds a refused client waits before sending again: long enough for workers to take a few jobs.
QUEUE_FULL_RETRY_AFTER = 2


class QueueFull(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(
            429,
            f"the queue is full ({limit} jobs waiting, GDC_MAX_QUEUED); send it again later",
            headers={"Retry-After": str(QUEUE_FULL_RETRY_AFTER)},
        )


def _refuse_when_full(redis, queue: Queue, limit: int) -> None:
    if redis.llen(queue.key) >= limit:
        raise QueueFull(limit)


class IdempotencyConflict(HTTPException):
    def __init__(self, key: str) -> None:
        super().__init__(422, f"Idempotency-Key {key!r} was already used with a different request; use a new key")


def _remembered(redis, record: str, digest: str, key: str) -> str | None:
    """The job id an Idempotency-Key already stands for, if any; raises if it stood for another request."""
    found = redis.get(record)
    if found is None:
        return None
    remembered = json.loads(found)
    if remembered["digest"] != digest:
        raise IdempotencyConflict(key)
    return remembered["id"]


def create_job(
    queue: Queue,
    settings: Settings,
    *,
    image: bytes | None,
    decoded: np.ndarray | None = None,
    previous: str | None = None,
    scribbles: bytes | None,
    strokes: str | None,
    options: dict,
    callback_url: str | None,
    idempotency: tuple[str, str] | None,
) -> str:
    """Check the request, store its upload and enqueue its job; the job id.

    ``idempotency`` is (Idempotency-Key, the caller's API key): the same pair with the
    same body gives the same job, without decoding or running anything again. ``previous``
    names the job a refine starts from (:mod:`service.previous`); ``image`` may be None then.
    ``decoded`` is ``image`` as :func:`read_image_upload` gives it, when the caller has decoded
    it already (to draw scribbles at its size), so it is not decoded twice.
    """
    redis = queue.connection
    record = digest = None
    if idempotency is not None:
        key, api_key = idempotency
        record = key_for(Kind.IDEMPOTENCY, hashlib.sha256(f"{api_key}\0{key}".encode()).hexdigest())
        body = hashlib.sha256((image or b"") + b"\0" + (scribbles or b"") + b"\0" + (strokes or "").encode())
        body.update(json.dumps([options, callback_url, previous], sort_keys=True).encode())
        digest = body.hexdigest()
        if (job_id := _remembered(redis, record, digest, key)) is not None:
            return job_id
    _refuse_when_full(redis, queue, settings.max_queued)  # before decoding anything

    refined = None
    if previous is not None:
        refined = find_previous(queue, previous, image, settings.max_pixels)
        image = refined.image
        # A refine goes on with the previous job's options, so its warm start fits, unless it sets them.
        options = {**refined.options, **{name: value for name, value in options.items() if value is not None}}
    elif image is None:
        raise InputError("send the image as the file 'image', or name the job to refine as 'previous'")
    try:
        resolved = resolve_options(options, settings)
        if callback_url:
            check_callback_url(callback_url, settings.allow_private_callbacks)
    except ValueError as error:
        raise InputError(str(error)) from None
    if (scribbles is None) == (strokes is None):
        raise InputError(
            "send the scribbles either as a label PNG file 'scribbles' or as 'strokes' JSON"
            + (", not both" if strokes is not None else "; neither was given")
        )
    if decoded is None and refined is not None and refined.size is not None:
        height, width = refined.size  # the previous job's image, checked then: a refine need not decode it again
    else:
        pixels = decoded if decoded is not None else read_image_upload(image, settings.max_pixels)
        height, width = check_image(pixels).shape[:2]
    labels, colours = (
        (draw_strokes(strokes, width, height), None)
        if strokes is not None
        else read_scribbles_upload(scribbles, width, height, settings.max_classes)
    )
    classes = scribble_classes(labels, (height, width, 3), settings.max_classes).tolist()

    new_id = new_job_id()
    meta = JobMeta(width=width, height=height, classes=classes, colours=colours, callback_url=callback_url)
    if refined is not None:
        # warm stays unknown until a worker tries the warm start; with the data already gone, it is cold.
        meta = meta.model_copy(update={"previous": refined.job_id, "warm": None if refined.kept else False})

    def enqueue(pipeline) -> str:
        if record is not None:
            if (job_id := _remembered(pipeline, record, digest, key)) is not None:
                return job_id
        _refuse_when_full(pipeline, queue, settings.max_queued)  # again under WATCH: never past the limit
        pipeline.multi()
        if record is not None:
            pipeline.set(record, json.dumps({"id": new_id, "digest": digest}), ex=settings.result_ttl)
        enqueue_segment(
            pipeline,
            queue,
            settings,
            job_id=new_id,
            image=image,
            scribbles_png=encode_png(labels),
            options=resolved,
            meta=meta,
            previous=refined.job_id if refined is not None and refined.kept else None,
        )
        return new_id

    job_id = redis.transaction(enqueue, queue.key, *([record] if record else []), value_from_callable=True)
    if not replicate(redis, settings, job_id):
        log.warning("job %s is on the Redis primary alone: no replica confirmed it in time", job_id)
    return job_id


def describe_job(queue: Queue, job_id: str) -> JobPublic | None:
    """The job's public body; None once it is unknown."""
    job = fetch_job(queue, job_id)
    return None if job is None else JobPublic.from_job(job)


async def wait_for_end(queue: Queue, job_id: str, seconds: float, *, or_mask: bool = False) -> JobPublic | None:
    """The job once it ended (or, ``or_mask``, once its mask is stored), or as it is after ``seconds``; None once
    it is unknown. Woken by the job's end or mask (:func:`worker.jobs.wait_for`), not by polling."""
    job = await run_in_threadpool(fetch_job, queue, job_id)
    if job is not None:
        with suppress(NoSuchJobError, InvalidJobOperation):  # deleted meanwhile: described as unknown below
            await run_in_threadpool(wait_for, job, seconds, or_mask=or_mask)
    return await run_in_threadpool(describe_job, queue, job_id)
