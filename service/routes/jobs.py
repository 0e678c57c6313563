"""GET /jobs/{id} and its results; DELETE /jobs/{id}."""
from __future__ import annotations

import json
import zlib
from enum import Enum
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Query, Response
from fastapi.concurrency import run_in_threadpool
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from gdc.imageio import colour_table, encode_png, overlay, read_image, read_labels
from worker import store
from worker.job import ENDED, Status, delete_ended_job, public_status, read_snapshot, snapshot, wait_for
from worker.keys import Kind, key_for
from worker.meta import JobMeta
from worker.queue import cancel_job
from worker.schemas import JobPublic
from worker.sweep import sweep

from ..deps import JobDep, JobIdPath, QueueDep, RedisDep, SettingsDep, require_api_key, segment_job
from ..errors import JobNotFound, JobNotReady
from ..schemas import BAD_INPUT, KEY_REFUSED, STORE_DOWN, error_responses
from ..settings import Settings

router = APIRouter(
    prefix="/jobs",
    tags=["jobs"],
    dependencies=[Depends(require_api_key)],
    responses=error_responses(KEY_REFUSED, BAD_INPUT, STORE_DOWN),
)

_NOT_FOUND = error_responses({404: "unknown id, or the job or its results expired"})
_NOT_READY = error_responses({409: "the job has not succeeded (yet); `detail` gives its status"})
_PNG = {"content": {"image/png": {}}}
WaitQuery = Annotated[
    float | None,
    Query(gt=0, le=60, description="hold the answer up to this many seconds for the job to end (a long poll)"),
]


class MaskFormat(str, Enum):
    png = "png"
    colour = "colour"
    rle = "rle"
    polygons = "polygons"


def _mask(redis, job: Job) -> bytes:
    """The job's mask PNG, stored before its other results: JobNotReady before that, JobNotFound once expired."""
    return store.load_result(redis, job.id, "mask") or _result(redis, job, "mask")


def _result(redis, job: Job, field: str) -> bytes:
    """A stored result field of a succeeded job; JobNotReady before that, JobNotFound once expired."""
    status = public_status(job)
    if status is not Status.SUCCEEDED:
        raise JobNotReady(f"job {job.id} is {status.value}; results exist once it has succeeded")
    data = store.load_result(redis, job.id, field)
    if data is None:
        raise JobNotFound(f"the results of job {job.id} expired")
    return data


def _colours(job: Job) -> np.ndarray:
    """The job's class colours as a :func:`gdc.imageio.colour_table`."""
    meta = JobMeta.of(job)
    return colour_table(meta.classes, meta.colours)


def wait_until_ended(job: Job, seconds: float, *, or_mask: bool = False) -> None:
    """:func:`worker.job.wait_for`, raising JobNotFound when the job is deleted meanwhile."""
    try:
        wait_for(job, seconds, or_mask=or_mask)
    except (NoSuchJobError, InvalidJobOperation):
        raise JobNotFound(f"job {job.id} was deleted while the request waited") from None


def _server_timing(redis, job: Job) -> dict[str, str]:
    """The job's phase timings up to its mask as a Server-Timing header (milliseconds)."""
    timings = store.load_timings(redis, job.id)
    return {"Server-Timing": ", ".join(f"{phase};dur={seconds * 1000:.1f}" for phase, seconds in timings.items())}


def _png(data: bytes, job: Job, name: str, **headers: str) -> Response:
    disposition = {"Content-Disposition": f'inline; filename="{job.id}-{name}.png"'}
    return Response(data, media_type="image/png", headers=disposition | headers)


@router.get("/{job_id}", response_model=JobPublic, responses=_NOT_FOUND, summary="A job's status and progress")
async def read_job(job_id: JobIdPath, queue: QueueDep, settings: SettingsDep, wait: WaitQuery = None) -> JobPublic:
    # The whole read in one trip to the thread pool: clients poll this route most, and each trip costs about as
    # much as the read itself.
    return await run_in_threadpool(_describe, job_id, queue, settings, wait)


def _describe(job_id: str, queue: Queue, settings: Settings, wait: float | None) -> JobPublic:
    seen = read_snapshot(queue, job_id)  # one round trip for the common poll: no wait, not running
    job = segment_job(job_id, seen and seen.job)
    if wait:
        wait_until_ended(job, wait)
        seen = None  # the job has moved on
    if job.get_status(refresh=False) == JobStatus.STARTED:  # as read (or refreshed by the wait) just now
        sweep(queue, settings)  # the API notices a dead worker even when no worker is left to
        job.refresh()
        seen = None
    return JobPublic.from_snapshot(seen or snapshot(job))


@router.get(
    "/{job_id}/mask",
    responses={200: {"content": {"image/png": {}, "application/json": {}}}, **_NOT_FOUND, **_NOT_READY},
    summary="The label map",
)
def read_mask(
    job: JobDep,
    redis: RedisDep,
    format: Annotated[
        MaskFormat,
        Query(
            description=(
                "`png`: label PNG in the scribbles' class values. `colour`: RGB PNG, each class in its "
                "colour of the job's `colours` (colour scribbles: their own). `rle`: per class, COCO uncompressed RLE "
                '(`{"size": [h, w], "counts": [...]}`, column-major, zeros first). `polygons`: per class, '
                "closed rings of [x, y] points (pixel (x, y) spans [x, x+1] x [y, y+1]; holes included, fill even-odd)."
            )
        ),
    ] = MaskFormat.png,
    wait: WaitQuery = None,
) -> Response:
    """With `?wait=S` the answer waits up to S seconds for the mask, so a client gets it in the request that
    learns it is there. The mask is stored before the job's other results: it can come while the job still
    reads `running`, its probabilities and uncertainty being encoded (`polygons` waits for the job's end).
    `Server-Timing` gives the job's seconds per phase up to its mask (in ms)."""
    polygons = format is MaskFormat.polygons
    if wait:
        wait_until_ended(job, wait, or_mask=not polygons)
    timing = _server_timing(redis, job)
    if format is MaskFormat.png:
        return _png(_mask(redis, job), job, "mask", **timing)
    if format is MaskFormat.colour:
        return _png(encode_png(_colours(job)[read_labels(_mask(redis, job))]), job, "mask", **timing)
    if polygons:
        classes = json.loads(zlib.decompress(_result(redis, job, "polygons")))
    else:
        classes = store.mask_rle(read_labels(_mask(redis, job)), JobMeta.of(job).classes)
    meta = JobMeta.of(job)
    body = {"width": meta.width, "height": meta.height, "classes": classes}
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json", headers=timing)


@router.get("/{job_id}/overlay", responses={200: _PNG, **_NOT_FOUND, **_NOT_READY}, summary="The image tinted by class")
def read_overlay(job: JobDep, redis: RedisDep) -> Response:
    labels = read_labels(_mask(redis, job))
    image = store.load_image(redis, job.id)
    if image is None:
        raise JobNotFound(f"the image of job {job.id} expired")
    return _png(encode_png(overlay(read_image(image), labels, table=_colours(job))), job, "overlay")


@router.get(
    "/{job_id}/probabilities",
    responses={200: _PNG, **_NOT_FOUND, **_NOT_READY},
    summary="Per-class probabilities as one grey PNG",
)
def read_probabilities(job: JobDep, redis: RedisDep) -> Response:
    """A grey PNG K*H pixels tall: rows k*H to (k+1)*H-1 hold the probability of class
    `classes[k]` times 255 (uint8). `X-Classes` lists the classes in that order."""
    classes = ",".join(str(value) for value in JobMeta.of(job).classes)
    return _png(_result(redis, job, "probabilities"), job, "probabilities", **{"X-Classes": classes})


@router.get(
    "/{job_id}/uncertainty",
    responses={200: _PNG, **_NOT_FOUND, **_NOT_READY},
    summary="Per-pixel uncertainty as a grey PNG",
)
def read_uncertainty(job: JobDep, redis: RedisDep) -> Response:
    """Entropy of the mean prediction over log K, times 255: black is certain."""
    return _png(_result(redis, job, "uncertainty"), job, "uncertainty")


@router.delete("/{job_id}", response_model=JobPublic, responses=_NOT_FOUND, summary="Cancel or delete a job")
def delete_job(job: JobDep, queue: QueueDep, settings: SettingsDep) -> JobPublic:
    """Cancel a queued or running job, or delete an ended one; its upload and results go either way.

    Answers 200 with the job. A queued or running job answers `canceled` and stays
    readable as such for GDC_FAILURE_TTL (a running one stops at the engine's next step);
    an ended job is removed at once (later reads: 404) and the answer shows its last state.
    """
    if public_status(job) in ENDED:
        last = JobPublic.from_job(job)
        delete_ended_job(job)
        store.delete_job_data(queue.connection, job.id)
        queue.connection.delete(key_for(Kind.CANCEL, job.id))
        return last
    cancel_job(queue, job, settings)
    return JobPublic.from_job(job)
