"""Label Studio's side of the ML-backend protocol: label configs, interactive context, brush regions, task images.

Label Studio sends its project's label config (XML) with every prediction request and,
while a person annotates, the regions drawn so far as ``params.context.result``. Here the
config's labels become gdc classes 1..K in the order the config lists them: the first is the
object of gdc's prompts (:mod:`gdc.prompts`, class 1), the second its background (class 2).
BrushLabels regions become scribbles, a RectangleLabels region the box around the object, and
KeyPointLabels points clicks on the object or its background (points of other classes: scribbles).
gdc's label map goes back as one BrushLabels region per class. Each task remembers the job gdc
ran last for it (:func:`task_key`), so the next prediction on it refines that job.
"""
from __future__ import annotations

import hashlib
import math
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx
import numpy as np

from gdc.errors import InputError
from gdc.prompts import BACKGROUND, OBJECT, Box, Click, draw_discs
from worker.keys import Kind, key_for

from .brush_rle import decode_mask, encode_mask
from .errors import ImageFetchFailed, UploadTooLarge
from .interactive import box_around
from .settings import Settings

IMAGE_TIMEOUT = 20.0  # seconds to fetch a task's image; well inside Label Studio's 100 s predict timeout
_LABEL_STUDIO_PATHS = ("/data/upload/", "/data/local-files/", "/storage-data/")


@dataclass(frozen=True)
class LabelConfig:
    """What gdc needs of a project's label config."""

    brush_tag: str  # the BrushLabels tag's name, ``from_name`` of the regions gdc answers
    image_tag: str  # the Image tag it labels, ``to_name``
    image_field: str  # the task data field holding the image URL (``$image`` -> ``image``)
    labels: tuple[str, ...]  # class k + 1 is labels[k]: the BrushLabels labels, then the point and box tags' others
    brush_count: int  # how many of the labels, the first ones, are BrushLabels'

    @classmethod
    def parse(cls, xml: str) -> LabelConfig:
        """The config's BrushLabels tag, its image and the labels. Raises InputError naming what is missing."""
        try:
            root = ElementTree.fromstring(xml)
        except ElementTree.ParseError as error:
            raise InputError(f"the label config is not valid XML ({error})") from None
        brushes = root.findall(".//BrushLabels")
        if not brushes:
            raise InputError("the label config has no <BrushLabels> tag; gdc answers brush masks")
        brush = brushes[0]
        image_tag = brush.get("toName", "")
        image = next((tag for tag in root.iter("Image") if tag.get("name") == image_tag), None)
        if image is None or not image.get("value", "").startswith("$"):
            raise InputError(f"the label config has no <Image name={image_tag!r} value='$...'> for its BrushLabels")
        labels = [label.get("value") for label in brush.iter("Label")]
        brush_count = len(labels)
        for tag in (*root.iter("KeyPointLabels"), *root.iter("RectangleLabels")):
            labels += [label.get("value") for label in tag.iter("Label") if label.get("value") not in labels]
        if brush_count < 2:
            raise InputError("the BrushLabels tag needs at least two labels (an object and its background)")
        return cls(
            brush_tag=brush.get("name", ""), image_tag=image_tag, image_field=image.get("value")[1:],
            labels=tuple(labels),
            brush_count=brush_count,
        )

    def class_of(self, name: str) -> int:
        try:
            return self.labels.index(name) + 1
        except ValueError:
            known = ", ".join(self.labels)
            raise InputError(f"label {name!r} is not in the project's label config ({known})") from None


@dataclass(frozen=True)
class Context:
    """The regions drawn so far as gdc's inputs.

    Attributes:
      scribbles: (H, W) label map of the image's original size, 0 where nothing is drawn.
      box: the last RectangleLabels region, around the object; None without one.
      clicks: the KeyPointLabels points of the object's and its background's labels.
    """

    scribbles: np.ndarray
    box: Box | None
    clicks: list[Click]


def read_context(config: LabelConfig, regions: list[dict]) -> Context:
    """The regions of ``params.context.result`` (positions in percent of the image) as gdc's inputs.

    BrushLabels regions paint their class where their mask is, later ones over earlier ones, as
    later strokes do in the editor; a KeyPointLabels point of another class than the object's or
    its background's paints a small disk. A rectangle must carry the object's label.
    """
    sized = [region for region in regions if region.get("original_width") and region.get("original_height")]
    if not sized:
        raise InputError("the interactive context has no region with original_width and original_height")
    width, height = int(sized[0]["original_width"]), int(sized[0]["original_height"])
    labels = np.zeros((height, width), np.uint8)
    box, clicks = None, []
    for region in regions:
        value = region.get("value", {})
        kind = region.get("type")
        if kind == "brushlabels":
            if value.get("format", "rle") != "rle" or "rle" not in value:
                raise InputError("a BrushLabels region in the context has no RLE mask (value.format 'rle')")
            for name in value.get("brushlabels", []):
                labels[decode_mask(value["rle"], width, height)] = config.class_of(name)
        elif kind == "keypointlabels":
            x, y = value["x"] / 100 * width, value["y"] / 100 * height
            for label_class in map(config.class_of, value.get("keypointlabels", [])):
                if label_class in (OBJECT, BACKGROUND):
                    clicks.append(Click(x, y, label_class == OBJECT))
                else:
                    draw_discs(labels, [(x, y)], label_class)
        elif kind == "rectanglelabels":
            box = _rectangle_box(config, value, width, height)
    return Context(labels, box, clicks)


def _rectangle_box(config: LabelConfig, value: dict, width: int, height: int) -> Box:
    """A RectangleLabels region's value (x, y, width, height in percent) as the box around the object."""
    for name in value.get("rectanglelabels", []):
        if config.class_of(name) != OBJECT:
            raise InputError(f"a rectangle is a box around the object: label it {config.labels[0]!r}, not {name!r}")
    if not math.isclose(value.get("rotation", 0) % 360, 0):
        raise InputError("a rotated rectangle cannot be a box: draw it unrotated")
    x0, y0 = value["x"] / 100 * width, value["y"] / 100 * height
    return box_around(x0, y0, x0 + value["width"] / 100 * width, y0 + value["height"] / 100 * height, width, height)


def brush_regions(config: LabelConfig, mask: np.ndarray) -> list[dict]:
    """gdc's label map as Label Studio results: one BrushLabels region per class present.

    Classes only a KeyPointLabels tag names mark scribbles but get no brush region.
    """
    height, width = mask.shape
    regions = []
    for index, name in enumerate(config.labels[: config.brush_count], start=1):
        selected = mask == index
        if not selected.any():
            continue
        regions.append(
            {
                "from_name": config.brush_tag,
                "to_name": config.image_tag,
                "type": "brushlabels",
                "origin": "prediction",
                "original_width": width,
                "original_height": height,
                "image_rotation": 0,
                "value": {"format": "rle", "rle": encode_mask(selected), "brushlabels": [name]},
            }
        )
    return regions


def task_key(project: str | None, task: dict, image: bytes) -> str:
    """The Redis key holding the id of gdc's last job on ``task`` of ``project`` with this image file.

    Label Studio names a project ``<id>.<created at>``, so together with the task's id it
    picks one task of one Label Studio; the image's digest makes a changed image start afresh.
    """
    name = f"label-studio\0{project or ''}\0{task.get('id')}\0{hashlib.sha256(image).hexdigest()}"
    return key_for(Kind.TOOL_TASK, hashlib.sha256(name.encode()).hexdigest())


def image_url(task: dict, config: LabelConfig, settings: Settings) -> tuple[str, bool]:
    """The absolute URL of the task's image, and whether it is Label Studio's (so it gets the token)."""
    url = task.get("data", {}).get(config.image_field)
    if not isinstance(url, str) or not url:
        raise InputError(f"task {task.get('id')} has no image URL in data.{config.image_field}")
    base = settings.label_studio_url
    if url.startswith(_LABEL_STUDIO_PATHS):
        if not base:
            raise InputError(
                f"task {task.get('id')}'s image is Label Studio's {url.split('?')[0]!r}: set LABEL_STUDIO_URL "
                "(and LABEL_STUDIO_API_KEY) so gdc can fetch it"
            )
        return urljoin(base.rstrip("/") + "/", url.lstrip("/")), True
    if urlsplit(url).scheme not in ("http", "https"):
        raise InputError(f"task {task.get('id')}'s image {url[:80]!r} is not an http(s) URL or a Label Studio path")
    return url, bool(base) and url.startswith(base.rstrip("/") + "/")


async def _authorization(client: httpx.AsyncClient, settings: Settings) -> dict[str, str]:
    """Label Studio's Authorization header for the configured key.

    A personal access token (a JWT) is a refresh token: it is exchanged for an access token
    at /api/token/refresh and sent as Bearer; a legacy token is sent as ``Token``.
    """
    if settings.label_studio_api_key is None:
        return {}
    key = settings.label_studio_api_key.get_secret_value()
    if key.count(".") != 2:
        return {"Authorization": f"Token {key}"}
    refresh = await client.post(
        urljoin(settings.label_studio_url.rstrip("/") + "/", "api/token/refresh"), json={"refresh": key}
    )
    if refresh.status_code != 200:
        raise ImageFetchFailed(
            f"Label Studio refused LABEL_STUDIO_API_KEY as a personal access token ({refresh.status_code})"
        )
    return {"Authorization": f"Bearer {refresh.json()['access']}"}


async def fetch_image(task: dict, config: LabelConfig, settings: Settings) -> bytes:
    """The task's image file. Raises InputError for an unusable URL, ImageFetchFailed when fetching it fails,
    UploadTooLarge when it is larger than the server accepts."""
    url, own = image_url(task, config, settings)
    async with httpx.AsyncClient(timeout=IMAGE_TIMEOUT, follow_redirects=True) as client:
        try:
            headers = await _authorization(client, settings) if own else {}
            async with client.stream("GET", url, headers=headers) as response:
                if response.status_code != 200:
                    hint = " (check LABEL_STUDIO_API_KEY)" if own and response.status_code in (401, 403) else ""
                    raise ImageFetchFailed(f"fetching the image {url} answered {response.status_code}{hint}")
                data = bytearray()
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > settings.max_upload_bytes:
                        raise UploadTooLarge(
                            f"the image {url} is larger than this server's {settings.max_upload_bytes} bytes"
                        )
        except httpx.HTTPError as error:
            raise ImageFetchFailed(f"fetching the image {url} failed: {error}") from None
    return bytes(data)
