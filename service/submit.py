"""Submitting a segmentation job: everything between a checked request and the queue.

Idempotency, a refine's merge with its previous job, checking the upload, and storing and enqueueing it
within the queue's bound, in one round trip to Redis. ``POST /segment`` and the annotation tools' routes (:mod:`service.interactive`)
call :func:`create_job`; none of this knows how the request arrived.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass

import numpy as np
from fastapi.concurrency import run_in_threadpool
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError

from gdc.errors import InputError
from gdc.imageio import encode_png
from gdc.inputs import scribble_classes
from gdc.prompts import Box, Click, check_prompts, prompted_classes
from worker.callbacks import check_callback_url
from worker.connection import replicate
from worker.job import fetch_job, new_job_id, wait_for
from worker.keys import Kind, key_for
from worker.meta import JobMeta
from worker.queue import Outcome, enqueue_segment, run_if_room
from worker.schemas import JobPublic

from .errors import IdempotencyConflict, QueueFull
from .previous import Previous, find_previous
from .schemas import resolve_options
from .settings import Settings
from .uploads import draw_strokes, image_size, read_scribbles_upload

log = logging.getLogger(__name__)


def create_job(
    queue: Queue,
    settings: Settings,
    *,
    image: bytes | None,
    previous: str | None = None,
    scribbles: bytes | None,
    strokes: str | None,
    box: Box | None = None,
    clicks: Sequence[Click] = (),
    options: dict,
    callback_url: str | None,
    idempotency: tuple[str, str] | None,
) -> str:
    """Check the request, store its upload and enqueue its job; the job id.

    The scribbles (``scribbles``, a PNG, or ``strokes``, JSON) may be left out when a ``box`` or ``clicks``
    (:mod:`gdc.prompts`) name the object; they are checked against the image's size here and travel with the
    job to the worker, which turns them into labels.

    ``idempotency`` is (Idempotency-Key, the caller's API key): the same pair with the
    same body gives the same job, without decoding or running anything again. ``previous``
    names the job a refine starts from (:mod:`service.previous`); ``image`` may be None then.
    The API decodes no image itself: it checks the image's header (:func:`service.uploads.image_size`) and the
    worker decodes it.
    """
    prompts = _prompt_arguments(box, clicks)
    claim = None
    if idempotency is not None:
        files = b"\0".join([image or b"", scribbles or b"", (strokes or "").encode()])
        claim = _IdempotencyClaim.of(*idempotency, files, [options, callback_url, previous, prompts])
        if (job_id := claim.job_of(queue.connection.get(claim.record))) is not None:
            return job_id
    refined, image, options = _with_previous(queue, settings, previous, image, options)
    resolved = _checked_request(options, callback_url, scribbles, strokes, settings, prompted=bool(prompts))
    height, width = _image_size(image, refined, settings.max_pixels)
    check_prompts(width, height, box, list(clicks))
    labels, colours, scribbles_png = _scribble_labels(scribbles, strokes, width, height, settings.max_classes)
    classes = _job_classes(labels, colours, box, clicks, settings.max_classes)
    meta = _job_meta(labels.shape, classes, colours, callback_url, refined)
    warm_from = refined.job_id if refined is not None and refined.kept else None
    job_id = _enqueue(
        queue, settings, claim, image=image, scribbles_png=scribbles_png, options=resolved, meta=meta,
        previous=warm_from, prompts=prompts,
    )
    if not replicate(queue.connection, settings, job_id):
        log.warning("job %s is on the Redis primary alone: no replica confirmed it in time", job_id)
    return job_id


@dataclass(frozen=True)
class _IdempotencyClaim:
    """Where an Idempotency-Key's job id is remembered, and the digest of the request it stands for."""

    key: str  # the Idempotency-Key as sent
    record: str  # the Redis key holding the job id and the digest
    digest: str

    @classmethod
    def of(cls, key: str, api_key: str, files: bytes, fields: list) -> _IdempotencyClaim:
        """The claim of ``key`` sent with ``api_key`` on a request of these ``files`` (their bytes, joined) and
        JSON ``fields``."""
        record = key_for(Kind.IDEMPOTENCY, hashlib.sha256(f"{api_key}\0{key}".encode()).hexdigest())
        body = hashlib.sha256(files)
        body.update(json.dumps(fields, sort_keys=True).encode())
        return cls(key=key, record=record, digest=body.hexdigest())

    def job_of(self, found: bytes | None) -> str | None:
        """The job id the key stands for, given the record ``found`` under it (None: none); raises
        IdempotencyConflict if it stood for another request."""
        if found is None:
            return None
        remembered = json.loads(found)
        if remembered["digest"] != self.digest:
            raise IdempotencyConflict(
                f"Idempotency-Key {self.key!r} was already used with a different request; use a new key"
            )
        return remembered["id"]

    def remember(self, pipeline, job_id: str, ttl: int) -> None:
        """Make the key stand for ``job_id`` for ``ttl`` seconds."""
        pipeline.set(self.record, json.dumps({"id": job_id, "digest": self.digest}), ex=ttl)


def _with_previous(
    queue: Queue, settings: Settings, previous: str | None, image: bytes | None, options: dict
) -> tuple[Previous | None, bytes, dict]:
    """The job a refine starts from (None for a new image), the image to segment, and the options: a refine's
    given ones over its previous job's."""
    if previous is None:
        if image is None:
            raise InputError("send the image as the file 'image', or name the job to refine as 'previous'")
        return None, image, options
    refined = find_previous(queue, previous, image, settings.max_pixels)
    # A refine goes on with the previous job's options, so its warm start fits, unless it sets them.
    given = {name: value for name, value in options.items() if value is not None}
    return refined, refined.image, {**refined.options, **given}


def _checked_request(
    options: dict,
    callback_url: str | None,
    scribbles: bytes | None,
    strokes: str | None,
    settings: Settings,
    *,
    prompted: bool,
) -> dict:
    """The engine options resolved against the server's; raises InputError for a bad option or callback URL, or
    for scribbles sent both ways, or neither without a box or points (``prompted``). Nothing is decoded yet."""
    try:
        resolved = resolve_options(options, settings)
        if callback_url:
            check_callback_url(callback_url, settings.allow_private_callbacks)
    except ValueError as error:
        raise InputError(str(error)) from None
    if scribbles is not None and strokes is not None:
        raise InputError("send the scribbles either as a label PNG file 'scribbles' or as 'strokes' JSON, not both")
    if scribbles is None and strokes is None and not prompted:
        raise InputError(
            "send the scribbles either as a label PNG file 'scribbles' or as 'strokes' JSON, or a 'box' or "
            "'points'; neither was given"
        )
    return resolved


def _image_size(image: bytes, refined: Previous | None, max_pixels: int) -> tuple[int, int]:
    """(height, width) of the image: of the previous job it belongs to (checked when that job was accepted), else
    read and checked from its header."""
    if refined is not None and refined.size is not None:
        return refined.size
    return image_size(image, max_pixels)


def _scribble_labels(
    scribbles: bytes | None, strokes: str | None, width: int, height: int, max_classes: int
) -> tuple[np.ndarray, list[str] | None, bytes]:
    """The scribbles as an (H, W) label map, each class's colour for colour-PNG scribbles, and the label PNG the
    worker reads (:func:`gdc.imageio.read_labels`): a label PNG as sent, which decodes to these labels, else the
    labels encoded; none sent (a box or points only), an empty label map."""
    if scribbles is None and strokes is None:
        labels = np.zeros((height, width), np.uint8)
        return labels, None, encode_png(labels)
    if strokes is not None:
        labels = draw_strokes(strokes, width, height, max_classes)
        return labels, None, encode_png(labels)
    labels, colours = read_scribbles_upload(scribbles, width, height, max_classes)
    return labels, colours, scribbles if colours is None else encode_png(labels)


def _prompt_arguments(box: Box | None, clicks: Sequence[Click]) -> dict:
    """The box and clicks as the job's JSON arguments (:func:`worker.tasks.run_segment`); empty without either."""
    if box is None and not clicks:
        return {}
    return {
        "box": None if box is None else [box.x0, box.y0, box.x1, box.y1],
        "points": [[click.x, click.y, int(click.positive)] for click in clicks],
    }


def _job_classes(
    labels: np.ndarray, colours: list[str] | None, box: Box | None, clicks: Sequence[Click], max_classes: int
) -> list[int]:
    """The job's class values, checked: the scribbles' and, with a box or clicks, the object and background they
    name (what the worker's :func:`gdc.prompts.prompt_labels` will find)."""
    if box is None and not clicks:
        return scribble_classes(labels, (*labels.shape, 3), max_classes).tolist()
    if colours is not None:
        raise InputError("beside a box or points, send label scribbles (1 the object, 2 its background), not colours")
    classes = prompted_classes(box, clicks, np.unique(labels[labels > 0]).tolist())
    if len(classes) > max_classes:
        raise InputError(f"the scribbles and prompts have {len(classes)} classes; at most {max_classes} are accepted")
    return classes


def _job_meta(
    shape: tuple[int, int],
    classes: list[int],
    colours: list[str] | None,
    callback_url: str | None,
    refined: Previous | None,
) -> JobMeta:
    """The new job's meta: of an image of ``shape`` (H, W) and these checked ``classes``."""
    height, width = shape
    meta = JobMeta(width=width, height=height, classes=classes, colours=colours, callback_url=callback_url)
    if refined is None:
        return meta
    # warm stays unknown until a worker tries the warm start; with the data already gone, it is cold.
    return meta.model_copy(update={"previous": refined.job_id, "warm": None if refined.kept else False})


def _enqueue(
    queue: Queue,
    settings: Settings,
    claim: _IdempotencyClaim | None,
    *,
    image: bytes,
    scribbles_png: bytes,
    options: dict,
    meta: JobMeta,
    previous: str | None,
    prompts: dict,
) -> str:
    """Store the upload and enqueue its job in one atomic step, if the queue has room; the job id, which is an
    earlier request's when one with the same Idempotency-Key got in meanwhile."""
    new_id = new_job_id()
    with queue.connection.pipeline() as commands:  # collects the writes, which run_if_room runs
        commands.multi()  # as RQ wants a pipeline it is given
        if claim is not None:
            claim.remember(commands, new_id, settings.result_ttl)
        enqueue_segment(
            commands, queue, settings, job_id=new_id, image=image, scribbles_png=scribbles_png, options=options,
            meta=meta, previous=previous, prompts=prompts,
        )
        outcome, found = run_if_room(queue, settings.max_queued, commands, claim.record if claim else None)
    if outcome is Outcome.TAKEN:
        return claim.job_of(found)
    if outcome is Outcome.FULL:
        limit = settings.max_queued
        raise QueueFull(f"the queue is full ({limit} jobs waiting, GDC_MAX_QUEUED); send it again later")
    return new_id


def describe_job(queue: Queue, job_id: str) -> JobPublic | None:
    """The job's public body; None once it is unknown."""
    job = fetch_job(queue, job_id)
    return None if job is None else JobPublic.from_job(job)


async def wait_for_end(queue: Queue, job_id: str, seconds: float, *, or_mask: bool = False) -> JobPublic | None:
    """The job once it ended (or, ``or_mask``, once its mask is stored), or as it is after ``seconds``; None once
    it is unknown. Woken by the job's end or mask (:func:`worker.job.wait_for`), not by polling."""
    job = await run_in_threadpool(fetch_job, queue, job_id)
    if job is not None:
        with suppress(NoSuchJobError, InvalidJobOperation):  # deleted meanwhile: described as unknown below
            await run_in_threadpool(wait_for, job, seconds, or_mask=or_mask)
    return await run_in_threadpool(describe_job, queue, job_id)
