"""The jobs a worker runs: segment an upload, deliver a callback.

Module-level functions enqueued by dotted path (``worker.tasks.run_segment``), so only
workers import this module and, with it, torch.
"""
from __future__ import annotations

import threading
import time
from contextlib import suppress
from contextvars import ContextVar
from dataclasses import dataclass, field

import httpx
import numpy as np
from redis.exceptions import RedisError
from rq import get_current_job
from rq.job import Job
from rq.timeouts import JobTimeoutException

from gdc.engine import SegmentResult, segment_prompted
from gdc.errors import Cancelled, InputError
from gdc.imageio import encode_png, read_image, read_labels
from gdc.options import SegmentOptions
from gdc.prompts import Box, Click, clicks_from
from gdc.warm import WarmStart

from . import store
from .callbacks import check_callback_url, signature_headers
from .job import fetch_job, holds
from .keys import Kind, key_for
from .meta import ErrorCode, save_error, save_progress, save_start, save_warm
from .queue import open_queue
from .recent import RecentJob, RecentJobs
from .schemas import JobPublic
from .settings import QueueSettings


@dataclass
class WorkerContext:
    """What a task needs from the worker running it."""

    settings: QueueSettings
    stopping: threading.Event = field(default_factory=threading.Event)  # set on a warm shutdown
    execution_id: str | None = None  # RQ's execution of the running job: this worker's claim on it
    recent: RecentJobs = field(init=False)  # the jobs this worker ran last, for refines of them

    def __post_init__(self) -> None:
        self.recent = RecentJobs(self.settings.recent_megabytes * 2**20)

    def holds(self, job: Job, connection=None) -> bool:
        """Whether the running job is still this worker's (:func:`worker.job.holds`)."""
        return self.execution_id is None or holds(connection or job.connection, job, self.execution_id)


current_worker: ContextVar[WorkerContext] = ContextVar("current_worker")


class UploadExpired(LookupError):
    """The job's upload was gone when a worker picked the job up."""


class Superseded(RuntimeError):
    """The job was given to another worker while this one could not reach Redis; this run writes nothing more."""


class ProgressWriter:
    """The engine's progress hook: phase/step/total into ``job.meta``, at most every ``interval`` s.

    A new phase and a phase's last step are always written, so clients see every phase.
    Raises :class:`Superseded` (stopping the engine) instead once ``holds()`` is false.
    """

    def __init__(self, job: Job, interval: float, holds=lambda: True) -> None:
        self.job = job
        self.interval = interval
        self.holds = holds
        self.phase = None
        self.written = 0.0

    def __call__(self, phase: str, step: int, total: int) -> None:
        now = time.monotonic()
        if phase == self.phase and step < total and now - self.written < self.interval:
            return
        self.phase, self.written = phase, now
        if not self.holds():
            raise Superseded("another worker runs this job now")
        save_progress(self.job, phase, step, total)


def run_segment(
    upload: str, options: dict, previous: str | None = None, box: list[int] | None = None, points: list | None = None
) -> dict:
    """Segment the image and scribbles stored under ``upload``, with the job's ``box`` ([x0, y0, x1, y1]) and
    ``points`` ([[x, y, label], ...]) if any (:mod:`gdc.prompts`); store the result under the job id.

    A refine names the ``previous`` job: it starts from that job's warm start when it is
    still stored, else runs cold; ``job.meta["warm"]`` says which. Every job stores its
    own warm start beside its result, so chains of refines go on.

    Returns the phase timings (seconds). Failures are recorded in ``job.meta["error"]``;
    only a worker shutdown or a Redis failure leaves the job its retries (the same input
    would fail again).
    """
    run = SegmentRun(get_current_job(), current_worker.get(), upload)
    save_start(run.job)
    try:
        if run.stop_requested():
            raise Cancelled("stopped before it started")
        inputs = run.read_inputs(previous)
        result = run.run_engine(
            inputs, options, refine=previous is not None, box=None if box is None else Box(*box),
            clicks=clicks_from(points or []),
        )
        timings = run.store_mask(inputs, result)
        timings["details"] = run.store_details(result)
        return {"timings": timings}
    except Exception as error:
        run.record_failure(error)
        raise


@dataclass(frozen=True)
class SegmentInputs:
    """What a segment job reads before the engine runs.

    Attributes:
      image_file: the image file as uploaded.
      image: it decoded, (H, W, 3) uint8 RGB.
      scribbles: (H, W) uint8 labels, 0 unlabelled.
      warm_start: what a refine starts from; None for a new image, or once the previous job's expired.
      decode_seconds: decoding the image and scribbles took.
      previous_seconds: of a refine, loading the warm start took; None otherwise.
    """

    image_file: bytes
    image: np.ndarray
    scribbles: np.ndarray
    warm_start: WarmStart | None
    decode_seconds: float
    previous_seconds: float | None


class SegmentRun:
    """One run of a segment job on this worker; :func:`run_segment` calls its steps in order."""

    def __init__(self, job: Job, context: WorkerContext, upload: str) -> None:
        self.job = job
        self.context = context
        self.settings = context.settings
        self.upload = upload
        self.cancel_key = key_for(Kind.CANCEL, job.id)

    def stop_requested(self) -> bool:
        """The job was canceled, or this worker is shutting down."""
        return self.context.stopping.is_set() or bool(self.job.connection.exists(self.cancel_key))

    def read_inputs(self, previous: str | None) -> SegmentInputs:
        """The upload decoded, and the warm start of the ``previous`` job. Raises UploadExpired once it is gone.

        A refine of a job this worker ran starts from what it kept, and the image is the same file then.
        """
        redis, settings = self.job.connection, self.settings
        files = store.load_upload(redis, self.upload)
        if files is None:
            raise UploadExpired(f"the upload expired after {settings.queued_ttl} s in the queue; submit it again")
        redis.expire(self.upload, settings.job_timeout + settings.result_ttl)
        started = time.perf_counter()
        recent = self.context.recent.get(previous)
        image = recent.image if recent is not None and recent.image_file == files[0] else read_image(files[0])
        scribbles = read_labels(files[1])
        decoded = time.perf_counter()
        warm_start = recent.warm_start if recent is not None else _load_warm_start(redis, previous)
        previous_seconds = None if previous is None else time.perf_counter() - decoded
        return SegmentInputs(files[0], image, scribbles, warm_start, decoded - started, previous_seconds)

    def run_engine(
        self, inputs: SegmentInputs, options: dict, *, refine: bool, box: Box | None = None, clicks: list[Click] = ()
    ) -> SegmentResult:
        """Segment, writing progress and stopping at a cancel, a shutdown or once another worker holds the job."""
        settings = self.settings
        result = segment_prompted(
            inputs.image,
            inputs.scribbles,
            SegmentOptions(**options, device=settings.device),
            box=box,
            clicks=clicks,
            progress=ProgressWriter(self.job, settings.progress_interval, holds=lambda: self.context.holds(self.job)),
            cancel=self.stop_requested,
            previous=inputs.warm_start,
            threads=settings.worker_threads,
        )
        if refine:
            save_warm(self.job, result.warm)
        return result

    def store_mask(self, inputs: SegmentInputs, result: SegmentResult) -> dict[str, float]:
        """Store the mask, the timings so far and the warm start, and keep them in memory for a refine; the timings.

        The mask first, with what a refine of it needs: whoever waits on it (the page) has it now, while the
        other fields encode (35-50 ms on a photo here; on a 12 MP one 2.3-3.3 s, which bring the probabilities to
        full size first: gdc.engine.SegmentResult). The job succeeds after them.
        """
        encoding = time.perf_counter()
        mask = encode_png(result.labels)
        warm_bytes = result.warm_start.to_bytes()
        timings = {"decode": inputs.decode_seconds, **result.timings, "encode": time.perf_counter() - encoding}
        if inputs.previous_seconds is not None:
            timings["previous"] = inputs.previous_seconds
        job_id, ttl = self.job.id, self.settings.result_ttl

        def write(pipeline) -> None:
            store.save_mask(pipeline, job_id, mask, timings, ttl)
            store.save_warm_start(pipeline, job_id, warm_bytes, ttl)
            pipeline.expire(self.upload, ttl)  # the overlay is drawn from it

        self.store_unless_stopped(write)
        self.context.recent.keep(job_id, RecentJob(inputs.image_file, inputs.image, result.warm_start))
        return timings

    def store_details(self, result: SegmentResult) -> float:
        """Store the probabilities, uncertainty and polygons; the seconds encoding and storing them took."""
        started = time.perf_counter()
        fields = store.encode_details(result.labels, result.probabilities, result.uncertainty, result.classes)
        self.store_unless_stopped(
            lambda pipeline: store.save_result(pipeline, self.job.id, fields, self.settings.result_ttl)
        )
        return time.perf_counter() - started

    def store_unless_stopped(self, write) -> None:
        """Run ``write(pipeline)`` as one transaction, unless the job was canceled or is another worker's now."""
        job = self.job

        def guarded(pipeline) -> None:
            if pipeline.exists(self.cancel_key):
                raise Cancelled("canceled while storing the result")
            if not self.context.holds(job, pipeline):
                raise Superseded("another worker ran this job while this one could not reach Redis")
            pipeline.multi()
            write(pipeline)

        job.connection.transaction(guarded, self.cancel_key, job.started_job_registry.key)

    def record_failure(self, error: Exception) -> None:
        """Record why the job failed; one that is not retried loses its retries and its data."""
        if not _save_failure(self.job, error, self.context):
            self.job.retries_left = 0  # read by RQ when it handles this failure
            store.delete_job_data(self.job.connection, self.job.id)


def _load_warm_start(redis, previous: str | None) -> WarmStart | None:
    """The previous job's warm start; None without one, or once it expired or was deleted."""
    data = None if previous is None else store.load_warm_start(redis, previous)
    return None if data is None else WarmStart.from_bytes(data)


def _save_failure(job: Job, error: Exception, context: WorkerContext) -> bool:
    """Write the failure's code and message to the job; True when it should be retried."""
    if isinstance(error, Superseded):
        return True  # not ours to record: the newer run's results and status stand
    if isinstance(error, RedisError):
        with suppress(RedisError):  # it may well fail again; the retry does not depend on it
            save_error(job, ErrorCode.STORE_UNREACHABLE, f"Redis failed during the job ({error}); retrying")
        return True
    if isinstance(error, Cancelled):
        if context.stopping.is_set():
            save_error(job, ErrorCode.WORKER_LOST, "the worker was shut down during the job")
            return True
        return False  # canceled by request: the cancel flag is the status, no error
    if isinstance(error, UploadExpired):
        save_error(job, ErrorCode.UPLOAD_EXPIRED, str(error))
    elif isinstance(error, InputError):
        save_error(job, ErrorCode.INVALID_INPUT, str(error))
    elif isinstance(error, JobTimeoutException):
        save_error(job, ErrorCode.TIMEOUT, f"the job ran longer than its {job.timeout} s limit")
    else:
        save_error(job, ErrorCode.INTERNAL, f"{type(error).__name__}: {error}")
    return False


def send_callback(job_id: str, url: str) -> dict:
    """POST the final status of job ``job_id`` to ``url``, signed when a secret is set.

    Raises on a network error or a non-2xx answer, so RQ retries with back-off.
    """
    settings = current_worker.get().settings
    this = get_current_job()
    target = fetch_job(open_queue(this.connection, this.origin), job_id)
    if target is None:
        return {"delivered": False, "reason": "the job expired"}
    try:
        check_callback_url(url, settings.allow_private_callbacks)  # again: DNS may have changed
    except ValueError:
        this.retries_left = 0
        raise
    body = JobPublic.from_job(target).model_dump_json().encode()
    headers = {"Content-Type": "application/json"}
    if settings.callback_secret is not None:
        headers |= signature_headers(body, settings.callback_secret.get_secret_value())
    response = httpx.post(url, content=body, headers=headers, timeout=settings.callback_timeout)
    response.raise_for_status()
    return {"delivered": True, "status_code": response.status_code}
