"""GDC_FINISH_JOB_ON_STOP: a scaled-down worker (SIGTERM) finishes its running job first, then exits."""
import signal

import httpx

from tests.service.test_live import status, wait_until_running

# Enough steps to be mid-job when the signal comes, few enough to finish soon after.
MEDIUM = {"steps": 60, "samples": 2, "superpixel_size": 200}


def test_a_worker_told_to_finish_its_job_on_stop_does_so_then_exits(live_stacks, upload):
    stack = live_stacks(workers=1, finish_job_on_stop="true", job_retries=0)
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        job_id = http.post("/segment", files=upload(2), data=MEDIUM).json()["id"]
        wait_until_running(http, job_id)
        stack.workers[0].send_signal(signal.SIGTERM)
        assert stack.workers[0].wait(180) == 0
        assert status(http, job_id)["status"] == "succeeded"
