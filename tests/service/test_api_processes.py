"""Several API processes on one Redis share one queue: what one accepts, another shows, and a worker runs.

The ways to run N of them (docs/docker.md): uvicorn's ``--workers N`` behind one port, or separate processes
(containers, pods) behind a load balancer; either way every process is stateless and Redis holds the jobs.
"""
import httpx
import pytest

from apps import launch
from apps.launch import free_port
from benchmarks.tiny import HEIGHT, QUICK, WIDTH, tiny_upload
from gdc.imageio import read_labels
from tests.conftest import REPO
from tests.reliability.conftest import final_statuses, submit


@pytest.fixture
def second_api(stacks_for_this_test):
    """A live stack (an API and one worker) and a second API process on its Redis database; their URLs."""
    stack = stacks_for_this_test(workers=1)
    port = free_port()
    other = launch.start_api(port, env=stack.env, log_level="warning", cwd=REPO)
    stack.processes.append(other)  # stopped with the stack
    url = f"http://127.0.0.1:{port}"
    launch.wait_ready(url, workers=1, processes=[other], timeout=60)
    return stack.url, url


def test_a_job_submitted_to_one_api_process_is_seen_and_served_by_another(second_api):
    first, second = second_api
    with httpx.Client(base_url=first, timeout=30) as one, httpx.Client(base_url=second, timeout=30) as other:
        job_id = submit(one)
        assert other.get(f"/jobs/{job_id}").json()["id"] == job_id
        assert final_statuses(other, [job_id], timeout=90) == {job_id: "succeeded"}
        assert read_labels(other.get(f"/jobs/{job_id}/mask").content).shape == (HEIGHT, WIDTH)
        assert one.get(f"/jobs/{job_id}").json()["status"] == "succeeded"


def test_uvicorn_workers_share_one_port_and_one_queue(stacks_for_this_test):
    stack = stacks_for_this_test(workers=0)
    port = free_port()
    api = launch.start_api(port, env=stack.env, log_level="warning", processes=2, cwd=REPO)
    stack.processes.append(api)
    url = f"http://127.0.0.1:{port}"
    launch.wait_ready(url, workers=0, processes=[api], timeout=60)
    ids = []
    for seed in range(6):  # a connection each, which the kernel hands to either process
        with httpx.Client(base_url=url, timeout=30) as client:
            answer = client.post("/segment", files=tiny_upload(seed), data=QUICK)
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["id"])
    with httpx.Client(base_url=url, timeout=30) as client:
        assert [client.get(f"/jobs/{job_id}").json()["status"] for job_id in ids] == ["queued"] * 6
        positions = sorted(client.get(f"/jobs/{job_id}").json()["position"] for job_id in ids)
    assert positions == list(range(6)), "one queue, in order"
