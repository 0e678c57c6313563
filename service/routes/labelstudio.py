"""Label Studio's ML-backend protocol under /labelstudio: enter ``http://HOST:8000/labelstudio`` as the backend URL.

Predictions are interactive: the regions a person drew so far (``params.context.result``)
are the scribbles, box and clicks of one gdc job, which the request waits for. A task's next prediction
refines the job its last one ran (``previous``), sending the image too, so it runs cold
once that job's data expired. Without context there is nothing to segment from, and the
task gets an empty prediction.
"""
from __future__ import annotations

from importlib.metadata import version
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from gdc.errors import InputError
from gdc.imageio import read_labels
from worker import store

from ..deps import QueueDep, SettingsDep, require_api_key
from ..interactive import segment_and_wait
from ..labelstudio import LabelConfig, brush_regions, fetch_image, read_context, task_key
from ..schemas import BAD_INPUT, KEY_REFUSED, STORE_DOWN, UNREADABLE_JSON, error_responses
from ..submit import wait_for_end

MODEL_VERSION = f"gdc-{version('gdc')}"
# A prediction's score needs the job's uncertainty, stored after its mask (2.3-3.3 s after it for a 12 MP photo on
# the 2-core CPU); past this the score is 0.
UNCERTAINTY_WAIT_SECONDS = 10.0

router = APIRouter(
    prefix="/labelstudio",
    tags=["label studio"],
    dependencies=[Depends(require_api_key)],
    responses=error_responses(
        KEY_REFUSED,
        BAD_INPUT,
        UNREADABLE_JSON,
        STORE_DOWN,
        {
            413: "the task's image is larger than this server accepts",
            502: "the task's image could not be fetched",
            504: "the job did not end within GDC_INTERACTIVE_WAIT seconds",
        },
    ),
)


class SetupRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    project: str | None = None
    label_config: str | None = Field(None, alias="schema", description="the project's label config (XML)")


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    project: str | None = Field(None, description="Label Studio's `<project id>.<created at>`")
    tasks: list[dict[str, Any]] = Field(description="Label Studio tasks, each with `id` and `data`")
    label_config: str = Field(description="the project's label config (XML)")
    params: dict[str, Any] = Field({}, description="`context.result`: the regions drawn so far (interactive mode)")


@router.get("/health", summary="Label Studio's backend health check")
def health() -> dict:
    return {"status": "UP", "model_class": "gdc", "model_version": MODEL_VERSION}


@router.post("/setup", summary="Label Studio connects a project")
def setup(request: SetupRequest) -> dict:
    if request.label_config:
        LabelConfig.parse(request.label_config)  # a config gdc cannot serve is refused when connecting
    return {"model_version": MODEL_VERSION}


@router.post("/webhook", summary="Label Studio's events (gdc does not train; acknowledged)")
def webhook(event: dict[str, Any]) -> dict:
    return {"status": "ok"}


def _confidence(uncertainty: bytes) -> float:
    """1 minus the mean normalised entropy: 1 when every pixel is certain."""
    return round(1 - float(np.mean(read_labels(uncertainty))) / 255, 4)


@router.post("/predict", summary="Label Studio asks for predictions (interactive: the regions drawn so far)")
async def predict(request: PredictRequest, settings: SettingsDep, queue: QueueDep) -> dict:
    config = LabelConfig.parse(request.label_config)
    regions = (request.params.get("context") or {}).get("result") or []
    if not regions:
        return {"results": [{"result": [], "score": 0.0, "model_version": MODEL_VERSION} for _ in request.tasks]}
    if len(request.tasks) != 1:
        raise InputError(f"an interactive prediction is for one task, got {len(request.tasks)}")
    context = read_context(config, regions)
    image = await fetch_image(request.tasks[0], config, settings)
    redis = queue.connection
    last_job_key = task_key(request.project, request.tasks[0], image)
    last_job = await run_in_threadpool(redis.get, last_job_key)
    job_id, mask = await segment_and_wait(
        queue, settings, image, context.scribbles, box=context.box, clicks=context.clicks,
        previous=last_job.decode() if last_job else None,
    )
    await run_in_threadpool(redis.set, last_job_key, job_id, ex=settings.result_ttl)
    await wait_for_end(queue, job_id, UNCERTAINTY_WAIT_SECONDS)  # the score's uncertainty comes after the mask
    uncertainty = await run_in_threadpool(store.load_result, redis, job_id, "uncertainty")
    score = _confidence(uncertainty) if uncertainty is not None else 0.0
    return {"results": [{"result": brush_regions(config, mask), "score": score, "model_version": MODEL_VERSION}]}
