"""Turning a request's files into arrays: sizes checked from headers before any pixel is decoded.

Errors are :class:`gdc.errors.InputError` with a message for the user, or
:class:`service.errors.UploadTooLarge`.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError
from pydantic import ValidationError

from gdc.errors import InputError
from gdc.imageio import read_image, read_scribbles

from .errors import UploadTooLarge
from .schemas import STROKES, describe_errors

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP")


def _header(data: bytes, what: str, max_pixels: int) -> Image.Image:
    """The file opened lazily: format and size are read, pixels are not."""
    if not data:
        raise InputError(f"{what} is an empty file")
    try:
        return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:  # a header over 2 x Image.MAX_IMAGE_PIXELS: refused in this server's words
        raise UploadTooLarge(f"{what} is larger than this server accepts: at most {max_pixels} pixels") from None
    except UnidentifiedImageError:
        raise InputError(f"{what} is not an image file (send {', '.join(ACCEPTED_FORMATS)})") from None
    except (OSError, SyntaxError, ValueError) as error:  # e.g. a compressed text chunk that inflates too far
        raise InputError(f"{what} is a damaged image file ({error})") from None


def read_image_upload(data: bytes, max_pixels: int) -> np.ndarray:
    """The uploaded image as (H, W, 3) uint8 RGB, EXIF orientation applied; refused before decoding if too big."""
    header = _header(data, "image", max_pixels)
    if header.format not in ACCEPTED_FORMATS:
        raise InputError(f"image format {header.format} is not accepted; send {', '.join(ACCEPTED_FORMATS)}")
    if header.mode == "F":  # no range to scale from: 0..1, 0..255 and raw measurements all occur
        raise InputError("image has floating-point pixels; send 8- or 16-bit integer images")
    width, height = header.size
    if width * height > max_pixels:
        raise UploadTooLarge(
            f"image is {width}x{height} = {width * height} pixels; this server accepts at most {max_pixels}"
        )
    return read_image(data)


def read_scribbles_upload(
    data: bytes, width: int, height: int, max_classes: int
) -> tuple[np.ndarray, list[str] | None]:
    """The uploaded label or colour PNG as (H, W) uint8 labels and, for colours, each class's
    (:func:`gdc.imageio.read_scribbles`), after checking it is the image's size."""
    header = _header(data, "scribbles", width * height)
    if header.format != "PNG":
        raise InputError(f"scribbles must be a PNG (label or colour), got {header.format}")
    if header.size != (width, height):
        raise InputError(
            f"scribbles are {header.size[0]}x{header.size[1]} but the image is {width}x{height}; "
            "they must be the same size"
        )
    return read_scribbles(data, max_classes)


def draw_strokes(strokes_json: str, width: int, height: int) -> np.ndarray:
    """Strokes JSON (``[{"label", "points": [[x, y], ...], "width"}]``) drawn as an (H, W) uint8 label map.

    Round caps and joins, as a brush draws them; later strokes paint over earlier ones.
    """
    try:
        strokes = STROKES.validate_json(strokes_json)
    except ValidationError as error:
        raise InputError(f"strokes are malformed: {describe_errors(error.errors())}") from None
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for stroke in strokes:
        points = [tuple(point) for point in stroke.points]
        if len(points) > 1:
            draw.line(points, fill=stroke.label, width=max(1, round(stroke.width)), joint="curve")
        radius = stroke.width / 2
        for x, y in (points[0], points[-1]):  # round caps
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=stroke.label)
    return np.asarray(canvas)
