"""A cancel is a cancel everywhere: in the job body, in /metrics, in the worker's log, in what DELETE leaves."""
import logging
import re

from redis import Redis
from rq.executions import ExecutionRegistry

from tests.conftest import REPO
from tests.service.conftest import FAST
from worker.keys import Kind, key_for


def submit(client, upload) -> str:
    response = client.post("/segment", files=upload(2), data=FAST)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def jobs_in(metrics: str, state: str) -> float:
    return float(re.search(rf'^gdc_jobs{{state="{state}"}} (\S+)$', metrics, re.MULTILINE).group(1))


def test_a_job_canceled_as_a_worker_takes_it_counts_and_logs_as_canceled(client, upload, run_queued, redis_url, caplog):
    job_id = submit(client, upload)
    # DELETE's flag, as if it arrived just after the worker took the job: the task stops on it.
    Redis.from_url(redis_url).set(key_for(Kind.CANCEL, job_id), 1)
    with caplog.at_level(logging.INFO, logger="rq.worker"):
        run_queued()
    job = client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "canceled" and job["error"] is None
    metrics = client.get("/metrics").text
    assert (jobs_in(metrics, "canceled"), jobs_in(metrics, "failed")) == (1, 0)
    about_the_job = [record for record in caplog.records if job_id in record.getMessage()]
    assert [record.getMessage().split(": ", 1)[1] for record in about_the_job if "canceled" in record.getMessage()] == [
        f"job {job_id} canceled on request"
    ]
    assert not any("Traceback" in record.getMessage() or record.exc_info for record in caplog.records)


def test_delete_keeps_a_canceled_job_readable_and_removes_an_ended_one(client, upload, run_queued):
    canceled = submit(client, upload)
    assert client.delete(f"/jobs/{canceled}").json()["status"] == "canceled"
    ended = submit(client, upload)
    run_queued()
    assert client.get(f"/jobs/{canceled}").json()["status"] == "canceled"
    assert client.get(f"/jobs/{canceled}/mask").status_code == 409
    assert client.delete(f"/jobs/{ended}").json()["status"] == "succeeded"
    assert client.get(f"/jobs/{ended}").status_code == 404


def test_delete_removes_an_ended_job_whose_registry_lists_an_expired_execution(client, upload, run_queued, redis_url):
    job_id = submit(client, upload)
    run_queued()
    # A run cut off from Redis leaves its id in the job's execution registry after its hash expired.
    redis = Redis.from_url(redis_url)
    redis.zadd(ExecutionRegistry(job_id, connection=redis).key, {"expired-run": 2**40})
    answer = client.delete(f"/jobs/{job_id}")
    assert answer.status_code == 200, answer.text
    assert client.get(f"/jobs/{job_id}").status_code == 404


def test_the_readme_says_what_delete_leaves_behind():
    lines = (REPO / "README.md").read_text().splitlines()
    row = next(line for line in lines if line.startswith("| `DELETE /jobs/{id}`"))
    assert "reads `canceled`" in row and "404" in row and "deletes its data" not in row
