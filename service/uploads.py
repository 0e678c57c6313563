"""Checking a request's files: the image from its header alone, the scribbles decoded (their classes go in the job).

The API reads an image's format, pixel type, size and orientation from its header and checks that its file is
whole, and leaves decoding its pixels to the worker: a photo's full decode was the largest part of a POST (3 of
12 ms for a 0.24 MP JPEG), these checks take 0.1 ms. Damage inside the pixel data that only a decode finds fails
the job with ``invalid_input``.

Errors are :class:`gdc.errors.InputError` with a message for the user, or
:class:`service.errors.UploadTooLarge`.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import ExifTags, Image, ImageDraw, UnidentifiedImageError
from pydantic import ValidationError

from gdc.errors import InputError
from gdc.imageio import read_image, read_scribbles
from gdc.inputs import check_size

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


def image_size(data: bytes, max_pixels: int) -> tuple[int, int]:
    """(height, width) of the uploaded image as :func:`gdc.imageio.read_image` will decode it (EXIF orientation
    applied), from its header; its format, pixel type, size and completeness checked, no pixel decoded."""
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
    _check_whole(header, data)
    if _orientation(header, data) in _QUARTER_TURNS:
        width, height = height, width
    check_size(width, height)
    return height, width


# EXIF orientations that turn the image a quarter (transposed, rotated 90 or 270 degrees, transversed).
_QUARTER_TURNS = (5, 6, 7, 8)
# Where a PNG may carry its orientation: an eXIf chunk, ImageMagick's "Raw profile type exif" text, Adobe's XMP.
_PNG_ORIENTATION_MARKS = (b"eXIf", b"exif", b"xmp")


def _orientation(header: Image.Image, data: bytes) -> int:
    """The EXIF orientation of the image, 1 when it has none.

    Pillow reads a PNG's metadata that follows its pixel data only by decoding it all, so a PNG is decoded
    (opened again: ``verify`` used the header) only when its bytes hold a chunk that may carry an orientation.
    """
    if header.format == "PNG":
        if not any(mark in data for mark in _PNG_ORIENTATION_MARKS):
            return 1
        header = Image.open(io.BytesIO(data))
    try:
        return header.getexif().get(ExifTags.Base.Orientation, 1)
    except (OSError, SyntaxError, ValueError) as error:  # the PNG's decode, or a broken EXIF block
        raise InputError(f"the uploaded image is not a readable image ({error})") from None


def _check_whole(header: Image.Image, data: bytes) -> None:
    """Refuse a PNG or JPEG file that was cut short, without decoding it: a PNG's chunks must check out up to
    IEND (Pillow's ``verify``, CRCs only), a JPEG's scan data must end in the end-of-image marker."""
    if header.format == "PNG":
        try:
            header.verify()
        except (OSError, SyntaxError) as error:
            raise InputError(f"the uploaded image is not a readable image: truncated or damaged ({error})") from None
    elif header.format == "JPEG" and data.find(b"\xff\xd9", header.fp.tell()) < 0:  # opening stopped at the scan
        raise InputError("the uploaded image is not a readable image: truncated (its JPEG data has no end marker)")


def read_image_upload(data: bytes, max_pixels: int) -> np.ndarray:
    """The uploaded image as (H, W, 3) uint8 RGB, EXIF orientation applied; refused before decoding if too big."""
    image_size(data, max_pixels)
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


def draw_strokes(strokes_json: str, width: int, height: int, max_classes: int | None = None) -> np.ndarray:
    """Strokes JSON (``[{"label", "points": [[x, y], ...], "width"}]``) drawn as an (H, W) uint8 label map.

    Round caps and joins, as a brush draws them; later strokes paint over earlier ones. Raises InputError for
    malformed strokes, more than ``max_classes`` classes (when given), or strokes that miss the image.
    """
    try:
        strokes = STROKES.validate_json(strokes_json, context={"max_classes": max_classes})
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
    labels = np.asarray(canvas)
    if strokes and not labels.any():
        raise InputError(
            f"the strokes fall outside the {width}x{height} image: points are [x, y] in pixels from its top-left "
            f"corner, x from 0 to {width - 1} and y from 0 to {height - 1}"
        )
    return labels
