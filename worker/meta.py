"""What a segment job's RQ ``meta`` holds, typed: the API writes it at submission, the worker adds to it.

RQ leaves ``job.meta`` a free-form dict on purpose; the keys this project relies on are this
model's fields, so a reader gets a typed value and a misspelt key fails here rather than reading
as absent.
"""
from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict
from rq.job import Job


class ErrorCode(str, Enum):
    """``error.code`` of a failed job."""

    INVALID_INPUT = "invalid_input"  # the engine refused the image or scribbles
    TIMEOUT = "timeout"  # ran longer than GDC_JOB_TIMEOUT
    WORKER_LOST = "worker_lost"  # its worker died or stopped mid-job, and no retries were left
    UPLOAD_EXPIRED = "upload_expired"  # waited in the queue longer than GDC_QUEUED_TTL
    STORE_UNREACHABLE = "store_unreachable"  # Redis failed mid-job, and no retries were left
    INTERNAL = "internal"  # anything else: a bug or the device (message says what)


class ReportedProgress(BaseModel):
    """The engine's last progress report: ``progress(phase, step, total)``."""

    phase: str
    step: int
    total: int


class RecordedError(BaseModel):
    """Why the job failed, or why it is being retried (an :class:`ErrorCode` value and a sentence)."""

    code: str
    message: str


class JobMeta(BaseModel):
    """A segment job's meta.

    Attributes:
      width, height: the image's size in pixels.
      classes: the scribbles' class values, sorted.
      colours: each class's #rrggbb for colour-PNG scribbles; None for label scribbles.
      callback_url: where the final job body is POSTed, if anywhere.
      previous: the job a refine starts from.
      warm: of a refine, whether it started from that job's warm start (None until a worker knows).
      progress: the worker's last progress report (None while queued).
      error: why it failed or is being retried.
    """

    model_config = ConfigDict(extra="ignore")  # RQ and its callers may keep keys of their own

    width: int
    height: int
    classes: list[int]
    colours: list[str] | None = None
    callback_url: str | None = None
    previous: str | None = None
    warm: bool | None = None
    progress: ReportedProgress | None = None
    error: RecordedError | None = None

    @classmethod
    def of(cls, job: Job) -> JobMeta:
        """The meta of ``job`` as it was last fetched or saved."""
        return cls.model_validate(job.meta)

    def as_dict(self) -> dict:
        """The JSON-ready dict RQ stores."""
        return self.model_dump(mode="json")


def save_progress(job: Job, phase: str, step: int, total: int) -> None:
    """Record the engine's progress in the job's meta and save it."""
    job.meta["progress"] = ReportedProgress(phase=phase, step=step, total=total).model_dump()
    job.save_meta()


def save_warm(job: Job, warm: bool) -> None:
    """Record whether a refine started from its previous job's warm start."""
    job.meta["warm"] = warm
    job.save_meta()


def save_start(job: Job) -> None:
    """Record that a worker started the job: progress from the beginning, no error (a retry starts clean)."""
    job.meta.update(progress=ReportedProgress(phase="starting", step=0, total=0).model_dump(), error=None)
    job.save_meta()


def save_error(job: Job, code: ErrorCode, message: str, *, requeued: bool = False) -> None:
    """Record why the job failed, or, ``requeued`` for a retry, why it was retried (its progress then starts over)."""
    job.meta["error"] = RecordedError(code=ErrorCode(code).value, message=message).model_dump()
    if requeued:
        job.meta["progress"] = None
    job.save_meta()
