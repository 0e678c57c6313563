"""Bodies the API reads and writes, and the engine-option limits requests are held to.

Limits come from :class:`gdc.options.SegmentOptions` (the engine's own bounds) narrowed
by the server's settings; nothing here repeats a number from either.
"""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from rq.job import Job

from gdc.options import HEAD_CONVS, SegmentOptions
from worker.jobs import ENDED, Status, public_status

from .settings import Settings

# The engine options a request may set; the worker decides the rest (device, weights, ...).
NUMERIC_OPTIONS = ("steps", "samples", "sigma", "superpixel_size", "edge_strength", "seed")
SWITCH_OPTIONS = ("edges",)
_SERVER_MAXIMA = {"steps": "max_steps", "samples": "max_samples"}


class ErrorBody(BaseModel):
    """Every error answer."""

    detail: str = Field(description="the problem in one sentence, e.g. `scribbles are 100x80 but the image is 120x90`")


# Errors several routers answer with, by status.
KEY_REFUSED = {401: "missing or invalid `X-API-Key` (the server has keys)"}
BAD_INPUT = {422: "bad input; `detail` names the problem"}
STORE_DOWN = {503: "the job store (Redis) is unreachable or full; nothing was stored, send it again later"}


def error_responses(*described: dict[int, str]) -> dict[int, dict]:
    """OpenAPI ``responses`` for error statuses, each answering an :class:`ErrorBody`."""
    return {status: {"model": ErrorBody, "description": text} for group in described for status, text in group.items()}


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


_EXAMPLE_ID = "Jk3v9cQ2sLw0bXr4T1uYpA"
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

    @classmethod
    def from_job(cls, job: Job) -> JobPublic:
        status = public_status(job)
        meta = job.meta
        reported = meta.get("progress") or {"phase": "queued", "step": 0, "total": 0}
        fraction = (
            1.0 if status is Status.SUCCEEDED else reported["step"] / reported["total"] if reported["total"] else 0.0
        )
        error = meta.get("error")
        if status is Status.FAILED and error is None:
            error = {"code": "internal", "message": "the job failed without a recorded reason"}
        return cls(
            id=job.id,
            status=status,
            links=Links.for_job(job.id),
            progress=Progress(**reported, fraction=fraction),
            position=job.get_position() if status is Status.QUEUED else None,
            created_at=job.created_at,
            started_at=job.started_at,
            ended_at=job.ended_at if status in ENDED else None,
            timings=(job.return_value() or {}).get("timings", {}) if status is Status.SUCCEEDED else {},
            error=None if status in (Status.SUCCEEDED, Status.CANCELED) else error,
            width=meta["width"],
            height=meta["height"],
            classes=meta["classes"],
        )


class FieldLimits(BaseModel):
    default: float | int | None
    minimum: float | int | None
    maximum: float | int | None = Field(description="null: no upper bound")


class ConvChoices(BaseModel):
    default: str
    choices: list[str]


class ServerOptions(BaseModel):
    """Defaults and limits of this server, for forms in front-ends."""

    fields: dict[str, FieldLimits]
    switches: dict[str, bool] = Field(description="on/off options and their defaults")
    conv: ConvChoices
    max_classes: int
    max_upload_bytes: int
    max_pixels: int
    auth_required: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerOptions:
        return cls(
            fields=option_limits(settings),
            switches={name: SegmentOptions.model_fields[name].default for name in SWITCH_OPTIONS},
            conv=ConvChoices(default=SegmentOptions.model_fields["conv"].default, choices=list(HEAD_CONVS)),
            max_classes=settings.max_classes,
            max_upload_bytes=settings.max_upload_bytes,
            max_pixels=settings.max_pixels,
            auth_required=bool(settings.api_keys),
        )


class Stroke(BaseModel):
    """One scribble stroke, drawn with round caps and joins."""

    label: int = Field(ge=1, le=255, description="class value, 1..255")
    points: list[tuple[float, float]] = Field(min_length=1, description="[x, y] pixel positions along the stroke")
    width: float = Field(gt=0, le=1000, description="stroke width in pixels")


# Drawing costs up to about 12 µs a point (1000 px wide), so this keeps one request near a second.
MAX_STROKE_POINTS = 100_000


def _bounded_points(strokes: list[Stroke]) -> list[Stroke]:
    points = sum(len(stroke.points) for stroke in strokes)
    if points > MAX_STROKE_POINTS:
        raise ValueError(f"the strokes have {points} points; at most {MAX_STROKE_POINTS} are accepted")
    return strokes


STROKES = TypeAdapter(Annotated[list[Stroke], AfterValidator(_bounded_points)])


def _bound(field, *names: str) -> Any:
    return next((getattr(rule, name) for rule in field.metadata for name in names if hasattr(rule, name)), None)


def option_limits(settings: Settings) -> dict[str, FieldLimits]:
    """Default, minimum and maximum of each numeric option: the engine's bounds, capped by the server's."""
    limits = {}
    for name in NUMERIC_OPTIONS:
        field = SegmentOptions.model_fields[name]
        maximum = _bound(field, "le", "lt")
        if name in _SERVER_MAXIMA:
            maximum = min(maximum, getattr(settings, _SERVER_MAXIMA[name]))
        default = field.default if maximum is None else min(field.default, maximum)
        limits[name] = FieldLimits(default=default, minimum=_bound(field, "ge", "gt"), maximum=maximum)
    return limits


def describe_errors(errors: list[dict]) -> str:
    """pydantic or FastAPI validation errors as one readable sentence per problem."""
    parts = []
    for error in errors:
        where = ".".join(str(part) for part in error["loc"] if part not in ("body", "query", "header", "form"))
        parts.append(f"{where}: {error['msg']}" if where else error["msg"])
    return "; ".join(parts)


def resolve_options(given: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The engine options of a request: values given, else the server's defaults, checked.

    Raises:
      ValueError: a value is out of the engine's or the server's range (message names it).
    """
    limits = option_limits(settings)
    values = {name: limit.default if given.get(name) is None else given[name] for name, limit in limits.items()}
    for name in SWITCH_OPTIONS:
        values[name] = SegmentOptions.model_fields[name].default if given.get(name) is None else given[name]
    values["conv"] = given.get("conv") or SegmentOptions.model_fields["conv"].default
    try:
        SegmentOptions(**values)
    except ValidationError as error:
        raise ValueError(describe_errors(error.errors())) from None
    for name, limit in limits.items():
        if limit.maximum is not None and values[name] > limit.maximum:
            raise ValueError(f"{name} must be at most {limit.maximum} on this server, got {values[name]}")
    return values
