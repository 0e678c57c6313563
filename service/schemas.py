"""Bodies the API reads and writes, and the engine-option limits requests are held to.

Limits come from :class:`gdc.options.SegmentOptions` (the engine's own bounds) narrowed
by the server's settings; nothing here repeats a number from either.
"""
from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin

from fastapi import UploadFile
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from starlette.datastructures import UploadFile as ReceivedFile

from gdc.options import RefusesUnknown, SegmentOptions, refine_pairs, request_options, unknown_names
from gdc.prompts import Box, Click, parse_box, parse_clicks
from worker.job import JOB_ID_PATTERN

from .settings import Settings

# The server's own caps on engine options (settings), by plain option; a refine option has its pair's (refine_pairs).
SERVER_MAXIMA = {"steps": "max_steps", "samples": "max_samples"}


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
    integer: bool = Field(description="whole numbers only")


class Choices(BaseModel):
    default: str | int
    choices: list[str | int]


class ServerOptions(BaseModel):
    """Defaults and limits of this server, for forms in front-ends: every engine option a request may set."""

    fields: dict[str, FieldLimits] = Field(description="numeric options")
    switches: dict[str, bool] = Field(description="on/off options and their defaults")
    choices: dict[str, Choices] = Field(description="options that take one of a few values")
    descriptions: dict[str, str] = Field(description="what each option does, in a line")
    max_classes: int
    max_upload_bytes: int
    max_pixels: int
    auth_required: bool

    @classmethod
    def from_settings(cls, settings: Settings, model: type[SegmentOptions] = SegmentOptions) -> ServerOptions:
        fields = request_fields(model)
        return cls(
            fields=option_limits(settings, model),
            switches={name: field.default for name, field in fields.items() if field.annotation is bool},
            choices={
                name: Choices(default=field.default, choices=list(get_args(field.annotation)))
                for name, field in fields.items()
                if get_origin(field.annotation) is Literal
            },
            descriptions={name: field.description for name, field in fields.items()},
            max_classes=settings.max_classes,
            max_upload_bytes=settings.max_upload_bytes,
            max_pixels=settings.max_pixels,
            auth_required=bool(settings.api_keys),
        )


class Stroke(RefusesUnknown):
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


def _few_classes(strokes: Any, info: ValidationInfo) -> Any:
    """Refuse more classes than ``max_classes`` of the validation context in one sentence, before each stroke is
    checked: 300 classes gave 45 times "label: Input should be less than or equal to 255"."""
    limit = (info.context or {}).get("max_classes")
    if limit is None or not isinstance(strokes, list):
        return strokes
    labels = {label for stroke in strokes if isinstance(stroke, dict) and isinstance(label := stroke.get("label"), int)}
    if len(labels) > limit:
        raise PydanticCustomError(
            "too_many_classes",
            "the strokes have {count} classes; at most {limit} are accepted",
            {"count": len(labels), "limit": limit},
        )
    return strokes


# Validated with context={"max_classes": ...} to hold the strokes to the server's class limit.
STROKES = TypeAdapter(Annotated[list[Stroke], BeforeValidator(_few_classes), AfterValidator(_bounded_points)])
_STROKES_EXAMPLE = (
    '[{"label": 1, "points": [[10, 12], [60, 14]], "width": 6}, {"label": 2, "points": [[30, 80]], "width": 12}]'
)


class SegmentRequest(RefusesUnknown):
    """The parts of POST /segment's form that are not engine options (:func:`segment_form` adds those).

    An unknown or misspelt field is refused (422) naming it and the closest known one, so an option
    that would not take effect never passes silently.
    """

    image: UploadFile | None = Field(
        None,
        description="PNG, JPEG, WebP, TIFF or BMP (sniffed from the bytes); EXIF orientation applied; "
        "converted to 8-bit RGB; of an animated or multi-page image the first frame. "
        "Optional with `previous`; given, it must be that job's image",
    )
    previous: str | None = Field(
        None,
        pattern=JOB_ID_PATTERN,
        description="refine this job: the id of an earlier job on the same image, sent with the complete "
        "current scribbles. The new job starts from its superpixels, features and trained head "
        "and trains until the strokes are fitted, at most `refine_steps` steps; it keeps the previous job's "
        "options unless given. Once that job's data expired, a request with the image runs from scratch "
        "(`warm: false`)",
    )
    scribbles: UploadFile | None = Field(
        None,
        description="PNG the image's size: a label PNG (0 unlabeled, 1..K classes) or a colour PNG "
        "(RGB/RGBA: black or transparent unlabeled, each colour a class; the job's `colours` says which). "
        "Optional with `box` or `points`; beside them, a label PNG whose 1 and 2 are the object and its background",
    )
    strokes: str | None = Field(
        None,
        description="instead of `scribbles`: strokes JSON, drawn with round caps and joins "
        f"(at most {MAX_STROKE_POINTS} points in all)",
        examples=[_STROKES_EXAMPLE],
    )
    box: str | None = Field(
        None,
        description="a box around the object, `x0,y0,x1,y1` in pixels (x1 and y1 excluded), instead of or beside "
        "scribbles: what lies beyond it is background. The object is class 1, the background class 2",
        examples=["40,20,140,100"],
    )
    points: str | None = Field(
        None,
        description="clicks JSON `[[x, y, label], ...]` in pixels, instead of or beside scribbles: label 1 on the "
        "object (class 1), 0 off it (class 2). A refine sends the box and every click so far",
        examples=["[[88, 42, 1], [10, 10, 0]]"],
    )
    callback_url: str | None = Field(
        None,
        description="POSTed the final job body (as GET /jobs/{id}) when the job ends; retried with back-off. "
        "Signed when the server has a callback secret: `X-GDC-Timestamp: t` and "
        "`X-GDC-Signature: sha256=HMAC-SHA256(secret, t + '.' + raw body)` in hex.",
        examples=["https://example.org/hooks/gdc"],
    )

    option_names: ClassVar[tuple[str, ...]] = ()  # the engine options :func:`segment_form` added

    @field_validator("strokes", mode="before")
    @classmethod
    def _strokes_are_text(cls, value: Any) -> Any:
        """A file sent as `strokes` is most likely a scribble image in the wrong field: say so."""
        if isinstance(value, ReceivedFile):
            raise PydanticCustomError(
                "file_for_text",
                "a file was sent, but `strokes` is a text form field holding strokes JSON; "
                "send a scribble image as the file `scribbles`",
            )
        return value

    def options(self) -> dict[str, Any]:
        """The engine options given, by name; None for each left out."""
        return {name: getattr(self, name) for name in self.option_names}

    def prompts(self) -> tuple[Box | None, list[Click]]:
        """The box and clicks given, parsed (:mod:`gdc.prompts`); raises InputError naming a malformed one."""
        box = None if self.box is None else parse_box(self.box)
        return box, [] if self.points is None else parse_clicks(self.points)


def request_fields(model: type[SegmentOptions] = SegmentOptions) -> dict[str, FieldInfo]:
    """The fields of the engine options a request may set, by name."""
    return {name: model.model_fields[name] for name in request_options(model)}


def _bounded(field: FieldInfo) -> Any:
    """The field's type with its bounds (ge, le, ...)."""
    return Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation


def _is_numeric(field: FieldInfo) -> bool:
    return field.annotation is not bool and get_origin(field.annotation) is not Literal


def _bound(field: FieldInfo, *names: str) -> Any:
    return next((getattr(rule, name) for rule in field.metadata for name in names if hasattr(rule, name)), None)


def server_maximum(name: str, settings: Settings, model: type[SegmentOptions] = SegmentOptions) -> int | None:
    """The server's cap on option ``name`` (a refine option: its pair's), or None when it sets none."""
    setting = SERVER_MAXIMA.get(refine_pairs(model).get(name, name))
    return None if setting is None else getattr(settings, setting)


def option_limits(settings: Settings, model: type[SegmentOptions] = SegmentOptions) -> dict[str, FieldLimits]:
    """Default, minimum and maximum of each numeric option: the engine's bounds, capped by the server's."""
    limits = {}
    for name, field in request_fields(model).items():
        if not _is_numeric(field):
            continue
        maximum = _bound(field, "le", "lt")
        if (cap := server_maximum(name, settings, model)) is not None:
            maximum = cap if maximum is None else min(maximum, cap)
        default = field.default if maximum is None else min(field.default, maximum)
        limits[name] = FieldLimits(
            default=default,
            minimum=_bound(field, "ge", "gt"),
            maximum=maximum,
            integer=int in (field.annotation, *get_args(field.annotation)),
        )
    return limits


def describe_errors(errors: list[dict]) -> str:
    """pydantic or FastAPI validation errors as one readable sentence per problem."""
    parts = []
    for error in errors:
        where = ".".join(str(part) for part in error["loc"] if part not in ("body", "query", "header", "form"))
        parts.append(f"{where}: {error['msg']}" if where else error["msg"])
    return "; ".join(parts)


def resolve_options(given: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The engine options of a request: values given (None: not given), else the server's defaults, checked.

    Raises:
      ValueError: an option a request may not set, or a value out of the engine's or the server's range
        (the message names it).
    """
    if problem := unknown_names(given, request_options(), "option"):
        raise ValueError(problem)
    limits = option_limits(settings)
    values = {name: limit.default for name, limit in limits.items()}
    values |= {name: value for name, value in given.items() if value is not None}
    try:
        options = SegmentOptions(**values)
    except ValidationError as error:
        raise ValueError(describe_errors(error.errors())) from None
    for name, limit in limits.items():
        if limit.maximum is not None and values[name] > limit.maximum:
            raise ValueError(f"{name} must be at most {limit.maximum} on this server, got {values[name]}")
    return options.model_dump(include=set(request_options()))


def segment_form(model: type[SegmentOptions] = SegmentOptions) -> type[RefusesUnknown]:
    """POST /segment's form: the files and fields of :class:`SegmentRequest` and each option a request may set
    (optional: left out, the server's default), with the engine's bounds and description."""
    options = {
        name: (_bounded(field) | None, Field(None, description=field.description))
        for name, field in request_fields(model).items()
    }
    form = create_model("SegmentForm", __base__=SegmentRequest, **options)
    form.option_names = tuple(options)
    return form
