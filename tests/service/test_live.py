"""Against a real uvicorn server, the embedded Redis and ``gdc worker`` processes."""
import json
import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest
from redis import Redis

from gdc.client import Client, JobFailed
from gdc.imageio import encode_png, read_labels
from tests.conftest import REPO, free_port, wait_for
from tests.service.conftest import CALLBACK_SECRET, FAST, MULTI, SLOW, WATCHED
from worker.callbacks import verify_signature
from worker.queue import open_queue

ENGINE_PHASES = {"superpixels", "features", "optimise", "sample", "edges"}
RUNNING_PHASES = ENGINE_PHASES | {"starting"}


@pytest.fixture
def http(live):
    with httpx.Client(base_url=live.url, timeout=70) as client:
        yield client


def status(http, job_id: str) -> dict:
    return http.get(f"/jobs/{job_id}").json()


def wait_until_running(http, job_id: str) -> dict:
    return wait_for(
        lambda: (job := status(http, job_id))["status"] == "running" and job["progress"]["phase"] == "optimise" and job,
        60,
        "the job to be optimising",
    )


def test_submit_follow_progress_and_fetch_the_mask(http, upload):
    response = http.post("/segment", files=upload(2), data=WATCHED)
    assert response.status_code == 202
    job_id = response.json()["id"]
    seen = []

    def ended():
        job = status(http, job_id)
        seen.append((job["status"], job["progress"]["phase"]))
        return job["status"] in ("succeeded", "failed", "canceled") and job

    job = wait_for(ended, 60, "the job to end", every=0.05)
    assert job["status"] == "succeeded", job
    assert {phase for state, phase in seen if state == "running"} & ENGINE_PHASES, seen
    mask = read_labels(http.get(f"/jobs/{job_id}/mask").content)
    assert mask.shape == (120, 180) and set(np.unique(mask)) <= {1, 2}


def test_three_classes_with_wait(http, upload):
    response = http.post("/segment", files=upload(3), data=MULTI, params={"wait": 60})
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "succeeded" and job["classes"] == [1, 2, 3]
    assert response.headers["location"] == f"/jobs/{job['id']}"
    mask = read_labels(http.get(job["links"]["mask"]).content)
    assert set(np.unique(mask)) == {1, 2, 3}
    assert http.get(job["links"]["probabilities"]).headers["x-classes"] == "1,2,3"


def test_strokes_json(http, upload):
    strokes = [
        {"label": 1, "points": [[72, 40], [100, 42], [90, 46]], "width": 6},
        {"label": 2, "points": [[8, 8], [30, 20]], "width": 10},
        {"label": 2, "points": [[165, 60], [165, 95]], "width": 10},
    ]
    response = http.post(
        "/segment",
        files={"image": upload()["image"]},
        data={**FAST, "strokes": json.dumps(strokes)},
        params={"wait": 60},
    )
    assert response.status_code == 200 and response.json()["classes"] == [1, 2]
    assert set(np.unique(read_labels(http.get(response.json()["links"]["mask"]).content))) <= {1, 2}


def test_idempotency_key_runs_the_job_once(http, upload, live):
    key = {"Idempotency-Key": "live-once"}
    first = http.post("/segment", files=upload(2), data=FAST, headers=key, params={"wait": 60})
    again = http.post("/segment", files=upload(2), data=FAST, headers=key, params={"wait": 60})
    assert first.status_code == again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    assert first.json()["started_at"] == again.json()["started_at"]  # not run a second time
    other = http.post("/segment", files=upload(3), data=FAST, headers=key)
    assert other.status_code == 422 and "already used with a different request" in other.json()["detail"]
    finished = open_queue(Redis.from_url(live.redis_url), "gdc").finished_job_registry.get_job_ids()
    assert finished.count(first.json()["id"]) == 1


def test_cancel_a_running_job_frees_the_worker(http, upload):
    job_id = http.post("/segment", files=upload(2), data=SLOW).json()["id"]
    wait_until_running(http, job_id)
    canceled = http.delete(f"/jobs/{job_id}")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    # The worker stops at the engine's next step: a new job gets done long before 500 steps would.
    quick = http.post("/segment", files=upload(2), data=FAST, params={"wait": 60})
    assert quick.status_code == 200 and quick.json()["status"] == "succeeded"
    job = status(http, job_id)
    assert job["status"] == "canceled" and job["error"] is None
    assert http.get(f"/jobs/{job_id}/mask").status_code == 409


def test_results_expire(http, upload):
    job = http.post("/segment", files=upload(2), data=FAST, params={"wait": 60}).json()
    assert http.get(job["links"]["mask"]).status_code == 200
    wait_for(
        lambda: http.get(job["links"]["self"]).status_code == 404, 15, "the job to expire (GDC_RESULT_TTL=6)", every=0.5
    )
    assert http.get(job["links"]["mask"]).status_code == 404


class Receiver:
    """A local callback endpoint that fails its first ``failures`` calls."""

    def __init__(self, failures: int) -> None:
        self.calls: list = []  # (headers, body)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append((self.headers, body))
                self.send_response(500 if len(receiver.calls) <= failures else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_callback_is_retried_and_signed(http, upload):
    receiver = Receiver(failures=1)
    try:
        job_id = http.post("/segment", files=upload(2), data={**FAST, "callback_url": receiver.url}).json()["id"]
        wait_for(lambda: len(receiver.calls) >= 2, 60, "the callback to be retried after a 500")
    finally:
        receiver.close()
    for headers, body in receiver.calls:
        assert verify_signature(body, headers, CALLBACK_SECRET)
        assert not verify_signature(body + b" ", headers, CALLBACK_SECRET)
        job = json.loads(body)
        assert job["id"] == job_id and job["status"] == "succeeded"
        assert job["links"]["mask"] == f"/jobs/{job_id}/mask"


def test_python_client(live, coffee):
    from tests.service.conftest import draw_scribbles

    progress = []
    with Client(live.url) as client:
        job_id = client.submit(coffee, draw_scribbles(coffee.shape[:2], 2), **WATCHED)
        job = client.wait(job_id, timeout=60, on_progress=lambda *report: progress.append(report), poll=0.05)
        assert job["status"] == "succeeded"
        mask = client.mask(job_id)
        assert mask.shape == (120, 180)
        classes, probabilities = client.probabilities(job_id)
        assert classes == [1, 2] and probabilities.shape == (2, 120, 180)
        assert (np.array(classes)[probabilities.argmax(0)] == mask).mean() > 0.99
        assert client.result(job_id, "overlay")[:8] == b"\x89PNG\r\n\x1a\n"
        assert progress and all(phase in RUNNING_PHASES and 0 <= step <= total for phase, step, total in progress)

        slow = client.submit(coffee, draw_scribbles(coffee.shape[:2], 2), **SLOW)
        assert client.cancel(slow)["status"] == "canceled"
        with pytest.raises(JobFailed, match="canceled"):
            client.wait(slow, timeout=10)


def test_gdc_submit_command(live, coffee, tmp_path):
    from tests.service.conftest import draw_scribbles

    image, scribbles, output = tmp_path / "coffee.jpg", tmp_path / "s.png", tmp_path / "out.png"
    from PIL import Image

    Image.fromarray(coffee).save(image)
    scribbles.write_bytes(encode_png(draw_scribbles(coffee.shape[:2], 2)))
    command = [
        sys.executable,
        "-m",
        "apps.cli",
        "submit",
        str(image),
        str(scribbles),
        "--server",
        live.url,
        "-o",
        str(output),
    ]
    options = [f"--{name.replace('_', '-')}={value}" for name, value in FAST.items()]
    done = subprocess.run(command + options, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout
    assert read_labels(output.read_bytes()).shape == (120, 180)

    refused = subprocess.run(command + ["--steps=5000"], cwd=REPO, capture_output=True, text=True, timeout=60)
    # A request the server refuses is the user's to fix: exit 2, as the CLI's other usage errors.
    assert refused.returncode == 2 and "steps" in refused.stderr and "422" in refused.stderr


def test_ready_with_a_worker(http):
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["workers"] == 1


def test_a_killed_worker_is_retried_then_failed(live_stacks, upload):
    """SIGKILL mid-job: the job goes back to the queue (one retry), then fails when it happens again."""
    stack = live_stacks(workers=1, job_retries=1, retry_backoff=1, heartbeat_ttl=2)
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        job_id = http.post("/segment", files=upload(2), data=SLOW).json()["id"]
        wait_until_running(http, job_id)
        os.kill(stack.workers[0].pid, signal.SIGKILL)
        retried = wait_for(lambda: (job := status(http, job_id))["status"] == "queued" and job, 30, "the retry")
        assert retried["error"]["code"] == "worker_lost" and "retrying" in retried["error"]["message"]

        replacement = stack.start_worker()
        wait_until_running(http, job_id)
        os.kill(replacement.pid, signal.SIGKILL)
        failed = wait_for(lambda: (job := status(http, job_id))["status"] == "failed" and job, 30, "the failure")
        assert failed["error"] == {
            "code": "worker_lost",
            "message": "the worker running this job stopped and no retries were left",
        }
        assert http.get(f"/jobs/{job_id}/mask").status_code == 409


def test_a_worker_stopped_mid_job_puts_it_back(live_stacks, upload):
    """SIGTERM (Ctrl-C, a deploy): the worker stops at the engine's next step and the job is retried."""
    stack = live_stacks(workers=1, job_retries=1, retry_backoff=30, heartbeat_ttl=2)
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        job_id = http.post("/segment", files=upload(2), data=SLOW).json()["id"]
        wait_until_running(http, job_id)
        stack.workers[0].send_signal(signal.SIGTERM)
        assert stack.workers[0].wait(30) == 0
        job = status(http, job_id)
        assert job["status"] == "queued"
        assert job["error"] == {"code": "worker_lost", "message": "the worker was shut down during the job"}
