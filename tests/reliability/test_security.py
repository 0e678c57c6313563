"""Keys on every route but health and the page; unguessable ids; no private callbacks; no pickle anywhere."""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
from redis import Redis
from rq import Queue
from starlette.routing import Mount, Route

from benchmarks.tiny import QUICK, tiny_upload
from service.app import create_app
from worker.job import new_job_id
from worker.queue import SEGMENT_TASK, open_queue

KEY = "reliability-key"
AN_ID = "00000000deadbeef00000000deadbeef"
# Decided: these hold no data and must load before a user can type a key.
PUBLIC = {"/healthz", "/readyz", "/", "/static", "/favicon.ico"}


def routes(app) -> list[tuple[str, str]]:
    """(method, concrete path) of every route the app serves: its documented ones and its own."""
    found = [(method.upper(), path) for path, operations in app.openapi()["paths"].items() for method in operations]
    for route in app.routes:
        if isinstance(route, Mount):  # one file it serves
            directory = Path(route.app.all_directories[0])
            found.append(("GET", f"{route.path}/{min(path.name for path in directory.iterdir() if path.is_file())}"))
        elif isinstance(route, Route):
            found += [(method, route.path) for method in route.methods - {"HEAD"}]
    return [(method, path.replace("{job_id}", AN_ID)) for method, path in found]


def is_public(path: str) -> bool:
    return path in PUBLIC or path.startswith("/static/")


def test_with_keys_only_health_and_the_page_answer_without_one(make_client, make_settings):
    client = make_client(api_keys=KEY)
    served = routes(create_app(make_settings(api_keys=KEY)))
    guarded = [(method, path) for method, path in served if not is_public(path)]
    assert {"/docs", "/redoc", "/openapi.json", "/metrics", "/options", "/segment", f"/jobs/{AN_ID}/mask"} <= {
        path for _, path in guarded
    }
    for method, path in guarded:
        for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": KEY + "x"}):
            answer = client.request(method, path, headers=headers)
            assert answer.status_code == 401, (method, path, headers, answer.text)
            assert answer.json() == {"detail": "missing or invalid API key"}
        assert client.request(method, path, headers={"X-API-Key": KEY}).status_code != 401, (method, path)
    for method, path in served:
        if is_public(path):
            assert client.request(method, path).status_code in (200, 503), (method, path)  # 503: no worker yet


def test_a_job_is_readable_only_by_whoever_holds_its_id(make_client):
    owner, other = make_client(api_keys=f"{KEY},other-key"), make_client(api_keys=f"{KEY},other-key")
    owner.headers["X-API-Key"], other.headers["X-API-Key"] = KEY, "other-key"
    ids = [owner.post("/segment", files=tiny_upload(seed), data=QUICK).json()["id"] for seed in range(20)]

    assert len(set(ids)) == 20 and all(re.fullmatch(r"[0-9a-f]{32}", job_id) for job_id in ids)  # 128 bits
    for before, after in zip(ids, ids[1:], strict=False):
        assert before[:4] != after[:4], "ids look sequential"
    for path in ("/jobs", "/jobs/", "/metrics", "/readyz", "/options", "/openapi.json"):
        text = other.get(path).text
        assert not any(job_id in text for job_id in ids), f"{path} shows job ids"
    assert other.get(f"/jobs/{new_job_id()}").status_code == 404  # a guess finds nothing
    assert other.get(f"/jobs/{ids[0]}").status_code == 200  # the id is the capability


def test_fresh_ids_do_not_repeat_or_share_structure():
    ids = [new_job_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    bits = "".join(bin(byte)[2:].zfill(8) for job_id in ids for byte in bytes.fromhex(job_id))
    assert abs(bits.count("1") / len(bits) - 0.5) < 0.01  # no fixed bits: all 128 are random


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "127.1",
        "2130706433",  # 127.0.0.1 as one number
        "0x7f000001",
        "0.0.0.0",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "[fd00::1]",
    ],
)
def test_callbacks_to_loopback_or_private_addresses_are_refused(make_client, host):
    url = f"http://{host}:8080/hook"
    refused = make_client().post("/segment", files=tiny_upload(), data={**QUICK, "callback_url": url})
    assert refused.status_code == 422, refused.text
    assert "a loopback or private address; this server does not call those" in refused.json()["detail"]
    allowed = make_client(allow_private_callbacks="true")
    assert allowed.post("/segment", files=tiny_upload(), data={**QUICK, "callback_url": url}).status_code == 202


def _decoded(value: bytes) -> str:
    """What a stored value is; raises AssertionError for anything that is not plain data."""
    if value[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if value[:4] == b"PK\x03\x04":  # a warm start: numpy arrays only, refused if any needs unpickling
        with np.load(io.BytesIO(value), allow_pickle=False) as arrays:
            for name in arrays.files:
                assert arrays[name].dtype != object, name
        return "npz"
    for decode in (lambda v: v, zlib.decompress, base64.b64decode):
        try:
            text = decode(value).decode("utf-8")
        except (zlib.error, binascii.Error, UnicodeDecodeError, ValueError):
            continue
        try:
            json.loads(text)
            return "json"
        except ValueError:
            if text.isprintable() or "Traceback" in text:  # names, timestamps, exception text
                return "text"
    raise AssertionError(f"stored value is neither JSON, text nor PNG: {value[:40]!r}")


def _values(redis: Redis, key: bytes) -> list[bytes]:
    kind = redis.type(key).decode()
    if kind == "string":
        return [redis.get(key)]
    if kind == "hash":
        return list(redis.hgetall(key).values())
    if kind == "list":
        return redis.lrange(key, 0, -1)
    if kind in ("set", "zset"):
        return list(redis.smembers(key) if kind == "set" else redis.zrange(key, 0, -1))
    if kind == "stream":
        return [value for _, entry in redis.xrange(key) for value in entry.values()]
    raise AssertionError(f"unexpected Redis type {kind} at {key!r}")


def test_everything_stored_for_jobs_is_json_text_png_or_plain_arrays(make_client, make_settings, run_queued, redis_url):
    client = make_client(allow_private_callbacks="true", callback_retries=0)
    job_id = client.post("/segment", files=tiny_upload(), data={**QUICK, "callback_url": "http://127.0.0.1:9/"}).json()[
        "id"
    ]
    run_queued(allow_private_callbacks="true", callback_retries=0)  # the job, then its failing callback
    assert client.get(f"/jobs/{job_id}").json()["status"] == "succeeded"
    redis = Redis.from_url(redis_url)
    kinds = {}
    for key in redis.scan_iter():
        for value in _values(redis, key):
            kinds.setdefault(_decoded(value), set()).add(key.decode().split(":")[1])
    assert {"json", "png", "npz"} <= set(kinds), kinds
    stored = redis.hgetall(f"rq:job:{job_id}".encode())
    assert json.loads(zlib.decompress(stored[b"data"]))[0] == SEGMENT_TASK  # the call itself: JSON, by dotted path
    assert json.loads(stored[b"meta"])["classes"] == [1, 2]


class Planted:
    """Unpickling this would create ``marker``: what a pickle on the queue could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickled_job_is_neither_run_nor_read(client, run_queued, redis_url, tmp_path):
    marker = tmp_path / "unpickled"
    job_id = new_job_id()
    pickling = Queue("gdc", connection=Redis.from_url(redis_url))  # RQ's default serializer: pickle
    pickling.enqueue(SEGMENT_TASK, Planted(marker), job_id=job_id)
    run_queued()
    assert not marker.exists(), "the worker unpickled a job"
    queue = open_queue(Redis.from_url(redis_url), "gdc")
    assert queue.failed_job_registry.get_job_ids() == [job_id]  # refused: it could not be read as JSON
    assert client.get(f"/jobs/{job_id}").status_code == 404
    assert not marker.exists(), "the API unpickled a job"
