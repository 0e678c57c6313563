"""What routes depend on: settings, Redis, the queue, the job in the path, the API key."""
from __future__ import annotations

from secrets import compare_digest
from typing import Annotated

from fastapi import Depends, Path, Request, Security
from fastapi.security import APIKeyHeader, HTTPBasic, HTTPBasicCredentials
from redis import Redis
from rq import Queue
from rq.job import Job

from worker.job import JOB_ID_PATTERN, fetch_job
from worker.queue import SEGMENT_TASK

from .errors import ApiKeyRefused, JobNotFound
from .settings import Settings

# Dependencies that do no I/O are coroutines: FastAPI runs a plain function in its thread pool, and each hop there
# and back cost about as much as a cheap request's own work.


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_redis(request: Request) -> Redis:
    return request.app.state.redis


RedisDep = Annotated[Redis, Depends(get_redis)]


async def get_queue(request: Request) -> Queue:
    return request.app.state.queue


QueueDep = Annotated[Queue, Depends(get_queue)]

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="needed when the server has API keys")
# Label Studio sends the credentials of a backend URL (http://user:KEY@host/...) as HTTP basic auth.
basic_auth = HTTPBasic(auto_error=False, description="the API key as the password, any user name")


async def require_api_key(
    settings: SettingsDep,
    key: Annotated[str | None, Security(api_key_header)],
    basic: Annotated[HTTPBasicCredentials | None, Security(basic_auth)],
) -> None:
    """Let the request through when no keys are configured or its X-API-Key (or basic-auth password) is one of them."""
    given = (key or (basic.password if basic else "")).encode()
    if settings.api_keys and not any(compare_digest(given, accepted.encode()) for accepted in settings.api_keys):
        raise ApiKeyRefused("missing or invalid API key")


JobIdPath = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="the id POST /segment answered")]


def get_job(job_id: JobIdPath, queue: QueueDep) -> Job:
    return segment_job(job_id, fetch_job(queue, job_id))


def segment_job(job_id: str, job: Job | None) -> Job:
    """``job``, the one fetched for ``job_id``, when it is a segmentation; JobNotFound otherwise."""
    if job is None or job.func_name != SEGMENT_TASK:  # callback deliveries share the queue
        raise JobNotFound(f"job {job_id} not found (unknown id, or it expired)")
    return job


JobDep = Annotated[Job, Depends(get_job)]
