"""POST /segment: the form read and checked against the engine's options, then :func:`service.submit.create_job`."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Header, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from worker.job import ENDED
from worker.schemas import JobCreated, JobPublic, Links

from ..deps import QueueDep, SettingsDep, require_api_key
from ..schemas import BAD_INPUT, KEY_REFUSED, STORE_DOWN, error_responses, segment_form
from ..submit import create_job, describe_job, wait_for_end

_ERRORS = error_responses(
    KEY_REFUSED,
    BAD_INPUT,
    STORE_DOWN,
    {
        400: "the body is not multipart form data",
        409: "the `previous` job has no mask yet",
        410: "the `previous` job is unknown or its data expired, and no image was sent",
        413: "the request or the image is larger than this server accepts",
        429: "more than GDC_MAX_QUEUED jobs are waiting; nothing was stored, send it again after `Retry-After` s",
    },
)
router = APIRouter(tags=["segment"], dependencies=[Depends(require_api_key)], responses=_ERRORS)

# The form: the files, `previous`, `strokes`, `box`, `points`, `callback_url` and every engine option a request
# may set.
SegmentForm = segment_form()


@router.post(
    "/segment",
    status_code=202,
    response_model=JobCreated,
    summary="Segment an image from its scribbles, a box or clicks",
    responses={200: {"model": JobPublic, "description": "with `?wait`: the job ended in time"}},
)
async def submit_segmentation(
    settings: SettingsDep,
    queue: QueueDep,
    form: Annotated[SegmentForm, Form()],
    idempotency_key: Annotated[
        str | None, Header(max_length=255, description="same key and body: the same job, run once")
    ] = None,
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
    wait: Annotated[
        float | None, Query(gt=0, le=60, description="hold the answer up to this many seconds for the job to end")
    ] = None,
) -> JSONResponse:
    """Store the image and scribbles and queue a job; answer 202 with its id and links.

    A `box` or `points` (clicks) name one object, as class 1 and its background class 2, with or without scribbles.

    Engine options left out take the server's defaults (GET /options); an unknown field is refused.
    With `?wait=S` the answer waits up to S seconds and, if the job ended, is 200 with the full job.
    """
    box, clicks = form.prompts()
    job_id = await run_in_threadpool(
        create_job,
        queue,
        settings,
        image=await form.image.read() if form.image is not None else None,
        previous=form.previous,
        scribbles=await form.scribbles.read() if form.scribbles is not None else None,
        strokes=form.strokes,
        box=box,
        clicks=clicks,
        options=form.options(),
        callback_url=form.callback_url,
        idempotency=(idempotency_key, x_api_key or "") if idempotency_key else None,
    )
    headers = {"Location": f"/jobs/{job_id}"}
    job = None
    if wait:
        job = await wait_for_end(queue, job_id, wait)
    elif idempotency_key:  # a repeated key may name a job that has moved on (or been deleted since)
        job = await run_in_threadpool(describe_job, queue, job_id)
    if job is not None and wait and job.status in ENDED:
        return JSONResponse(job.model_dump(mode="json"), status_code=200, headers=headers)
    # A job this request made is answered as it was enqueued, queued (a worker may have taken it since).
    created = JobCreated(id=job_id, status=job.status if job else "queued", links=Links.for_job(job_id))
    return JSONResponse(created.model_dump(mode="json"), status_code=202, headers=headers)
