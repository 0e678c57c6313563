"""Bodies the API reads and writes, and the engine-option limits requests are held to.

Limits come from :class:`gdc.options.SegmentOptions` (the engine's own bounds) narrowed
by the server's settings; nothing here repeats a number from either.
"""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, TypeAdapter, ValidationError

from gdc.options import HEAD_CONVS, SegmentOptions

from .settings import Settings

# The engine options a request may set; the worker decides the rest (device, weights, ...).
NUMERIC_OPTIONS = ("steps", "refine_steps", "refine_stop_loss", "samples", "sigma", "superpixel_size", "edge_strength", "seed")
SWITCH_OPTIONS = ("edges",)
_SERVER_MAXIMA = {"steps": "max_steps", "refine_steps": "max_steps", "samples": "max_samples"}


class ErrorBody(BaseModel):
    """Every error answer."""

    detail: str = Field(description="the problem in one sentence, e.g. `scribbles are 100x80 but the image is 120x90`")


# Errors several routers answer with, by status.
KEY_REFUSED = {401: "missing or invalid `X-API-Key` (the server has keys)"}
BAD_INPUT = {422: "bad input; `detail` names the problem"}
UNREADABLE_JSON = {400: "the body is not readable JSON"}
STORE_DOWN = {503: "the job store (Redis) is unreachable or full; nothing was stored, send it again later"}


def error_responses(*described: dict[int, str]) -> dict[int, dict]:
    """OpenAPI ``responses`` for error statuses, each answering an :class:`ErrorBody`."""
    return {status: {"model": ErrorBody, "description": text} for group in described for status, text in group.items()}


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
