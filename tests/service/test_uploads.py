"""Uploads are checked from their headers (the image is never decoded by the API); strokes are drawn like a round
brush."""
import io
import json
import re
import struct
import zlib

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageFile
from redis import Redis

from gdc.errors import InputError
from gdc.imageio import encode_png, read_image, read_labels
from service.errors import UploadTooLarge
from service.uploads import draw_strokes, image_size, read_image_upload, read_scribbles_upload
from tests.service.conftest import png_claiming
from worker.keys import Kind, key_for


def test_round_caps_and_joins():
    strokes = json.dumps([{"label": 3, "points": [[10, 10], [30, 10], [30, 30]], "width": 6}])
    labels = draw_strokes(strokes, 50, 40)
    assert labels.shape == (40, 50)
    assert set(np.unique(labels)) == {0, 3}
    assert labels[10, 20] == 3 and labels[20, 30] == 3  # along both segments
    assert labels[10, 8] == 3  # the round cap reaches past the first point
    assert labels[10, 5] == 0  # but not further than half the width
    assert labels[2, 30] == 0  # nothing far off the stroke


def test_a_single_point_is_a_dot_and_later_strokes_paint_over():
    strokes = json.dumps(
        [
            {"label": 1, "points": [[20, 20]], "width": 10},
            {"label": 2, "points": [[20, 20]], "width": 4},
        ]
    )
    labels = draw_strokes(strokes, 40, 40)
    assert labels[20, 20] == 2
    assert labels[20, 16] == 1
    assert labels[20, 27] == 0


@pytest.mark.parametrize(
    "strokes, message",
    [
        ("not json", "strokes are malformed: Invalid JSON"),
        ('{"label": 1}', "strokes are malformed: Input should be a valid array"),
        ('[{"label": 1, "points": [], "width": 3}]', "0.points: List should have at least 1 item"),
        ('[{"label": 0, "points": [[1, 1]], "width": 3}]', "0.label: Input should be greater than or equal to 1"),
        ('[{"label": 1, "points": [[1, 1]]}]', "0.width: Field required"),
        ('[{"label": 1, "points": [["a", 1]], "width": 3}]', "0.points.0.0: Input should be a valid number"),
    ],
)
def test_malformed_strokes_are_named(strokes, message):
    with pytest.raises(InputError, match="^strokes are malformed") as error:
        draw_strokes(strokes, 10, 10)
    assert message in str(error.value)


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10**9)  # below Pillow's own guard
    with pytest.raises(
        UploadTooLarge, match="image is 5000x4000 = 20000000 pixels; this server accepts at most 1000000"
    ):
        read_image_upload(png_claiming(5000, 4000), max_pixels=1_000_000)


def test_a_decompression_bomb_is_refused(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    # In this server's words and limit, not Pillow's.
    with pytest.raises(UploadTooLarge, match="image is larger than this server accepts: at most 1000000000 pixels"):
        read_image_upload(png_claiming(100, 100), max_pixels=10**9)


def test_only_the_listed_formats_are_accepted():
    gif = io.BytesIO()
    Image.new("RGB", (16, 16)).save(gif, format="GIF")
    with pytest.raises(InputError, match="image format GIF is not accepted"):
        read_image_upload(gif.getvalue(), max_pixels=10**6)


def test_scribbles_must_be_a_png_of_the_image_size():
    with pytest.raises(InputError, match="scribbles are 20x10 but the image is 30x10"):
        read_scribbles_upload(encode_png(np.zeros((10, 20), np.uint8)), 30, 10, max_classes=16)
    jpeg = io.BytesIO()
    Image.new("L", (30, 10)).save(jpeg, format="JPEG")
    with pytest.raises(InputError, match=re.escape("scribbles must be a PNG (label or colour), got JPEG")):
        read_scribbles_upload(jpeg.getvalue(), 30, 10, max_classes=16)


def photo(width: int = 30, height: int = 20) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (height, width, 3), np.uint8))


def saved(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def rotated_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # shown turned a quarter: a 30x20 file is a 20x30 picture
    return exif


def png_with_exif_after_its_pixels(image: Image.Image, exif: Image.Exif) -> bytes:
    """A PNG whose eXIf chunk follows IDAT, which Pillow reads only when it decodes the pixels."""
    png = saved(image, "PNG")
    body = exif.tobytes()
    chunk = struct.pack(">I", len(body)) + b"eXIf" + body + struct.pack(">I", zlib.crc32(b"eXIf" + body))
    end = png.rindex(b"IEND") - 4
    return png[:end] + chunk + png[end:]


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if any image's pixels are decoded."""

    def refuse(self):
        raise AssertionError(f"decoded a {self.format} image")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


@pytest.mark.parametrize("format", ["JPEG", "PNG", "WEBP", "TIFF", "BMP"])
def test_an_image_is_measured_from_its_header_without_decoding(format, no_decoding):
    assert image_size(saved(photo(), format), max_pixels=10**6) == (20, 30)


@pytest.mark.parametrize(
    "data",
    [
        lambda: saved(photo(), "JPEG", exif=rotated_exif()),
        lambda: saved(photo(), "PNG", exif=rotated_exif()),
        lambda: png_with_exif_after_its_pixels(photo(), rotated_exif()),
    ],
    ids=["JPEG", "PNG", "PNG, eXIf after IDAT"],
)
def test_the_size_is_the_upright_one_the_worker_decodes(data):
    image = data()
    assert image_size(image, max_pixels=10**6) == read_image(image).shape[:2] == (30, 20)


@pytest.mark.parametrize("format", ["JPEG", "PNG"])
def test_a_file_cut_short_is_refused_without_decoding(format, no_decoding):
    whole = saved(photo(), format)
    with pytest.raises(InputError, match="not a readable image: truncated"):
        image_size(whole[:-20], max_pixels=10**6)  # its header whole, the pixel data not


def test_a_small_image_is_refused_from_its_header(no_decoding):
    with pytest.raises(InputError, match="image is 30x7; both sides must be at least 8 pixels"):
        image_size(saved(photo(30, 7), "PNG"), max_pixels=10**6)


def test_label_scribbles_are_stored_as_sent_and_colour_ones_as_labels(make_client, upload, redis_url):
    client, redis = make_client(), Redis.from_url(redis_url)
    files = upload()
    colours = np.stack([read_labels(files["scribbles"][1]) * 100] * 3, axis=-1).astype(np.uint8)
    for scribbles, stored_as in [(files["scribbles"][1], files["scribbles"][1]), (encode_png(colours), None)]:
        answer = client.post("/segment", files=files | {"scribbles": ("s.png", scribbles)})
        assert answer.status_code == 202, answer.text
        stored = redis.hget(key_for(Kind.UPLOAD, answer.json()["id"]), "scribbles")
        assert stored == (stored_as or stored)
        np.testing.assert_array_equal(read_labels(stored), read_labels(files["scribbles"][1]))
