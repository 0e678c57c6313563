"""The errors the API answers with: named once, as ``rq/exceptions.py`` names RQ's, and mapped to HTTP once.

Logic below the routes raises one of these with a sentence for the caller; :data:`ANSWERS` gives each
class its status and headers, and :func:`install_error_handlers` one handler per class that answers
``{"detail": <the sentence>}``. The engine's :class:`gdc.errors.InputError`, a request FastAPI could
not validate, and a failing Redis are answered the same way.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gdc.errors import InputError

from .schemas import describe_errors

# Seconds a refused client waits before sending again: long enough for workers to take a few jobs.
QUEUE_FULL_RETRY_AFTER = 2
# Seconds a client waits after Redis failed: about what a restart or a Sentinel failover takes.
STORE_RETRY_AFTER = 5


class UploadTooLarge(InputError):
    """The request's image, or a task's image fetched for it, is bigger than this server accepts."""


class IdempotencyConflict(Exception):
    """An Idempotency-Key came back with another request than the one it was first used with."""


class ApiKeyRefused(Exception):
    """The server has API keys and the request carries none of them."""


class JobNotFound(Exception):
    """The job is unknown, expired or deleted, or the result asked for has expired."""


class JobNotReady(Exception):
    """The job has not got as far as the request needs: results before it succeeded, a refine before its mask."""


class PreviousGone(Exception):
    """A refine names a job whose data is gone, and sent no image to start from scratch."""


class QueueFull(Exception):
    """GDC_MAX_QUEUED jobs are waiting already; nothing was stored."""


class ImageFetchFailed(Exception):
    """An annotation tool's image could not be fetched from where its task says it is."""


class NoLiveWorker(Exception):
    """No worker listens on the queue, so no job would run."""


class ResultUnavailable(Exception):
    """A job an annotation tool waits for ended without a mask to give it: failed, canceled or expired."""


class WaitTimedOut(Exception):
    """A job an annotation tool waits for had no mask within GDC_INTERACTIVE_WAIT seconds."""


def _store_trouble(error: RedisError) -> str:
    """What a Redis error means for the caller."""
    if isinstance(error, OutOfMemoryError):
        return "the job store (Redis) is full, so nothing new can be stored; try again once results expire"
    if isinstance(error, (RedisConnectionError, RedisTimeoutError)):
        return f"the job store (Redis) is unreachable ({error}); try again shortly"
    return f"the job store (Redis) failed: {error}"


class Answer(NamedTuple):
    """An error's HTTP answer: its status, headers, and the ``detail`` made from it (its message unless said)."""

    status: int
    headers: Mapping[str, str] = {}
    detail: Callable[[Exception], str] = str

    async def respond(self, request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": self.detail(error)}, status_code=self.status, headers=dict(self.headers))


# The one place an error gets its status. A subclass without an entry answers as its base does.
ANSWERS: dict[type[Exception], Answer] = {
    ApiKeyRefused: Answer(401),
    JobNotFound: Answer(404),
    JobNotReady: Answer(409),
    PreviousGone: Answer(410),
    UploadTooLarge: Answer(413),
    InputError: Answer(422),
    IdempotencyConflict: Answer(422),
    RequestValidationError: Answer(422, detail=lambda error: describe_errors(error.errors())),
    QueueFull: Answer(429, {"Retry-After": str(QUEUE_FULL_RETRY_AFTER)}),
    ImageFetchFailed: Answer(502),
    NoLiveWorker: Answer(503),
    ResultUnavailable: Answer(503),
    RedisError: Answer(503, {"Retry-After": str(STORE_RETRY_AFTER)}, detail=_store_trouble),
    WaitTimedOut: Answer(504),
}


def install_error_handlers(app: FastAPI) -> None:
    """Answer each error of :data:`ANSWERS` with its status, headers and ``{"detail": ...}``."""
    for error_class, answer in ANSWERS.items():
        app.add_exception_handler(error_class, answer.respond)
