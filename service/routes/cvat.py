"""POST /cvat/interactor: CVAT's interactor call (what integrations/cvat/main.py forwards).

CVAT sends the frame and the person's clicks; positive points are class 1, negative
points class 2, each a small disk, and a box, when given, lays class 2 along its outside.
The answer is the mask of class 1 as rows of 0 and 255, as CVAT's HRNet interactor gives it.
"""
from __future__ import annotations

import base64
import binascii

import numpy as np
from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from gdc.errors import InputError

from ..deps import QueueDep, SettingsDep, require_api_key
from ..interactive import draw_points, point_radius, segment_and_wait
from ..schemas import BAD_INPUT, KEY_REFUSED, STORE_DOWN, UNREADABLE_JSON, error_responses
from ..uploads import image_size

router = APIRouter(
    prefix="/cvat",
    tags=["cvat"],
    dependencies=[Depends(require_api_key)],
    responses=error_responses(
        KEY_REFUSED, BAD_INPUT, UNREADABLE_JSON, STORE_DOWN, {504: "the job did not end within GDC_INTERACTIVE_WAIT seconds"}
    ),
)

Point = tuple[float, float]


class InteractorRequest(BaseModel):
    image: str = Field(description="the frame's image file, base64")
    pos_points: list[Point] = Field(min_length=1, description="[x, y] clicks on the object")
    neg_points: list[Point] = Field([], description="[x, y] clicks off the object")
    obj_bbox: list[Point] | None = Field(
        None, min_length=2, max_length=2, description="[[x1, y1], [x2, y2]]: a box around the object"
    )


class InteractorResult(BaseModel):
    mask: list[list[int]] = Field(description="H rows of W values: 255 on the object, 0 elsewhere")


def _outside_box(box: list[Point], width: int, height: int) -> np.ndarray:
    """An (H, W) mask of everything beyond ``box`` grown by a disk diameter: the box holds the object, as in GrabCut."""
    (x1, y1), (x2, y2) = box
    margin = round(2 * point_radius(width, height))
    left, right = sorted((round(x1), round(x2)))
    top, bottom = sorted((round(y1), round(y2)))
    outside = np.ones((height, width), bool)
    outside[max(0, top - margin) : bottom + margin + 1, max(0, left - margin) : right + margin + 1] = False
    return outside


def _scribbles(request: InteractorRequest, width: int, height: int) -> np.ndarray:
    labels = np.zeros((height, width), np.uint8)
    if request.obj_bbox is not None:
        labels[_outside_box(request.obj_bbox, width, height)] = 2
    draw_points(labels, request.neg_points, 2)
    draw_points(labels, request.pos_points, 1)
    return labels


@router.post("/interactor", response_model=InteractorResult, summary="CVAT's interactor: clicks in, a mask out")
async def interactor(request: InteractorRequest, settings: SettingsDep, queue: QueueDep) -> dict:
    try:
        image = base64.b64decode(request.image.split(",")[-1], validate=True)  # a data: URL prefix is dropped
    except (binascii.Error, ValueError):  # ValueError: characters outside ASCII
        raise InputError("image is not valid base64") from None
    height, width = await run_in_threadpool(image_size, image, settings.max_pixels)  # from its header
    scribbles = _scribbles(request, width, height)
    if not (scribbles == 2).any():
        raise InputError("give at least one negative point or a box, so gdc knows what is not the object")
    _, mask = await segment_and_wait(queue, settings, image, scribbles)
    return {"mask": np.where(mask == 1, 255, 0).tolist()}
