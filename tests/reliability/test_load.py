"""Submissions from 50 concurrent clients against a live API, real Redis and two workers.

Every accepted job must end succeeded and run exactly once. The suite makes 150 submissions
(three per client, a queue 50 deep behind the two workers); ``GDC_LOAD_SUBMISSIONS=500``
runs the load that benchmarks/reliability.md reports. How quickly the API answered
while both workers were busy (it never waits on the engine) is a figure, not a verdict: on a
shared machine the tail is the scheduler's, so it is printed (``pytest -s``) and written to
``artifacts/reliability/load.json``, and benchmarks/reliability.md reports it.
"""

from __future__ import annotations

import json
import os

from redis import Redis
from rq.job import Job
from rq.results import Result
from rq.worker import Worker

from tests.conftest import REPO
from tests.reliability.conftest import ONE_THREAD
from tests.reliability.load import run_load
from worker.queue import open_queue

SUBMISSIONS = int(os.environ.get("GDC_LOAD_SUBMISSIONS", "150"))
CONCURRENCY = 50


def test_every_accepted_job_succeeds_exactly_once(stacks_for_this_test):
    stack = stacks_for_this_test(workers=2, **ONE_THREAD)
    result = run_load(stack.url, SUBMISSIONS, CONCURRENCY)
    summary = result.summary()
    print("\nload:", json.dumps(summary, indent=2))
    (REPO / "artifacts" / "reliability").mkdir(parents=True, exist_ok=True)
    (REPO / "artifacts" / "reliability" / "load.json").write_text(json.dumps(summary, indent=2) + "\n")

    assert not result.refused, result.refused
    assert len(result.accepted) == len(set(result.accepted)) == SUBMISSIONS
    assert result.final == dict.fromkeys(result.accepted, "succeeded")

    redis = Redis.from_url(stack.redis_url)
    queue = open_queue(redis, "gdc")
    jobs = Job.fetch_many(result.accepted, connection=redis, serializer=queue.serializer)
    runs = {job.id: [run.type for run in job.results()] for job in jobs}
    assert runs == dict.fromkeys(result.accepted, [Result.Type.SUCCESSFUL])  # each ran once, none was retried
    assert sum(worker.successful_job_count for worker in Worker.all(queue=queue)) == SUBMISSIONS
    assert queue.count == 0 and queue.started_job_registry.get_job_count(cleanup=False) == 0
