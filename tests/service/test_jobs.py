"""The job path in one process: the app enqueues, ``SegmentWorker.work(burst=True)`` runs it."""
import io
import json
import threading
import time

import numpy as np
import pytest
from PIL import Image
from redis import Redis
from rq.job import Job, JobStatus

from gdc.imageio import encode_png, overlay, read_image, read_labels
from gdc.options import request_options
from service.settings import Settings
from tests.service.conftest import FAST, SLOW
from tests.service.test_store import even_odd_fill, rle_decode
from worker import store
from worker.job import new_job_id
from worker.keys import Kind, key_for
from worker.meta import JobMeta
from worker.queue import enqueue_segment, open_queue
from worker.tasks import ProgressWriter

ENGINE_PHASES = {"superpixels", "features", "optimise", "sample", "upsample", "edges"}


def submit(client, files, data=FAST, **kwargs) -> str:
    response = client.post("/segment", files=files, data=data, **kwargs)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/jobs/{response.json()['id']}"
    return response.json()["id"]


def png(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def test_a_job_runs_and_every_result_reads_back(client, upload, run_queued, coffee, redis_url):
    job_id = submit(client, upload(2))
    queued = client.get(f"/jobs/{job_id}").json()
    assert queued["status"] == "queued" and queued["position"] == 0
    assert queued["progress"] == {"phase": "queued", "step": 0, "total": 0, "fraction": 0.0}
    assert (queued["width"], queued["height"], queued["classes"]) == (180, 120, [1, 2])

    run_queued()
    job = client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "succeeded", job
    assert job["error"] is None and job["position"] is None
    assert job["progress"]["fraction"] == 1.0 and job["progress"]["phase"] in ENGINE_PHASES
    assert ENGINE_PHASES <= set(job["timings"])
    assert job["created_at"] <= job["started_at"] <= job["ended_at"]

    mask = png(client.get(f"/jobs/{job_id}/mask"))
    assert mask.shape == (120, 180) and set(np.unique(mask)) <= {1, 2}

    rle = client.get(f"/jobs/{job_id}/mask", params={"format": "rle"}).json()
    assert (rle["width"], rle["height"]) == (180, 120)
    for item in rle["classes"]:
        np.testing.assert_array_equal(rle_decode(item), mask == item["class"])

    polygons = client.get(f"/jobs/{job_id}/mask", params={"format": "polygons"}).json()
    for item in polygons["classes"]:
        filled, truth = even_odd_fill(item["polygons"], mask.shape), mask == item["class"]
        if truth.any():
            assert (filled & truth).sum() / (filled | truth).sum() > 0.9

    np.testing.assert_array_equal(png(client.get(f"/jobs/{job_id}/overlay")), overlay(coffee, mask))

    response = client.get(f"/jobs/{job_id}/probabilities")
    bands = png(response).reshape(2, 120, 180)
    assert response.headers["x-classes"] == "1,2"
    winners = np.array([1, 2])[bands.argmax(0)]
    assert (winners == mask).mean() > 0.99  # ties after rounding to uint8 may differ
    assert np.abs(bands.astype(int).sum(0) - 255).max() <= 1

    assert png(client.get(f"/jobs/{job_id}/uncertainty")).shape == (120, 180)

    redis = Redis.from_url(redis_url)
    rq_job = Job.fetch(job_id, connection=redis, serializer=open_queue(redis, "gdc").serializer)
    assert rq_job.kwargs["upload"] == key_for(Kind.UPLOAD, job_id)  # arguments carry the key, not pixels
    assert set(rq_job.kwargs["options"]) == set(request_options())  # each one a request may set, defaults filled
    for kind in (Kind.UPLOAD, Kind.RESULT):
        assert 0 < redis.ttl(key_for(kind, job_id)) <= Settings().result_ttl
    assert all(key.startswith((b"gdc:", b"rq:")) for key in redis.keys("*"))

    deleted = client.delete(f"/jobs/{job_id}")  # an ended job is removed with its data
    assert deleted.status_code == 200 and deleted.json()["status"] == "succeeded"
    assert client.get(f"/jobs/{job_id}").status_code == 404
    assert not redis.keys(f"gdc:*{job_id}*")


def test_strokes_become_the_scribbles(client, upload, redis_url):
    strokes = json.dumps([
        {"label": 4, "points": [[75, 40], [100, 42]], "width": 8},
        {"label": 9, "points": [[10, 10], [30, 20]], "width": 8},
    ])
    job_id = submit(client, {"image": upload()["image"]}, {**FAST, "strokes": strokes})
    assert client.get(f"/jobs/{job_id}").json()["classes"] == [4, 9]
    stored = Redis.from_url(redis_url).hget(key_for(Kind.UPLOAD, job_id), "scribbles")
    labels = read_labels(stored)
    assert labels.shape == (120, 180) and labels[41, 90] == 4 and labels[15, 20] == 9


def test_progress_is_written_per_phase_and_throttled(redis_url):
    redis = Redis.from_url(redis_url)
    job = open_queue(redis, "gdc").enqueue_call("worker.tasks.run_segment", kwargs={})
    progress = ProgressWriter(job, interval=60)

    def stored() -> dict:
        return Job.fetch(job.id, connection=redis, serializer=job.serializer).meta["progress"]

    progress("optimise", 0, 10)
    progress("optimise", 1, 10)  # within the interval: not written
    assert stored() == {"phase": "optimise", "step": 0, "total": 10}
    progress("optimise", 10, 10)  # a phase's last step always is
    assert stored()["step"] == 10
    progress("sample", 0, 2)  # and so is a new phase
    assert stored()["phase"] == "sample"


def test_same_idempotency_key_and_body_is_the_same_job(client, upload, redis_url):
    key = {"Idempotency-Key": "batch-42"}
    first = submit(client, upload(2), headers=key)
    assert submit(client, upload(2), headers=key) == first
    assert submit(client, upload(2)) != first  # no key: a new job
    assert submit(client, upload(2), headers={**key, "X-API-Key": "other tenant"}) != first
    assert open_queue(Redis.from_url(redis_url), "gdc").count == 3


def test_a_job_taken_before_its_workers_first_report_reads_starting(client, upload, redis_url):
    """RQ marks the job started, then the worker's task writes its first progress: polls in between."""
    job_id = submit(client, upload(2))
    open_queue(Redis.from_url(redis_url), "gdc").fetch_job(job_id).set_status(JobStatus.STARTED)
    running = client.get(f"/jobs/{job_id}").json()
    assert running["status"] == "running" and running["progress"]["phase"] == "starting"


def test_a_queued_job_reads_its_place_and_a_canceled_one_none(client, upload, redis_url):
    first, second = submit(client, upload(2)), submit(client, upload(2))
    assert [client.get(f"/jobs/{job_id}").json()["position"] for job_id in (first, second)] == [0, 1]
    Redis.from_url(redis_url).set(key_for(Kind.CANCEL, second), 1)  # a cancel request the worker has not seen yet
    canceled = client.get(f"/jobs/{second}").json()
    assert (canceled["status"], canceled["position"]) == ("canceled", None)


def test_cancel_a_queued_job(client, upload, run_queued, redis_url):
    job_id = submit(client, upload(2))
    canceled = client.delete(f"/jobs/{job_id}")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert not Redis.from_url(redis_url).exists(key_for(Kind.UPLOAD, job_id))
    run_queued()
    job = client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "canceled" and job["error"] is None
    assert client.get(f"/jobs/{job_id}/mask").status_code == 409


def test_results_expire_after_the_result_ttl(make_client, upload, run_queued):
    client = make_client(result_ttl=3)
    job_id = submit(client, upload(2))
    read = []  # (when, status) of the mask read as soon as the job succeeded

    def read_once_succeeded() -> None:  # beside the worker: its teardown, on a loaded machine, can outlast the TTL
        deadline = time.monotonic() + 60
        while client.get(f"/jobs/{job_id}").json()["status"] != "succeeded" and time.monotonic() < deadline:
            time.sleep(0.05)
        read.append((time.monotonic(), client.get(f"/jobs/{job_id}/mask").status_code))

    reader = threading.Thread(target=read_once_succeeded, daemon=True)
    reader.start()
    run_queued(result_ttl=3)
    reader.join(60)
    ((read_at, status),) = read
    assert status == 200
    time.sleep(max(0.0, read_at + 3.5 - time.monotonic()))
    assert client.get(f"/jobs/{job_id}").status_code == 404
    assert client.get(f"/jobs/{job_id}/mask").status_code == 404


def test_each_job_adds_its_wait_and_run_to_the_metrics_histograms(client, upload, run_queued):
    from prometheus_client.parser import text_string_to_metric_families

    for _ in range(2):
        submit(client, upload(2))
    run_queued()
    families = {family.name: family for family in text_string_to_metric_families(client.get("/metrics").text)}
    for name, labels in (("gdc_job_wait_seconds", {}), ("gdc_job_duration_seconds", {"status": "succeeded"})):
        assert families[name].type == "histogram"
        samples = {(sample.name, sample.labels.get("le")): sample.value
                   for sample in families[name].samples if sample.labels.items() >= labels.items()}
        buckets = [value for (sample, le), value in samples.items() if sample == f"{name}_bucket"]
        assert buckets == sorted(buckets) and buckets[-1] == samples[(f"{name}_count", None)] == 2
        assert samples[(f"{name}_sum", None)] > 0


def test_an_input_the_engine_refuses_fails_the_job_with_its_message(client, make_settings, run_queued):
    tiny = np.zeros((6, 6, 3), np.uint8)
    scribbles = np.zeros((6, 6), np.uint8)
    scribbles[0, 0], scribbles[5, 5] = 1, 2
    files = {"image": ("t.png", encode_png(tiny)), "scribbles": ("s.png", encode_png(scribbles))}
    refused = client.post("/segment", files=files, data=FAST)
    assert refused.status_code == 422 and "at least 8 pixels" in refused.json()["detail"]
    # Enqueued around the API's checks, the job still ends failed in the engine's words.
    settings = make_settings()
    queue = open_queue(Redis.from_url(settings.redis_url), settings.queue)
    meta = JobMeta(width=6, height=6, classes=[1, 2])
    job_id = new_job_id()
    with queue.connection.pipeline() as pipeline:
        pipeline.multi()
        enqueue_segment(pipeline, queue, settings, job_id=job_id, image=encode_png(tiny),
                        scribbles_png=encode_png(scribbles), options=FAST, meta=meta)
        pipeline.execute()
    run_queued()
    job = client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "failed"
    assert job["error"]["code"] == "invalid_input" and "at least 8 pixels" in job["error"]["message"]
    response = client.get(f"/jobs/{job_id}/mask")
    assert response.status_code == 409 and "is failed" in response.json()["detail"]


def test_a_job_over_its_timeout_fails_as_such(make_client, upload, run_queued):
    client = make_client(job_timeout=1)
    job_id = submit(client, upload(2), SLOW)
    run_queued()
    job = client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "failed"
    assert job["error"] == {"code": "timeout", "message": "the job ran longer than its 1 s limit"}


def test_wait_returns_202_when_the_job_is_still_queued(client, upload):
    started = time.monotonic()
    response = client.post("/segment", files=upload(2), data=FAST, params={"wait": 0.5})
    assert response.status_code == 202 and response.json()["status"] == "queued"
    assert 0.5 <= time.monotonic() - started < 5


def test_exif_orientation_is_applied(client, coffee):
    """A photo stored sideways with an EXIF rotation is segmented as it is shown."""
    sideways = Image.fromarray(np.rot90(coffee).copy())  # stored 120 wide, 180 high
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    sideways.save(buffer, format="JPEG", exif=exif)
    assert read_image(buffer.getvalue()).shape == coffee.shape
    scribbles = np.zeros(coffee.shape[:2], np.uint8)
    scribbles[35:48, 70:105], scribbles[5:25, 5:35] = 1, 2
    job_id = submit(client, {"image": ("p.jpg", buffer.getvalue()), "scribbles": ("s.png", encode_png(scribbles))})
    job = client.get(f"/jobs/{job_id}").json()  # the scribbles matched the displayed size
    assert (job["width"], job["height"]) == (180, 120)


def _waited(client, path: str, seconds: float = 30):
    """GET ``path?wait=seconds`` on a thread: (future response, its start time)."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1)
    started = time.monotonic()
    future = pool.submit(client.get, path, params={"wait": seconds})
    pool.shutdown(wait=False)
    return future, started


@pytest.mark.parametrize("result", ["", "/mask"])
def test_a_waiting_request_answers_as_the_job_ends(client, upload, run_queued, result):
    job_id = submit(client, upload(2))
    waiting, started = _waited(client, f"/jobs/{job_id}{result}")
    time.sleep(0.3)
    assert not waiting.done()  # held while the job is queued
    run_queued()
    ended = time.monotonic()
    answer = waiting.result(timeout=30)
    assert time.monotonic() - started < 30 and time.monotonic() - ended < 2  # woken by the end, not the deadline
    if result:
        assert png(answer).shape == (120, 180)
        phases = dict(part.split(";dur=") for part in answer.headers["server-timing"].split(", "))
        assert ENGINE_PHASES <= set(phases) and all(float(ms) >= 0 for ms in phases.values())
    else:
        assert answer.json()["status"] == "succeeded" and answer.json()["progress"]["fraction"] == 1.0


def test_the_mask_comes_while_the_rest_of_the_result_encodes(client, upload, run_queued, monkeypatch):
    """The mask is stored first: a waiting request gets it, and the job can be refined, while the job still
    encodes its other results; those wait for the job's end."""
    job_id = submit(client, upload(2))
    waiting, _ = _waited(client, f"/jobs/{job_id}/mask")
    seen = {}
    encode_details = store.encode_details

    def while_encoding(*args):
        if not seen:  # the first job's; the refine below runs through here too
            seen["waiter"] = waiting.result(timeout=10)
            seen["status"] = client.get(f"/jobs/{job_id}").json()["status"]
            seen["probabilities"] = client.get(f"/jobs/{job_id}/probabilities").status_code
            seen["polygons"] = client.get(f"/jobs/{job_id}/mask", params={"format": "polygons"}).status_code
            strokes = {"scribbles": upload(2)["scribbles"]}
            seen["refine"] = client.post("/segment", files=strokes, data={"previous": job_id})
        return encode_details(*args)

    monkeypatch.setattr(store, "encode_details", while_encoding)
    run_queued()
    assert (seen["status"], seen["probabilities"], seen["polygons"]) == ("running", 409, 409)
    assert png(seen["waiter"]).shape == (120, 180)
    phases = {part.split(";dur=")[0] for part in seen["waiter"].headers["server-timing"].split(", ")}
    assert ENGINE_PHASES | {"encode"} <= phases and "details" not in phases  # the timings up to the mask
    job = client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and "details" in job["timings"]
    assert client.get(f"/jobs/{job_id}/mask").content == seen["waiter"].content
    assert client.get(f"/jobs/{job_id}/probabilities").status_code == 200
    assert seen["refine"].status_code == 202, seen["refine"].text
    refined = client.get(f"/jobs/{seen['refine'].json()['id']}").json()
    assert refined["status"] == "succeeded" and refined["warm"] is True


def test_an_annotation_tool_gets_its_labels_while_the_rest_of_the_result_encodes(
    make_settings, redis_url, coffee, run_queued, monkeypatch
):
    """Label Studio's and CVAT's routes wait on the job's mask, not its end."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from service.interactive import segment_and_wait
    from tests.service.conftest import draw_scribbles

    settings = make_settings(max_steps=3, max_samples=2)  # the tools send no options: capped defaults
    queue = open_queue(Redis.from_url(redis_url), settings.queue)
    scribbles = draw_scribbles(coffee.shape[:2], 2)
    pool = ThreadPoolExecutor(1)
    waiting = pool.submit(asyncio.run, segment_and_wait(queue, settings, encode_png(coffee), scribbles))
    pool.shutdown(wait=False)
    while not queue.count:
        time.sleep(0.05)
    seen = {}
    encode_details = store.encode_details

    def while_encoding(*args):
        seen["labels"] = waiting.result(timeout=10)
        seen["status"] = queue.fetch_job(seen["labels"][0]).get_status()
        return encode_details(*args)

    monkeypatch.setattr(store, "encode_details", while_encoding)
    run_queued()
    job_id, labels = seen["labels"]
    assert seen["status"] == JobStatus.STARTED
    assert labels.shape == coffee.shape[:2] and set(np.unique(labels)) <= {1, 2}
    np.testing.assert_array_equal(labels, read_labels(store.load_result(queue.connection, job_id, "mask")))


def test_a_waiting_mask_request_ends_when_its_queued_job_is_canceled(client, upload):
    job_id = submit(client, upload(2))
    waiting, started = _waited(client, f"/jobs/{job_id}/mask")
    time.sleep(0.3)
    assert client.delete(f"/jobs/{job_id}").json()["status"] == "canceled"
    answer = waiting.result(timeout=30)
    assert answer.status_code == 409 and "is canceled" in answer.json()["detail"]
    assert time.monotonic() - started < 5


def test_wait_on_a_job_is_bounded(client, upload):
    job_id = submit(client, upload(2))
    started = time.monotonic()
    answer = client.get(f"/jobs/{job_id}/mask", params={"wait": 0.6})
    assert answer.status_code == 409 and "is queued" in answer.json()["detail"]
    assert 0.6 <= time.monotonic() - started < 5
    assert client.get(f"/jobs/{job_id}", params={"wait": 61}).status_code == 422
