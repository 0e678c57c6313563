"""Command-line pieces that several commands share: the engine's option flags, the box and click prompts, checks
of the files named, and a progress bar.

Used by ``apps.cli``, the benchmarks and the service's commands, so none of them needs the
top floor (``apps.cli``) itself.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Annotated, Literal, get_args, get_origin

from PIL import Image, UnidentifiedImageError
from pydantic import TypeAdapter, ValidationError

from gdc.errors import InputError
from gdc.options import SegmentOptions
from gdc.prompts import Box, Click, parse_box, parse_clicks
from gdc.threads import DEFAULT_THREADS


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """``--server`` and ``--api-key``, for the commands that talk to a gdc server (GDC_SERVER, GDC_API_KEY)."""
    parser.add_argument(
        "--server",
        default=os.environ.get("GDC_SERVER", "http://127.0.0.1:8000"),
        help="server URL (default: GDC_SERVER or http://127.0.0.1:8000)",
    )
    parser.add_argument("--api-key", default=os.environ.get("GDC_API_KEY"), help="X-API-Key (default: GDC_API_KEY)")


def at_least_one(what: str):
    """An argparse type: a whole number of ``what`` (threads, jobs, ...), at least 1, named in its error."""

    def whole_number(text: str) -> int:
        if not text.isdigit() or int(text) < 1:
            raise argparse.ArgumentTypeError(f"expected a whole number of {what}, at least 1, got {text!r}")
        return int(text)

    return whole_number


thread_count = at_least_one("threads")


def option_values(name: str, model: type[SegmentOptions] = SegmentOptions):
    """An argparse type: comma-separated values of the option ``name``, each held to its field in ``model`` (type,
    bounds, choices), named in its error; an empty text is no values."""
    field = model.model_fields[name]
    values = TypeAdapter(Annotated[field.annotation, field])

    def parse(text: str) -> list:
        try:
            return [values.validate_python(part.strip()) for part in text.split(",") if part.strip()]
        except ValidationError as error:
            problem = error.errors()[0]["msg"]
            raise argparse.ArgumentTypeError(f"{name}: {problem}, in {text!r}") from None

    return parse


def _flag_type(annotation) -> dict:
    """argparse keywords for a SegmentOptions field's type: choices for a Literal, a switch for a bool."""
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    if get_origin(annotation) is Literal:
        choices = get_args(annotation)
        return {"choices": choices, "type": type(choices[0])}
    kinds = [kind for kind in get_args(annotation) or (annotation,) if kind is not type(None)]
    return {"type": kinds[0]}


def add_engine_options(
    parser: argparse.ArgumentParser,
    model: type[SegmentOptions] = SegmentOptions,
    *,
    names: tuple[str, ...] | None = None,
    defaults: str = "",
    threads: bool = True,
) -> None:
    """A flag for each option of ``model`` (or of ``names``), made from its field; unset ones keep their defaults.

    ``--steps``, ``--refine-stop-loss``, ``--edges/--no-edges``, ...: type, choices and help come from the
    model, and its bounds are checked when :func:`engine_options` builds it. ``defaults`` replaces the
    "(default X)" of every help text (e.g. "the server's"); ``threads`` adds ``--threads`` for commands that
    run the engine here.
    """
    group = parser.add_argument_group("engine options")
    for name in names if names is not None else tuple(model.model_fields):
        field = model.model_fields[name]
        shown = defaults or ("on" if field.default is True else "off" if field.default is False else field.default)
        group.add_argument(
            f"--{name.replace('_', '-')}", dest=name, help=f"{field.description} (default {shown})",
            **_flag_type(field.annotation),
        )
    if threads:
        group.add_argument(
            "--threads", type=thread_count, default=DEFAULT_THREADS,
            help=f"torch CPU threads (default {DEFAULT_THREADS}: steady when other programs share the cores; see "
            "gdc.threads)",
        )


def given_options(args: argparse.Namespace, model: type[SegmentOptions] = SegmentOptions) -> dict:
    """The options set on the command line, by name."""
    return {name: getattr(args, name) for name in model.model_fields if getattr(args, name, None) is not None}


def engine_options(args: argparse.Namespace, model: type[SegmentOptions] = SegmentOptions, **overrides) -> SegmentOptions:
    """The options the command line sets, the model's defaults for the rest."""
    return model(**{**given_options(args, model), **overrides})


def add_prompt_options(parser: argparse.ArgumentParser) -> None:
    """``--box`` and ``--points``: a box and clicks naming one object (:mod:`gdc.prompts`), read by :func:`prompts`."""
    group = parser.add_argument_group("box and click prompts (the object is class 1, its background class 2)")
    group.add_argument(
        "--box", metavar="X0,Y0,X1,Y1", help="pixels around the object (X1, Y1 excluded): beyond it is background"
    )
    group.add_argument(
        "--points", metavar="JSON", help="clicks [[x, y, label], ...]: label 1 on the object, 0 off it"
    )


def prompts(args: argparse.Namespace) -> tuple[Box | None, list[Click]]:
    """The ``--box`` and ``--points`` given, parsed; InputError, in one line, for a malformed one."""
    box = None if args.box is None else parse_box(args.box)
    return box, [] if args.points is None else parse_clicks(args.points)


def check_files(read: dict[str, str | None], write: dict[str, str | None]) -> None:
    """Refuse, before any work, a file to read that is not there and a file to write into a folder that is not
    (InputError, in one line). Keys name the files as the message should (``"image"``, ``"-o"``); None values are
    files not asked for."""
    for what, path in read.items():
        if path is not None and not Path(path).is_file():
            raise InputError(f"{what} not found: {path}")
    for flag, path in write.items():
        if path is not None and not Path(path).parent.is_dir():
            raise InputError(f"{flag} {path}: the folder {Path(path).parent} does not exist; create it first")


def check_decodable(path: str, what: str = "image") -> None:
    """Refuse an image whose header claims more pixels than Pillow decodes (a decompression bomb's mark) in gdc's
    words, before reading it."""
    try:
        Image.open(path).close()
    except Image.DecompressionBombError:
        limit = 2 * Image.MAX_IMAGE_PIXELS / 1e6
        raise InputError(
            f"{what} {path} is too large to decode: over {limit:.0f} million pixels, the most gdc reads; shrink it"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return  # not an image, or a damaged one: its reader says which


class ProgressBar:
    """A tqdm bar per phase on a terminal; silent elsewhere."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None
        self.phase = None

    def __call__(self, phase: str, step: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if phase != self.phase:
            self.close()
            self.phase = phase
            self.bar = tqdm(total=total, desc=f"{phase:>11}", leave=False, file=sys.stderr)
        self.bar.update(step - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
