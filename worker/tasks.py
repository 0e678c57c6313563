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
from redis.exceptions import RedisError
from rq import get_current_job
from rq.job import Job
from rq.timeouts import JobTimeoutException

from gdc.engine import segment
from gdc.errors import Cancelled, InputError
from gdc.imageio import encode_png, read_image, read_labels
from gdc.options import SegmentOptions
from gdc.warm import WarmStart

from . import store
from .callbacks import check_callback_url, signature_headers
from .jobs import fetch_job, holds, open_queue
from .keys import Kind, key_for
from .meta import ErrorCode, save_error, save_progress, save_start, save_warm
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
        """Whether the running job is still this worker's (:func:`worker.jobs.holds`)."""
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


def run_segment(upload: str, options: dict, previous: str | None = None) -> dict:
    """Segment the image and scribbles stored under ``upload``; store the result under the job id.

    A refine names the ``previous`` job: it starts from that job's warm start when it is
    still stored, else runs cold; ``job.meta["warm"]`` says which. Every job stores its
    own warm start beside its result, so chains of refines go on.

    Returns the phase timings (seconds). Failures are recorded in ``job.meta["error"]``;
    only a worker shutdown or a Redis failure leaves the job its retries (the same input
    would fail again).
    """
    job = get_current_job()
    context = current_worker.get()
    settings = context.settings
    redis = job.connection
    cancel_key = key_for(Kind.CANCEL, job.id)

    def stop_requested() -> bool:
        return context.stopping.is_set() or bool(redis.exists(cancel_key))

    save_start(job)
    try:
        if stop_requested():
            raise Cancelled("stopped before it started")
        files = store.load_upload(redis, upload)
        if files is None:
            raise UploadExpired(f"the upload expired after {settings.queued_ttl} s in the queue; submit it again")
        redis.expire(upload, settings.job_timeout + settings.result_ttl)
        started = time.perf_counter()
        # A refine of a job this worker ran starts from what it kept; the image is the same file then.
        recent = context.recent.get(previous)
        image = recent.image if recent is not None and recent.image_file == files[0] else read_image(files[0])
        scribbles = read_labels(files[1])
        decoded = time.perf_counter()
        warm_start = recent.warm_start if recent is not None else _load_warm_start(redis, previous)
        loaded = time.perf_counter()
        result = segment(
            image,
            scribbles,
            SegmentOptions(**options, device=settings.device),
            progress=ProgressWriter(job, settings.progress_interval, holds=lambda: context.holds(job)),
            cancel=stop_requested,
            previous=warm_start,
            threads=settings.worker_threads,
        )
        if previous is not None:
            save_warm(job, result.warm)
        encoding = time.perf_counter()
        mask = encode_png(result.labels)
        warm_bytes = result.warm_start.to_bytes()
        timings = {"decode": decoded - started, **result.timings, "encode": time.perf_counter() - encoding}
        if previous is not None:
            timings["previous"] = loaded - decoded

        # The mask first, with what a refine of it needs: whoever waits on it (the page) has it now, while the
        # other fields encode (35-50 ms on a photo here; on a 12 MP one 2.3-3.3 s, which bring the probabilities to
        # full size first: gdc.engine.SegmentResult). The job succeeds after them.
        def save_mask(pipeline) -> None:
            store.save_mask(pipeline, job.id, mask, timings, settings.result_ttl)
            store.save_warm_start(pipeline, job.id, warm_bytes, settings.result_ttl)
            pipeline.expire(upload, settings.result_ttl)  # the overlay is drawn from it

        _store_unless_stopped(job, context, cancel_key, save_mask)
        context.recent.keep(job.id, RecentJob(files[0], image, result.warm_start))
        details_started = time.perf_counter()
        fields = store.encode_details(result.labels, result.probabilities, result.uncertainty, result.classes)
        _store_unless_stopped(
            job, context, cancel_key, lambda pipeline: store.save_result(pipeline, job.id, fields, settings.result_ttl)
        )
        timings["details"] = time.perf_counter() - details_started
        return {"timings": timings}
    except Exception as error:
        if not _record_failure(job, error, context):
            job.retries_left = 0  # read by RQ when it handles this failure
            store.delete_job_data(redis, job.id)
        raise


def _store_unless_stopped(job: Job, context: WorkerContext, cancel_key: str, write) -> None:
    """Run ``write(pipeline)`` as one transaction, unless the job was canceled or is another worker's now."""

    def guarded(pipeline) -> None:
        if pipeline.exists(cancel_key):
            raise Cancelled("canceled while storing the result")
        if not context.holds(job, pipeline):
            raise Superseded("another worker ran this job while this one could not reach Redis")
        pipeline.multi()
        write(pipeline)

    job.connection.transaction(guarded, cancel_key, job.started_job_registry.key)


def _load_warm_start(redis, previous: str | None) -> WarmStart | None:
    """The previous job's warm start; None without one, or once it expired or was deleted."""
    data = None if previous is None else store.load_warm_start(redis, previous)
    return None if data is None else WarmStart.from_bytes(data)


def _record_failure(job: Job, error: Exception, context: WorkerContext) -> bool:
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
