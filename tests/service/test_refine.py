"""Refining a job (``previous``): in one process, each round run by a fresh in-process worker."""
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from redis import Redis
from rq.job import Job

from gdc.imageio import encode_png, read_labels
from service import submit as submit_module
from tests.conftest import REPO, wait_for
from tests.service.conftest import FAST, draw_scribbles
from worker import store
from worker.job import new_job_id
from worker.keys import Kind, key_for
from worker.queue import open_queue

RESULT_FIELDS = ("mask", "probabilities", "uncertainty", "polygons")


def first_strokes(coffee) -> np.ndarray:
    """The coffee scribbles without the table's right-hand rectangle: a first round."""
    scribbles = draw_scribbles(coffee.shape[:2], 2)
    scribbles[50:100, 150:175] = 0
    return scribbles


def png_file(labels: np.ndarray) -> tuple:
    return ("s.png", encode_png(labels), "image/png")


def submit(client, files, data=None) -> str:
    response = client.post("/segment", files=files, data={**FAST, **(data or {})})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def refine(client, previous: str, scribbles: np.ndarray, image: bytes | None = None, **data):
    files = {"scribbles": png_file(scribbles)}
    if image is not None:
        files["image"] = ("coffee.png", image, "image/png")
    return client.post("/segment", files=files, data={"previous": previous, **data})


def first_upload(coffee) -> dict:
    return {"image": ("coffee.png", encode_png(coffee), "image/png"), "scribbles": png_file(first_strokes(coffee))}


def first_round(client, coffee, run_queued) -> str:
    job_id = submit(client, first_upload(coffee))
    run_queued()
    assert client.get(f"/jobs/{job_id}").json()["status"] == "succeeded"
    return job_id


def worker_of(redis_url: str, job_id: str) -> str:
    redis = Redis.from_url(redis_url)
    return Job.fetch(job_id, connection=redis, serializer=open_queue(redis, "gdc").serializer).worker_name


def test_a_refine_starts_warm_on_another_worker(client, coffee, run_queued, redis_url):
    first = first_round(client, coffee, run_queued)
    response = refine(client, first, draw_scribbles(coffee.shape[:2], 2))
    assert response.status_code == 202, response.text
    second = response.json()["id"]
    queued = client.get(f"/jobs/{second}").json()
    assert (queued["previous"], queued["warm"]) == (first, None)
    assert (queued["width"], queued["height"]) == (180, 120)

    run_queued()  # a fresh worker: all it shares with the first is Redis
    job = client.get(f"/jobs/{second}").json()
    assert job["status"] == "succeeded", job
    assert job["warm"] is True and job["previous"] == first
    assert "previous" in job["timings"] and "superpixels" in job["timings"]
    assert worker_of(redis_url, first) != worker_of(redis_url, second)
    # Its own copy of the image: the overlay draws, and its own refine needs no upload.
    assert client.get(f"/jobs/{second}/overlay").status_code == 200
    assert Redis.from_url(redis_url).ttl(key_for(Kind.WARM, second)) > 0
    assert client.get(f"/jobs/{first}").json()["previous"] is None


@pytest.mark.parametrize("kept_megabytes", [256, 0], ids=["kept in memory", "none kept"])
def test_a_refine_on_the_worker_that_ran_its_previous_job_starts_from_its_memory(
    client, coffee, make_settings, redis_url, kept_megabytes
):
    from worker.main import SegmentWorker

    settings = make_settings(recent_megabytes=kept_megabytes)
    redis = Redis.from_url(redis_url)
    worker = SegmentWorker([settings.queue], connection=redis, settings=settings)
    first = submit(client, first_upload(coffee))
    worker.work(burst=True)
    response = refine(client, first, draw_scribbles(coffee.shape[:2], 2))
    assert response.status_code == 202, response.text
    redis.delete(key_for(Kind.WARM, first))  # gone from Redis once the refine was accepted: only memory has it
    worker.work(burst=True)

    job = client.get(f"/jobs/{response.json()['id']}").json()
    assert job["status"] == "succeeded", job
    assert job["warm"] is bool(kept_megabytes)
    assert worker_of(redis_url, first) == worker_of(redis_url, job["id"])


def test_a_refine_keeps_the_previous_options_unless_it_sets_them(client, coffee, run_queued, redis_url):
    first = first_round(client, coffee, run_queued)
    kept = refine(client, first, draw_scribbles(coffee.shape[:2], 2)).json()["id"]
    changed = refine(client, first, draw_scribbles(coffee.shape[:2], 2), samples=3).json()["id"]
    redis = Redis.from_url(redis_url)
    queue = open_queue(redis, "gdc")

    def options(job_id):
        return Job.fetch(job_id, connection=redis, serializer=queue.serializer).kwargs["options"]

    assert options(kept) == options(first)
    assert options(changed) == {**options(first), "samples": 3}


def test_a_chain_of_three_rounds(client, coffee, run_queued):
    scribbles = draw_scribbles(coffee.shape[:2], 2)
    previous = first_round(client, coffee, run_queued)
    for round_strokes in (scribbles, np.where(scribbles == 0, draw_scribbles(coffee.shape[:2], 3), scribbles)):
        response = refine(client, previous, round_strokes.astype(np.uint8))
        assert response.status_code == 202, response.text
        run_queued()
        job = client.get(f"/jobs/{response.json()['id']}").json()
        assert job["status"] == "succeeded" and job["warm"] is True and job["previous"] == previous
        previous = job["id"]
    assert job["classes"] == [1, 2, 3]


def test_a_refine_never_changes_the_previous_results(client, coffee, run_queued, redis_url):
    first = first_round(client, coffee, run_queued)
    redis = Redis.from_url(redis_url)

    def stored():
        return (
            [store.load_result(redis, first, field) for field in RESULT_FIELDS],
            store.load_warm_start(redis, first),
            store.load_image(redis, first),
            client.get(f"/jobs/{first}").json()["timings"],
        )

    before = stored()
    refine(client, first, draw_scribbles(coffee.shape[:2], 3))
    run_queued()
    assert stored() == before


def test_previous_expired_without_the_image_names_it(client, coffee, run_queued, redis_url):
    unknown = new_job_id()
    response = refine(client, unknown, draw_scribbles(coffee.shape[:2], 2))
    assert response.status_code == 410
    assert unknown in response.json()["detail"] and "send the image" in response.json()["detail"]

    deleted = first_round(client, coffee, run_queued)
    assert client.delete(f"/jobs/{deleted}").status_code == 200
    response = refine(client, deleted, draw_scribbles(coffee.shape[:2], 2))
    assert response.status_code == 410 and deleted in response.json()["detail"]


def test_previous_expired_with_the_image_runs_cold(client, make_client, coffee, run_queued):
    short_lived = make_client(result_ttl=1)
    files = {"image": ("coffee.png", encode_png(coffee), "image/png"), "scribbles": png_file(first_strokes(coffee))}
    first = submit(short_lived, files)
    run_queued(result_ttl=1)
    time.sleep(1.5)
    assert client.get(f"/jobs/{first}").status_code == 404
    response = refine(client, first, draw_scribbles(coffee.shape[:2], 2), image=encode_png(coffee))
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    assert client.get(f"/jobs/{job_id}").json()["warm"] is False
    run_queued()
    job = client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["warm"] is False and job["previous"] == first


def test_previous_expiring_while_the_refine_waits_runs_it_cold(client, coffee, run_queued, redis_url):
    first = first_round(client, coffee, run_queued)
    job_id = refine(client, first, draw_scribbles(coffee.shape[:2], 2)).json()["id"]
    Redis.from_url(redis_url).delete(key_for(Kind.WARM, first))
    run_queued()
    job = client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["warm"] is False


def test_the_same_image_may_be_sent_again_in_another_file(client, coffee, run_queued):
    import io

    from PIL import Image

    first = first_round(client, coffee, run_queued)
    bmp = io.BytesIO()
    Image.fromarray(coffee).save(bmp, format="BMP")
    response = refine(client, first, draw_scribbles(coffee.shape[:2], 2), image=bmp.getvalue())
    assert response.status_code == 202, response.text
    run_queued()
    assert client.get(f"/jobs/{response.json()['id']}").json()["warm"] is True


@pytest.mark.parametrize(
    "other,message",
    [
        (lambda coffee: coffee[:100], "image is 180x100 but previous job"),
        (lambda coffee: coffee[:, ::-1], "image differs from the image of previous job"),
    ],
    ids=["size", "pixels"],
)
def test_a_mismatched_image_is_refused(client, coffee, run_queued, other, message):
    first = first_round(client, coffee, run_queued)
    response = refine(client, first, draw_scribbles(coffee.shape[:2], 2), image=encode_png(np.ascontiguousarray(other(coffee))))
    assert response.status_code == 422
    assert message in response.json()["detail"] and first in response.json()["detail"]


def test_a_refine_of_a_job_still_queued_waits_for_it(client, coffee):
    queued = submit(client, first_upload(coffee))
    response = refine(client, queued, draw_scribbles(coffee.shape[:2], 2))
    assert response.status_code == 409 and f"previous job {queued} is queued" in response.json()["detail"]


def test_a_refine_of_the_stored_image_does_not_decode_it_again(client, coffee, run_queued, monkeypatch):
    first = first_round(client, coffee, run_queued)
    decoded = []
    monkeypatch.setattr(submit_module, "image_size", lambda *args: decoded.append(args))
    response = refine(client, first, draw_scribbles(coffee.shape[:2], 2))
    assert response.status_code == 202, response.text
    assert decoded == []  # its size came from the previous job
    response = refine(client, first, draw_scribbles((100, 180), 2))
    assert response.status_code == 422 and "scribbles are 180x100 but the image is 180x120" in response.json()["detail"]


def test_refine_requests_the_api_refuses(client, coffee, run_queued):
    response = refine(client, "not-an-id", draw_scribbles(coffee.shape[:2], 2))
    assert response.status_code == 422 and "previous" in response.json()["detail"]
    first = first_round(client, coffee, run_queued)
    response = refine(client, first, draw_scribbles((100, 180), 2))
    assert response.status_code == 422 and "scribbles are 180x100 but the image is 180x120" in response.json()["detail"]
    response = client.post("/segment", files={"scribbles": png_file(draw_scribbles(coffee.shape[:2], 2))})
    assert response.status_code == 422 and "'previous'" in response.json()["detail"]


def test_cancel_during_a_refine(client, coffee, run_queued, redis_url):
    first = first_round(client, coffee, run_queued)
    job_id = refine(client, first, draw_scribbles(coffee.shape[:2], 2), refine_steps=500, refine_stop_loss=0).json()["id"]
    answers = []

    def cancel_once_training() -> None:
        wait_for(lambda: client.get(f"/jobs/{job_id}").json()["progress"]["phase"] == "optimise", 120, "the refine")
        answers.append(client.delete(f"/jobs/{job_id}").json()["status"])

    canceller = threading.Thread(target=cancel_once_training)
    canceller.start()
    run_queued()  # returns once the job stopped, long before 500 steps (RQ's worker wants the main thread)
    canceller.join(10)
    assert answers == ["canceled"]
    job = client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "canceled" and job["error"] is None
    redis = Redis.from_url(redis_url)
    assert not store.has_warm_start(redis, job_id)
    # The job it refined is untouched and can be refined again.
    assert store.has_warm_start(redis, first) and client.get(f"/jobs/{first}/mask").status_code == 200
    assert refine(client, first, draw_scribbles(coffee.shape[:2], 2)).status_code == 202


def test_python_client_and_gdc_submit_refine(live, coffee, tmp_path):
    from gdc.client import ApiError, Client

    with Client(live.url) as client:
        first = client.submit(coffee, first_strokes(coffee), **FAST)
        client.wait(first, timeout=120)
        second = client.refine(first, draw_scribbles(coffee.shape[:2], 2))
        job = client.wait(second, timeout=120)
        assert job["previous"] == first and job["warm"] is True
        assert client.mask(second).shape == (120, 180)
        with pytest.raises(ApiError, match="410"):
            client.refine(new_job_id(), draw_scribbles(coffee.shape[:2], 2))

    image, scribbles, output = tmp_path / "coffee.png", tmp_path / "s.png", tmp_path / "out.png"
    image.write_bytes(encode_png(coffee))
    scribbles.write_bytes(encode_png(draw_scribbles(coffee.shape[:2], 3)))
    # With the image too: should the short-lived stack's job have expired meanwhile, it runs cold.
    command = [sys.executable, "-m", "apps.cli", "submit", str(image), str(scribbles), "--previous", second]
    done = subprocess.run(
        command + ["--server", live.url, "-o", str(output)], cwd=REPO, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    assert f"refining {second}" in done.stdout or "from scratch" in done.stdout
    assert read_labels(output.read_bytes()).shape == (120, 180)
    alone = subprocess.run(
        [sys.executable, "-m", "apps.cli", "submit", str(scribbles), "--server", live.url, "-o", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert alone.returncode == 2 and "--previous JOB" in alone.stderr
