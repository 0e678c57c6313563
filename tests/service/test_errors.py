"""Errors are named once in service.errors and mapped to HTTP there: each class answers its status and detail."""
from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, RedisError

from gdc.errors import InputError
from service import errors
from service.errors import (
    ANSWERS,
    QUEUE_FULL_RETRY_AFTER,
    STORE_RETRY_AFTER,
    ApiKeyRefused,
    IdempotencyConflict,
    ImageFetchFailed,
    JobNotFound,
    JobNotReady,
    NoLiveWorker,
    PreviousGone,
    QueueFull,
    ResultUnavailable,
    UploadTooLarge,
    WaitTimedOut,
    install_error_handlers,
)

SERVICE = Path(errors.__file__).parent


def answer_to(error: Exception):
    """What an app with the service's error handlers answers to a route raising ``error``."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/")
    def fail():
        raise error

    with TestClient(app) as client:
        return client.get("/")


@pytest.mark.parametrize(
    "error_class, status",
    [
        (ApiKeyRefused, 401),
        (JobNotFound, 404),
        (JobNotReady, 409),
        (PreviousGone, 410),
        (UploadTooLarge, 413),
        (InputError, 422),
        (IdempotencyConflict, 422),
        (ImageFetchFailed, 502),
        (NoLiveWorker, 503),
        (ResultUnavailable, 503),
        (WaitTimedOut, 504),
    ],
)
def test_each_error_answers_its_status_and_its_message_as_detail(error_class, status):
    answer = answer_to(error_class("what went wrong, in a sentence"))
    assert answer.status_code == status
    assert answer.json() == {"detail": "what went wrong, in a sentence"}
    assert "retry-after" not in answer.headers


@pytest.mark.parametrize(
    "error, status, detail, retry_after",
    [
        (QueueFull("the queue is full"), 429, "the queue is full", QUEUE_FULL_RETRY_AFTER),
        (
            RedisConnectionError("refused"), 503, "the job store (Redis) is unreachable (refused); try again shortly",
            STORE_RETRY_AFTER,
        ),
        (
            OutOfMemoryError("OOM"), 503,
            "the job store (Redis) is full, so nothing new can be stored; try again once results expire",
            STORE_RETRY_AFTER,
        ),
        (RedisError("odd"), 503, "the job store (Redis) failed: odd", STORE_RETRY_AFTER),
    ],
)
def test_a_refusal_to_send_again_later_says_when(error, status, detail, retry_after):
    answer = answer_to(error)
    assert answer.status_code == status
    assert answer.json() == {"detail": detail}
    assert answer.headers["retry-after"] == str(retry_after)


def test_every_error_the_module_names_has_an_answer():
    named = {value for value in vars(errors).values() if inspect.isclass(value) and issubclass(value, Exception)}
    own = {error for error in named if error.__module__ == errors.__name__}
    assert own and own <= set(ANSWERS)


def test_only_a_route_raises_http_exception():
    """Logic below the routes raises service.errors; the HTTP status is chosen in that one module."""
    routes = {SERVICE / "app.py", *(SERVICE / "routes").glob("*.py")}
    raising = sorted(
        str(path.relative_to(SERVICE))
        for path in SERVICE.rglob("*.py")
        if path not in routes and "HTTPException" in path.read_text()
    )
    assert not raising
