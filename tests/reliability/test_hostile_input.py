"""Hostile and odd uploads against a live server: each gets its documented answer, and the server stays well.

The corpus and what is accepted are in ``corpus.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.tiny import HEIGHT, QUICK, WIDTH, tiny_image, tiny_upload
from gdc.imageio import encode_png, read_image, read_labels
from tests.reliability.conftest import MAX_UPLOAD_BYTES, final_statuses, submit
from tests.reliability.corpus import Case, animated, grey16, hostile_cases, png_with_damaged_pixels

CASES = hostile_cases(MAX_UPLOAD_BYTES)


@pytest.fixture
def http(keyed_http):
    return keyed_http


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_each_upload_gets_its_documented_answer(http, case):
    answer = http.post("/segment", files=case.files(), data={**QUICK, **case.form()})
    assert answer.status_code == case.status, answer.text
    if case.status != 202:
        assert case.detail in answer.json()["detail"]
        return
    job_id = answer.json()["id"]
    assert final_statuses(http, [job_id], timeout=60) == {job_id: "succeeded"}
    assert read_labels(http.get(f"/jobs/{job_id}/mask").content).shape == (HEIGHT, WIDTH)


def test_damage_only_a_decode_finds_fails_the_job_with_invalid_input(http):
    """The API checks a file's structure, not its pixels: the worker's decode finds the rest and says what."""
    answer = http.post("/segment", files=Case("", 202, image=png_with_damaged_pixels()).files(), data=QUICK)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    assert final_statuses(http, [job_id], timeout=60) == {job_id: "failed"}
    error = http.get(f"/jobs/{job_id}").json()["error"]
    assert error["code"] == "invalid_input" and "not a readable image" in error["message"], error


@pytest.mark.parametrize(
    "path",
    [
        "/jobs/..%2F..%2Fetc%2Fpasswd",
        "/jobs/%2e%2e",
        "/jobs/rq:job:x",
        "/jobs/gdc:upload:x/overlay",
        "/jobs/%00",
        "/jobs/%ff%fe",
        "/jobs/a%0d%0aSet-Cookie:x=1/mask",
        "/jobs/" + "a" * 10_000,
        "/jobs/*",
    ],
)
@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_path_like_job_ids_are_unknown_jobs(http, method, path):
    answer = http.request(method, path)
    assert answer.status_code in (404, 405, 422), answer.text
    assert "set-cookie" not in answer.headers


@pytest.mark.parametrize("format", ["PNG", "WEBP"])
def test_an_animated_image_is_segmented_on_its_first_frame(format):
    np.testing.assert_array_equal(read_image(animated(format)), tiny_image(0))


def test_a_16_bit_image_is_scaled_to_8_bits_not_clipped():
    grey = read_image(encode_png(grey16()))[..., 0].astype(int)
    assert np.abs(grey - (grey16() >> 8)).max() <= 1


def test_a_seed_torch_cannot_take_is_refused_at_the_door(http):
    answer = http.post("/segment", files=tiny_upload(), data={**QUICK, "seed": str(2**64)})
    assert answer.status_code == 422, answer.text


def test_the_server_is_still_well_after_the_corpus(shared_stack, http):
    """Runs after the tests above (pytest keeps file order): same processes, still answering, still working."""
    stack = shared_stack
    assert stack.api.poll() is None and all(worker.poll() is None for worker in stack.workers)
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").status_code == 200
    job_id = submit(http)
    assert final_statuses(http, [job_id], timeout=60) == {job_id: "succeeded"}
