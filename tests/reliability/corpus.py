"""A corpus of hostile and odd uploads, made in code, with the answer each must get.

What is accepted, and why (also in the API description):

- grey, palette, 16-bit, CMYK, RGBA images: valid images, converted to 8-bit RGB (alpha dropped);
- animated PNG and WebP, multi-page TIFF: the first frame is segmented;
- GIF (animated or not), ICO, PDF, floating-point TIFF: refused with 422;
- headers claiming more than GDC_MAX_PIXELS: 413 before any pixel is decoded;
- PNG and JPEG files cut short: 422 (their structure is checked; the API decodes no image's pixels, so damage
  only a decode finds fails the job with invalid_input instead: ``png_with_damaged_pixels``);
- EXIF-rotated photos: measured upright, as they are segmented, so scribbles must have the upright size;
- label PNG scribbles (mode L or P) and colour PNG scribbles (RGB, RGBA: each colour a class, up to
  GDC_MAX_CLASSES colours); JPEG or 16-bit scribbles are refused.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np
from PIL import ExifTags, Image, PngImagePlugin

from benchmarks.tiny import HEIGHT, WIDTH, tiny_image, tiny_scribbles
from gdc.imageio import encode_png


@dataclass
class Case:
    """One request to POST /segment and the status and ``detail`` fragment it must get."""

    name: str
    status: int
    detail: str = ""  # a fragment of the answer's detail; empty for 202
    image: bytes | None = None  # None: the valid tiny image
    scribbles: bytes | None = None  # None: the valid scribbles (unless strokes are given)
    data: dict = field(default_factory=dict)

    def files(self) -> dict:
        """Multipart files, and the form fields given as bytes (sent as they are, not as UTF-8)."""
        files = {"image": ("upload", encode_png(tiny_image(0)) if self.image is None else self.image)}
        if self.scribbles is not None or "strokes" not in self.data:
            scribbles = encode_png(tiny_scribbles()) if self.scribbles is None else self.scribbles
            files["scribbles"] = ("scribbles.png", scribbles)
        return files | {name: (None, value) for name, value in self.data.items() if isinstance(value, bytes)}

    def form(self) -> dict:
        return {name: value for name, value in self.data.items() if not isinstance(value, bytes)}


def encoded(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` but whose data is a single tiny row."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0\0")) + chunk(b"IEND", b"")


def _rgb() -> Image.Image:
    return Image.fromarray(tiny_image(0))


def grey16() -> np.ndarray:
    """A 16-bit grey ramp over the whole 0..65535 range, the tiny image's size."""
    return np.linspace(0, 65535, HEIGHT * WIDTH).reshape(HEIGHT, WIDTH).astype(np.uint16)


def animated(format: str) -> bytes:
    """Two frames, losslessly: the tiny image, then its negative."""
    frames = [_rgb(), Image.fromarray(255 - tiny_image(0))]
    return encoded(frames[0], format, save_all=True, append_images=frames[1:], lossless=True)


def exif_rotated_jpeg() -> bytes:
    """The tiny image stored turned a quarter to the left, with the EXIF orientation that shows it upright."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    return encoded(Image.fromarray(np.rot90(tiny_image(0))), "JPEG", exif=exif)


def png_with_damaged_pixels() -> bytes:
    """The tiny image as a PNG whose chunks check out (CRCs, IEND) but whose compressed pixels do not inflate."""
    png = encode_png(tiny_image(0))
    start = png.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", png[start : start + 4])
    damaged = bytes(length)  # not a zlib stream
    chunk = png[start : start + 8] + damaged + struct.pack(">I", zlib.crc32(b"IDAT" + damaged))
    return png[:start] + chunk + png[start + 12 + length :]


def text_chunk_bomb() -> bytes:
    """A valid tiny PNG with a compressed text chunk that inflates to 50 MB."""
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "A" * 50_000_000, zip=True)
    return encoded(_rgb(), "PNG", pnginfo=info)


def palette_labels() -> bytes:
    """The scribbles as a palette PNG: the palette indices are the labels."""
    image = Image.frombytes("P", (WIDTH, HEIGHT), tiny_scribbles().tobytes())
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0])
    return encoded(image, "PNG")


def strokes(*items: dict) -> str:
    return json.dumps(list(items))


STROKE = {"label": 1, "points": [[10, 10]], "width": 4}
OTHER_STROKE = {"label": 2, "points": [[50, 40]], "width": 4}


def hostile_cases(max_upload_bytes: int) -> list[Case]:
    png = encode_png(tiny_image(0))
    jpeg = encoded(_rgb(), "JPEG")
    many_classes = tiny_scribbles()
    many_classes[10, :17] = np.arange(1, 18)  # 17 classes, the default limit is 16
    return [
        # --- images that are not (readable) images -----------------------------------------------
        Case("zero-byte image", 422, "image is an empty file", image=b""),
        Case("truncated PNG", 422, "truncated", image=png[: len(png) // 2]),
        Case("truncated JPEG", 422, "truncated", image=jpeg[: len(jpeg) // 2]),
        Case("wrong magic", 422, "image is not an image file", image=b"\x89PNX" + png[4:]),
        Case("text as image", 422, "image is not an image file", image=b"hello, world\n" * 10),
        Case("PDF", 422, "image is not an image file", image=encoded(_rgb(), "PDF")),
        Case("GIF, animated", 422, "image format GIF is not accepted", image=animated("GIF")),
        Case("ICO", 422, "image format ICO is not accepted", image=encoded(_rgb(), "ICO")),
        Case(
            "float TIFF",
            422,
            "floating-point pixels",
            image=encoded(Image.fromarray(np.random.default_rng(0).random((HEIGHT, WIDTH), np.float32)), "TIFF"),
        ),
        Case("text chunk bomb", 422, "image is a damaged image file", image=text_chunk_bomb()),
        # --- images too large or too small -------------------------------------------------------
        Case(
            "1x1 image",
            422,
            "image is 1x1; both sides must be at least 8 pixels",
            image=encode_png(np.zeros((1, 1, 3), np.uint8)),
        ),
        Case("30000x30000 header", 413, "image is larger than this server accepts", image=png_claiming(30000, 30000)),
        Case(
            "decompression bomb",
            413,
            "image is 8000x8000 = 64000000 pixels",
            image=encoded(Image.new("L", (8000, 8000)), "PNG"),
        ),
        # --- valid images in other modes: converted and accepted ---------------------------------
        Case("16-bit grey PNG", 202, image=encode_png(grey16())),
        Case("16-bit grey TIFF", 202, image=encoded(Image.fromarray(grey16()), "TIFF")),
        Case("palette PNG", 202, image=encoded(_rgb().convert("P"), "PNG")),
        Case("CMYK JPEG", 202, image=encoded(_rgb().convert("CMYK"), "JPEG")),
        Case("RGBA PNG", 202, image=encoded(_rgb().convert("RGBA"), "PNG")),
        Case("animated PNG", 202, image=animated("PNG")),
        Case("animated WebP", 202, image=animated("WEBP")),
        Case("EXIF-rotated JPEG", 202, image=exif_rotated_jpeg()),
        Case(
            "EXIF-rotated JPEG, scribbles of the stored size",
            422,
            f"scribbles are {HEIGHT}x{WIDTH} but the image is {WIDTH}x{HEIGHT}",
            image=exif_rotated_jpeg(),
            scribbles=encode_png(np.ascontiguousarray(np.rot90(tiny_scribbles()))),
        ),
        # --- scribbles ---------------------------------------------------------------------------
        Case(
            "scribbles of another size",
            422,
            f"scribbles are {WIDTH + 2}x{HEIGHT + 2} but the image is {WIDTH}x{HEIGHT}",
            scribbles=encode_png(np.pad(tiny_scribbles(), 1)),
        ),
        Case("RGB scribbles", 202, scribbles=encode_png(np.stack([tiny_scribbles() * 100] * 3, -1))),
        Case(
            "a photo as scribbles",
            422,
            "colours, and each colour is a class: at most 16 are accepted",
            scribbles=encode_png(tiny_image(0)),
        ),
        Case("16-bit scribbles", 422, "got mode I;16", scribbles=encode_png(tiny_scribbles().astype(np.uint16) * 300)),
        Case(
            "JPEG scribbles",
            422,
            "scribbles must be a PNG (label or colour), got JPEG",
            scribbles=encoded(Image.fromarray(tiny_scribbles()), "JPEG"),
        ),
        Case("zero-byte scribbles", 422, "scribbles is an empty file", scribbles=b""),
        Case(
            "17 classes", 422, "scribbles have 17 classes; at most 16 are accepted", scribbles=encode_png(many_classes)
        ),
        Case(
            "one class",
            422,
            "found only class 1",
            scribbles=encode_png(np.where(tiny_scribbles() > 0, 1, 0).astype(np.uint8)),
        ),
        Case("palette scribbles", 202, scribbles=palette_labels()),
        # --- strokes JSON ------------------------------------------------------------------------
        Case("non-UTF-8 strokes", 422, "strokes are malformed", data={"strokes": b"\xff\xfe[]"}),
        Case("deeply nested strokes", 422, "recursion limit exceeded", data={"strokes": "[" * 100_000 + "]" * 100_000}),
        Case(
            "too many stroke points",
            422,
            "points; at most 100000 are accepted",
            data={"strokes": strokes({**STROKE, "points": [[1, 1]] * 100_001}, OTHER_STROKE)},
        ),
        Case(
            "strokes over the body limit",
            413,
            "larger than this server's limit",
            data={"strokes": " " * (max_upload_bytes + 1)},
        ),
        Case(
            "stroke label 0",
            422,
            "label: Input should be greater than or equal to 1",
            data={"strokes": strokes({**STROKE, "label": 0}, OTHER_STROKE)},
        ),
        Case(
            "stroke label 300",
            422,
            "label: Input should be less than or equal to 255",
            data={"strokes": strokes({**STROKE, "label": 300}, OTHER_STROKE)},
        ),
        Case(
            "strokes far outside",
            202,
            data={"strokes": strokes({**STROKE, "points": [[-1e9, -1e9], [1e9, 1e9]]}, OTHER_STROKE)},
        ),
        # --- options -----------------------------------------------------------------------------
        Case("NaN sigma", 422, "sigma", data={"sigma": "nan"}),
        Case("huge steps", 422, "steps", data={"steps": "9" * 5000}),
    ]
