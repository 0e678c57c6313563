"""POST /segment: check an image and its scribbles, store them, enqueue a job."""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Header, HTTPException, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from rq import Queue

from gdc.errors import InputError
from gdc.imageio import encode_png
from gdc.inputs import check_image, scribble_classes
from gdc.options import HeadConv, SegmentOptions
from worker.callbacks import check_callback_url
from worker.jobs import ENDED, JOB_ID_PATTERN, enqueue_segment, fetch_job, new_job_id, replicate
from worker.keys import Kind, key_for
from worker.schemas import JobCreated, JobPublic, Links

from ..deps import QueueDep, SettingsDep, require_api_key
from ..previous import find_previous
from ..schemas import (
    BAD_INPUT,
    KEY_REFUSED,
    MAX_STROKE_POINTS,
    STORE_DOWN,
    error_responses,
    resolve_options,
)
from ..settings import Settings
from ..uploads import draw_strokes, read_image_upload, read_scribbles_upload

log = logging.getLogger(__name__)
_ERRORS = error_responses(
    KEY_REFUSED,
    BAD_INPUT,
    STORE_DOWN,
    {
        400: "the body is not multipart form data",
        409: "the `previous` job has not ended yet",
        410: "the `previous` job is unknown or its data expired, and no image was sent",
        413: "the request or the image is larger than this server accepts",
        429: "more than GDC_MAX_QUEUED jobs are waiting; nothing was stored, send it again after `Retry-After` s",
    },
)
router = APIRouter(tags=["segment"], dependencies=[Depends(require_api_key)], responses=_ERRORS)

_HELP = SegmentOptions.model_fields
_STROKES_EXAMPLE = (
    '[{"label": 1, "points": [[10, 12], [60, 14]], "width": 6}, {"label": 2, "points": [[30, 80]], "width": 12}]'
)


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
    pixels = check_image(decoded if decoded is not None else read_image_upload(image, settings.max_pixels))
    height, width = pixels.shape[:2]
    labels, colours = (
        (draw_strokes(strokes, width, height), None)
        if strokes is not None
        else read_scribbles_upload(scribbles, width, height, settings.max_classes)
    )
    classes = scribble_classes(labels, pixels.shape, settings.max_classes).tolist()

    new_id = new_job_id()
    meta = {"width": width, "height": height, "classes": classes, "colours": colours, "callback_url": callback_url}
    if refined is not None:
        # warm stays unknown until a worker tries the warm start; with the data already gone, it is cold.
        meta |= {"previous": refined.job_id, "warm": None if refined.kept else False}

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


def _describe(queue: Queue, job_id: str) -> JobPublic | None:
    job = fetch_job(queue, job_id)
    return None if job is None else JobPublic.from_job(job)


async def wait_for_end(queue: Queue, job_id: str, seconds: float) -> JobPublic | None:
    """The job once it ended, or as it is after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        job = await run_in_threadpool(_describe, queue, job_id)
        left = deadline - time.monotonic()
        if job is None or job.status in ENDED or left <= 0:
            return job
        await asyncio.sleep(min(0.2, left))


@router.post(
    "/segment",
    status_code=202,
    response_model=JobCreated,
    summary="Segment an image from its scribbles",
    responses={200: {"model": JobPublic, "description": "with `?wait`: the job ended in time"}},
)
async def submit_segmentation(
    settings: SettingsDep,
    queue: QueueDep,
    image: Annotated[
        UploadFile | None,
        File(
            description="PNG, JPEG, WebP, TIFF or BMP (sniffed from the bytes); EXIF orientation applied; "
            "converted to 8-bit RGB; of an animated or multi-page image the first frame. "
            "Optional with `previous`; given, it must be that job's image"
        ),
    ] = None,
    previous: Annotated[
        str | None,
        Form(
            pattern=JOB_ID_PATTERN,
            description="refine this job: the id of an earlier job on the same image, sent with the complete "
            "current scribbles. The new job starts from its superpixels, features and trained head "
            "and trains until the strokes are fitted, at most `refine_steps` steps; it keeps the previous job's "
            "options unless given. "
            "Once that job's data expired, a request with the image runs from scratch (`warm: false`)",
        ),
    ] = None,
    scribbles: Annotated[
        UploadFile | None,
        File(
            description="PNG the image's size: a label PNG (0 unlabeled, 1..K classes) or a colour PNG "
            "(RGB/RGBA: black or transparent unlabeled, each colour a class; the job's `colours` says which)"
        ),
    ] = None,
    strokes: Annotated[
        str | None,
        Form(
            description="instead of `scribbles`: strokes JSON, drawn with round caps and joins "
            f"(at most {MAX_STROKE_POINTS} points in all)",
            examples=[_STROKES_EXAMPLE],
        ),
    ] = None,
    steps: Annotated[int | None, Form(description=_HELP["steps"].description)] = None,
    refine_steps: Annotated[int | None, Form(description=_HELP["refine_steps"].description)] = None,
    refine_stop_loss: Annotated[float | None, Form(description=_HELP["refine_stop_loss"].description)] = None,
    samples: Annotated[int | None, Form(description=_HELP["samples"].description)] = None,
    sigma: Annotated[float | None, Form(description=_HELP["sigma"].description)] = None,
    conv: Annotated[HeadConv | None, Form(description=_HELP["conv"].description)] = None,
    superpixel_size: Annotated[int | None, Form(description=_HELP["superpixel_size"].description)] = None,
    edges: Annotated[bool | None, Form(description=_HELP["edges"].description)] = None,
    edge_strength: Annotated[float | None, Form(description=_HELP["edge_strength"].description)] = None,
    seed: Annotated[int | None, Form(description=_HELP["seed"].description)] = None,
    callback_url: Annotated[
        str | None,
        Form(
            description=(
                "POSTed the final job body (as GET /jobs/{id}) when the job ends; retried with back-off. "
                "Signed when the server has a callback secret: `X-GDC-Timestamp: t` and "
                "`X-GDC-Signature: sha256=HMAC-SHA256(secret, t + '.' + raw body)` in hex."
            ),
            examples=["https://example.org/hooks/gdc"],
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None, Header(max_length=255, description="same key and body: the same job, run once")
    ] = None,
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
    wait: Annotated[
        float | None, Query(gt=0, le=60, description="hold the answer up to this many seconds for the job to end")
    ] = None,
) -> JSONResponse:
    """Store the image and scribbles and queue a job; answer 202 with its id and links.

    Engine options left out take the server's defaults (GET /options). With `?wait=S`
    the answer waits up to S seconds and, if the job ended, is 200 with the full job.
    """
    job_id = await run_in_threadpool(
        create_job,
        queue,
        settings,
        image=await image.read() if image is not None else None,
        previous=previous,
        scribbles=await scribbles.read() if scribbles is not None else None,
        strokes=strokes,
        options={
            "steps": steps,
            "refine_steps": refine_steps,
            "refine_stop_loss": refine_stop_loss,
            "samples": samples,
            "sigma": sigma,
            "conv": conv,
            "superpixel_size": superpixel_size,
            "edges": edges,
            "edge_strength": edge_strength,
            "seed": seed,
        },
        callback_url=callback_url,
        idempotency=(idempotency_key, x_api_key or "") if idempotency_key else None,
    )
    headers = {"Location": f"/jobs/{job_id}"}
    job = await (wait_for_end(queue, job_id, wait) if wait else run_in_threadpool(_describe, queue, job_id))
    if job is not None and wait and job.status in ENDED:
        return JSONResponse(job.model_dump(mode="json"), status_code=200, headers=headers)
    # A repeated Idempotency-Key may name a job that has moved on (or been deleted since).
    created = JobCreated(id=job_id, status=job.status if job else "queued", links=Links.for_job(job_id))
    return JSONResponse(created.model_dump(mode="json"), status_code=202, headers=headers)
