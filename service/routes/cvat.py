"""POST /cvat/interactor: CVAT's interactor call (what integrations/cvat/main.py forwards).

CVAT sends the frame and the person's clicks and box: they are gdc's prompts (:mod:`gdc.prompts`),
positive points clicks on the object, negative ones off it, the box one around it. A box alone,
or clicks on and off the object, are enough. The answer is the mask of the object (class 1) as
rows of 0 and 255, as CVAT's HRNet interactor gives it.
"""
from __future__ import annotations

import base64
import binascii

import numpy as np
from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from gdc.errors import InputError
from gdc.prompts import OBJECT, Click

from ..deps import QueueDep, SettingsDep, require_api_key
from ..interactive import box_around, segment_and_wait
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
    pos_points: list[Point] = Field([], description="[x, y] clicks on the object")
    neg_points: list[Point] = Field([], description="[x, y] clicks off the object")
    obj_bbox: list[Point] | None = Field(
        None, min_length=2, max_length=2, description="[[x1, y1], [x2, y2]]: a box around the object"
    )


class InteractorResult(BaseModel):
    mask: list[list[int]] = Field(description="H rows of W values: 255 on the object, 0 elsewhere")


@router.post("/interactor", response_model=InteractorResult, summary="CVAT's interactor: clicks in, a mask out")
async def interactor(request: InteractorRequest, settings: SettingsDep, queue: QueueDep) -> dict:
    try:
        image = base64.b64decode(request.image.split(",")[-1], validate=True)  # a data: URL prefix is dropped
    except (binascii.Error, ValueError):  # ValueError: characters outside ASCII
        raise InputError("image is not valid base64") from None
    clicks = [Click(x, y, True) for x, y in request.pos_points] + [Click(x, y, False) for x, y in request.neg_points]
    if request.obj_bbox is None and not clicks:
        raise InputError("give a box or points around or on the object")
    box = None
    if request.obj_bbox is not None:
        height, width = await run_in_threadpool(image_size, image, settings.max_pixels)  # from its header
        box = box_around(*request.obj_bbox[0], *request.obj_bbox[1], width, height)
    _, mask = await segment_and_wait(queue, settings, image, box=box, clicks=clicks)
    return {"mask": np.where(mask == OBJECT, 255, 0).tolist()}
