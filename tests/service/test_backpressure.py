"""Backpressure: past GDC_MAX_QUEUED waiting jobs POST /segment answers 429 with Retry-After, and Client waits."""
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from redis import Redis

from gdc.client import ApiError, Client
from service.errors import QUEUE_FULL_RETRY_AFTER, QueueFull
from service.submit import create_job
from tests.service.conftest import FAST
from worker.connection import connect
from worker.keys import Kind, key_for
from worker.queue import Outcome, open_queue, run_if_room


def post(api, files, **headers):
    return api.post("/segment", files=files, data=FAST, headers=headers)


def test_a_full_queue_answers_429_with_retry_after_and_stores_nothing(make_client, upload, redis_url):
    client = make_client(max_queued=2)
    assert [post(client, upload()).status_code for _ in range(2)] == [202, 202]
    refused = post(client, upload())
    assert refused.status_code == 429, refused.text
    assert "the queue is full (2 jobs waiting, GDC_MAX_QUEUED)" in refused.json()["detail"]
    assert refused.headers["retry-after"] == str(QUEUE_FULL_RETRY_AFTER)
    text = client.get("/metrics").text
    assert 'gdc_jobs{state="queued"} 2.0' in text
    assert 'gdc_http_requests_total{method="POST",route="/segment",status="429"} 1.0' in text


def test_a_repeated_idempotency_key_still_names_its_job_when_the_queue_is_full(make_client, upload):
    client = make_client(max_queued=1)
    first = post(client, upload(), **{"Idempotency-Key": "k1"})
    assert first.status_code == 202
    again = post(client, upload(), **{"Idempotency-Key": "k1"})
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    assert post(client, upload(), **{"Idempotency-Key": "k2"}).status_code == 429


def busy_then_accepting(refusals: int):
    """A transport answering 429 ``refusals`` times, then 202; and the list of requests it saw."""
    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) <= refusals:
            return httpx.Response(429, headers={"Retry-After": "0"}, json={"detail": "the queue is full"})
        return httpx.Response(202, json={"id": "job", "status": "queued"})

    return httpx.MockTransport(answer), seen


def client_on(transport: httpx.MockTransport, **kwargs) -> Client:
    client = Client("http://gdc.test", **kwargs)
    client.http = httpx.Client(base_url="http://gdc.test", transport=transport)
    return client


def test_client_waits_and_resends_while_the_server_is_busy():
    transport, seen = busy_then_accepting(3)
    with client_on(transport) as client:
        assert client.submit(b"image", b"scribbles", steps=3) == "job"
    assert len(seen) == 4
    assert all(request.url.path == "/segment" and b"scribbles" in request.content for request in seen)


def test_client_gives_up_on_a_busy_server_after_busy_timeout():
    transport, seen = busy_then_accepting(10)
    with client_on(transport, busy_timeout=0) as client, pytest.raises(ApiError) as refused:
        client.submit(b"image", b"scribbles")
    assert refused.value.status_code == 429 and len(seen) == 1


def test_concurrent_submissions_stop_exactly_at_the_bound_and_store_only_what_is_queued(make_settings, upload):
    settings = make_settings(max_queued=3)
    queue = open_queue(connect(settings), settings.queue)
    files = upload()

    def submit(_) -> str | None:
        try:
            return create_job(queue, settings, image=files["image"][1], scribbles=files["scribbles"][1], strokes=None,
                              options=FAST, callback_url=None, idempotency=None)
        except QueueFull:
            return None

    with ThreadPoolExecutor(8) as pool:
        accepted = [job_id for job_id in pool.map(submit, range(16)) if job_id is not None]
    assert len(accepted) == 3 and sorted(queue.job_ids) == sorted(accepted)
    uploads = queue.connection.keys(key_for(Kind.UPLOAD, "*"))
    assert sorted(key.decode() for key in uploads) == sorted(key_for(Kind.UPLOAD, job_id) for job_id in accepted)


@pytest.mark.parametrize("limit, record, outcome", [(1, None, Outcome.RAN), (0, None, Outcome.FULL),
                                                     (1, b"earlier", Outcome.TAKEN), (0, b"earlier", Outcome.TAKEN)])
def test_commands_run_only_while_the_queue_has_room_and_the_record_is_free(redis_url, limit, record, outcome):
    redis = Redis.from_url(redis_url)
    queue = open_queue(redis, "bounded")
    if record is not None:
        redis.set("the-record", record)
    with redis.pipeline() as commands:
        commands.set("written", 1)
        commands.rpush(queue.key, "a-job")
        assert run_if_room(queue, limit, commands, "the-record") == (outcome, record)
    assert redis.exists("written") == (outcome is Outcome.RAN) == (queue.count == 1)
