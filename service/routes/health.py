"""Liveness, readiness and Prometheus metrics."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from rq.worker import Worker
from rq.worker_registration import clean_worker_registry

from worker import metrics as worker_metrics

from ..deps import QueueDep, RedisDep, require_api_key
from ..errors import NoLiveWorker
from ..schemas import KEY_REFUSED, STORE_DOWN, error_responses

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The API process is up")
def healthz() -> dict:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Redis answers and at least one worker listens",
    responses=error_responses({503: "Redis is unreachable or no worker is alive"}),
)
def readyz(redis: RedisDep, queue: QueueDep) -> dict:
    redis.ping()  # a Redis error answers 503 (service.errors)
    clean_worker_registry(queue)  # drop workers whose heartbeat key expired
    workers = Worker.count(queue=queue)
    if workers == 0:
        raise NoLiveWorker(f"no live worker listens on queue {queue.name!r}")
    ready = {"status": "ready", "workers": workers, "queued": queue.count}
    restarts = worker_metrics.restarts(redis, queue.name)  # counted where gdc serve supervises the workers
    if restarts is not None:
        ready["worker_restarts"] = restarts
    return ready


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    dependencies=[Depends(require_api_key)],
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, **error_responses(KEY_REFUSED, STORE_DOWN)},
)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)
