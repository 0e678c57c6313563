"""Backpressure: past GDC_MAX_QUEUED waiting jobs POST /segment answers 429 with Retry-After, and Client waits."""
import httpx
import pytest

from gdc.client import ApiError, Client
from service.errors import QUEUE_FULL_RETRY_AFTER
from tests.service.conftest import FAST


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
