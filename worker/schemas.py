"""The public job body: what ``GET /jobs/{id}`` answers and what a job's callback carries.

Built from RQ's job and its meta alone, so the API and the workers describe a job alike.
"""
from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from rq.job import Job

from gdc.imageio import class_colours

from .job import ENDED, JobSnapshot, Status, snapshot
from .meta import JobMeta, RecordedError, ReportedProgress


class Progress(BaseModel):
    phase: str = Field(
        description='"queued" until a worker takes the job, "starting" while it reads the upload, '
        'then the engine\'s phases: "superpixels", "features", "optimise", "sample", "edges" (when on)'
    )
    step: int
    total: int
    fraction: float = Field(description="step / total within the phase; 1 once the job succeeded")


class JobError(BaseModel):
    code: str = Field(description="invalid_input, timeout, worker_lost, upload_expired, store_unreachable or internal")
    message: str


class Links(BaseModel):
    self: str
    mask: str
    overlay: str
    probabilities: str
    uncertainty: str

    @classmethod
    def for_job(cls, job_id: str) -> Links:
        base = f"/jobs/{job_id}"
        return cls(
            self=base, **{name: f"{base}/{name}" for name in ("mask", "overlay", "probabilities", "uncertainty")}
        )


_EXAMPLE_ID = "5396b2fb447464e0f720e879831a1cd0"
_EXAMPLE = {
    "id": _EXAMPLE_ID,
    "status": "running",
    "links": Links.for_job(_EXAMPLE_ID).model_dump(),
}


class JobCreated(BaseModel):
    """The answer to a submission that has not ended yet."""

    model_config = ConfigDict(json_schema_extra={"examples": [{**_EXAMPLE, "status": "queued"}]})

    id: str
    status: Status
    links: Links


class JobPublic(JobCreated):
    """Everything about a job."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_EXAMPLE,
                    "progress": {"phase": "optimise", "step": 20, "total": 50, "fraction": 0.4},
                    "position": None,
                    "created_at": "2025-01-01T12:00:00Z",
                    "started_at": "2025-01-01T12:00:01Z",
                    "ended_at": None,
                    "timings": {},
                    "error": None,
                    "width": 640,
                    "height": 480,
                    "classes": [1, 2, 3],
                    "colours": ["#e6194b", "#3cb44b", "#0082c8"],
                }
            ]
        }
    )

    progress: Progress
    position: int | None = Field(description="jobs ahead in the queue while queued, else null")
    created_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    timings: dict[str, float] = Field(description="seconds per phase once succeeded")
    error: JobError | None = Field(description="why it failed; while queued again, why it is being retried")
    width: int
    height: int
    classes: list[int] = Field(description="the scribbles' class values, as in the mask")
    previous: str | None = Field(None, description="the job this one refines, if any")
    warm: bool | None = Field(
        None,
        description="of a refine: true once it started from the previous job's superpixels, features and head; "
        "false when it ran from scratch (the previous job's data had expired); null for other jobs",
    )
    colours: list[str] = Field(
        description="each class's colour as #rrggbb, in `classes` order: for colour-PNG scribbles their own "
        "(class k is the k-th colour), else the overlay's; `/mask?format=colour` paints the mask in them"
    )

    @classmethod
    def from_job(cls, job: Job) -> JobPublic:
        return cls.from_snapshot(snapshot(job))

    @classmethod
    def from_snapshot(cls, seen: JobSnapshot) -> JobPublic:
        job, status = seen.job, seen.status
        meta = JobMeta.of(job)
        # RQ marks a job started a moment before the worker's first report: a taken job reads "starting".
        unreported = "starting" if status is Status.RUNNING else "queued"
        reported = meta.progress or ReportedProgress(phase=unreported, step=0, total=0)
        fraction = 1.0 if status is Status.SUCCEEDED else reported.step / reported.total if reported.total else 0.0
        error = meta.error
        if status is Status.FAILED and error is None:
            error = RecordedError(code="internal", message="the job failed without a recorded reason")
        return cls(
            id=job.id,
            status=status,
            links=Links.for_job(job.id),
            progress=Progress(**reported.model_dump(), fraction=fraction),
            position=seen.position,
            created_at=job.created_at,
            started_at=job.started_at,
            ended_at=job.ended_at if status in ENDED else None,
            timings=(job.return_value() or {}).get("timings", {}) if status is Status.SUCCEEDED else {},
            error=None if status in (Status.SUCCEEDED, Status.CANCELED) or error is None else error.model_dump(),
            width=meta.width,
            height=meta.height,
            classes=meta.classes,
            previous=meta.previous,
            warm=meta.warm,
            colours=class_colours(meta.classes, meta.colours),
        )
