"""The commands: ``gdc serve`` starts what it says and stops all of it; ``gdc worker`` fails fast."""
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from redis import Redis
from rq.job import Job
from rq.worker import Worker

from apps import launch
from apps.launch import free_port, gdc_command, ready_workers
from service.serve import KEEP_ALIVE_SECONDS
from tests.conftest import REPO, idle_connection_answers, process_env, wait_for


def descendants(pid: int) -> set[int]:
    """Every process below ``pid``, from /proc (Linux)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        for child in map(int, children):
            found |= {child} | descendants(child)
    return found


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status  # a zombie has exited


def start_serve(port: int, workers: int = 1, output=subprocess.PIPE, **settings) -> subprocess.Popen:
    """``gdc serve`` on ``port``; its output (and its workers') to ``output``, which busy workers must not fill."""
    return launch.start_serve(
        port, workers, env=process_env(**settings), cwd=REPO, stdout=output, stderr=subprocess.STDOUT, text=True
    )


def answers(url: str) -> int | None:
    """The status code ``url`` answers with, or None while nothing listens."""
    return getattr(launch.answer(url), "status_code", None)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_serve_starts_redis_workers_and_api_then_stops_them_all(stop):
    port = free_port()
    serve = start_serve(port)
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/readyz") == 200 or serve.poll() is not None, 90, "gdc serve")
        assert serve.poll() is None, serve.stdout.read()
        children = descendants(serve.pid)
        assert len(children) >= 2  # the Valkey server and a worker
        serve.send_signal(stop)
        output, _ = serve.communicate(timeout=60)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.communicate()
    assert serve.returncode == 0, output
    assert "embedded Redis-protocol server" in output
    assert "worker process" in output
    assert f"API at http://127.0.0.1:{port}/" in output
    assert "gdc serve: stopped" in output
    assert not [pid for pid in children if alive(pid)], output


def test_serve_with_redis_url_starts_the_api_alone(valkey_server):
    port = free_port()
    serve = start_serve(port, redis_url=f"{valkey_server.connection_url}/9")
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz") == 200 or serve.poll() is not None, 30, "the API")
        assert not descendants(serve.pid)
        assert "libtorch" not in Path(f"/proc/{serve.pid}/maps").read_text(), "the API process loaded torch"
        os.kill(serve.pid, signal.SIGTERM)
        output, _ = serve.communicate(timeout=30)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.communicate()
    assert serve.returncode == 0, output
    assert "API alone" in output


def test_worker_refuses_a_device_it_cannot_use(redis_url):
    command = [sys.executable, "-m", "apps.cli", "worker", "--redis", redis_url, "--device", "cuda:99", "--burst"]
    done = subprocess.run(command, env=process_env(), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "gdc worker: error: cannot use device 'cuda:99'" in done.stderr


@pytest.mark.parametrize(
    ("cores", "threads", "device", "expected"),
    [(2, 1, "cpu", 2), (16, 4, "cpu", 4), (2, 4, "cpu", 1), (16, 1, "cuda:auto", 1)],
)
def test_default_workers_share_the_usable_cores_on_the_cpu(cores, threads, device, expected, monkeypatch):
    from service import serve
    from service.settings import Settings

    monkeypatch.setattr(serve, "usable_cores", lambda: cores)
    assert serve.default_workers(Settings(worker_threads=threads, device=device)) == expected


def test_worker_threads_below_one_are_refused():
    from pydantic import ValidationError

    from service.settings import Settings

    with pytest.raises(ValidationError, match="worker_threads"):
        Settings(worker_threads=0)


def test_serve_keeps_an_idle_connection_open_past_a_pooling_clients_expiry(valkey_server):
    port = free_port()
    serve = start_serve(port, redis_url=f"{valkey_server.connection_url}/9")
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz") == 200 or serve.poll() is not None, 30, "the API")
        assert KEEP_ALIVE_SECONDS > 60  # httpx keeps an idle connection 5 s, proxies 60 s
        assert idle_connection_answers(port, idle=6) == 200  # uvicorn's own 5 s would have closed it
    finally:
        serve.terminate()
        serve.communicate(timeout=30)


def worker_pids(serve: subprocess.Popen) -> set[int]:
    """The ``gdc worker`` processes below ``gdc serve`` (not the Valkey server)."""
    return {pid for pid in descendants(serve.pid) if b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes()}


def test_serve_restarts_killed_workers_and_every_queued_job_succeeds(tmp_path):
    from tests.reliability.conftest import final_statuses, running_phase, submit

    port = free_port()
    log = tmp_path / "serve.log"
    # Short heartbeats and back-offs: the killed workers' jobs are found and retried within seconds.
    with log.open("w") as output:
        serve = start_serve(port, workers=2, output=output, heartbeat_ttl=2, retry_backoff=1, worker_threads=1)
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/readyz") == 200 or serve.poll() is not None, 90, "gdc serve")
        assert serve.poll() is None, log.read_text()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            # About a second each on the tiny image, so the kill finds them running and queued (at 40 steps the
            # faster training ran the first one between two polls).
            ids = [submit(http, seed, options={"steps": 400, "samples": 2}) for seed in range(12)]
            wait_for(lambda: running_phase(http, ids[0]), 60, "the first job to run")
            killed = worker_pids(serve)
            assert len(killed) == 2
            for pid in killed:  # as the kernel's OOM killer would
                os.kill(pid, signal.SIGKILL)
            statuses = final_statuses(http, ids, timeout=180)
            assert set(statuses.values()) == {"succeeded"}, statuses
            restarted = worker_pids(serve)
            assert len(restarted) == 2 and not restarted & killed
            assert http.get("/readyz").json()["worker_restarts"] == 2
            assert "gdc_worker_restarts_total 2.0" in http.get("/metrics").text
        serve.send_signal(signal.SIGTERM)
        serve.wait(60)
    finally:
        stop_all(serve)
    output = log.read_text()
    for pid in killed:
        assert f"worker process {pid} killed by SIGKILL" in output, output
    assert not [pid for pid in restarted if alive(pid)], output


def test_serve_on_a_port_in_use_says_so_in_one_line_and_starts_nothing():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        done = subprocess.run(gdc_command("serve", "--port", str(port)), env=process_env(), cwd=REPO,
                              capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 10
    assert done.returncode == 2
    assert done.stderr == (f"gdc serve: error: cannot listen on 127.0.0.1:{port}: Address already in use; stop what "
                           "listens there, or choose another with --port\n")
    assert done.stdout == ""  # no Redis, no worker, no API


def serve_log_redis(log: Path) -> Redis:
    """The embedded Redis a ``gdc serve`` names in its log."""
    return Redis.from_url(re.search(r"\(Valkey\) at (\S+?),", log.read_text()).group(1))


def test_a_killed_workers_job_runs_again_within_15_s_and_readyz_counts_live_workers(tmp_path):
    from tests.reliability.conftest import running_phase, submit

    port = free_port()
    url, log = f"http://127.0.0.1:{port}", tmp_path / "serve.log"
    with log.open("w") as output:  # GDC_HEARTBEAT_TTL and GDC_RETRY_BACKOFF as shipped: 30 s, 10 s
        serve = start_serve(port, workers=2, output=output, worker_threads=1, max_steps=1000)
    try:
        wait_for(lambda: ready_workers(url) == 2 or serve.poll() is not None, 120, "two workers")
        assert serve.poll() is None, log.read_text()
        with httpx.Client(base_url=url, timeout=10) as http:
            job_id = submit(http, options={"steps": 1000, "samples": 200})
            wait_for(lambda: running_phase(http, job_id), 60, "the job to run")
            with serve_log_redis(log) as redis:
                name = Job.fetch(job_id, connection=redis).worker_name
                pid = Worker.find_by_key(Worker.redis_worker_namespace_prefix + name, connection=redis).pid
            os.kill(pid, signal.SIGKILL)  # as the kernel's OOM killer would
            killed = time.monotonic()
            wait_for(lambda: ready_workers(url) == 1, 3, "/readyz to count the live worker alone")
            wait_for(lambda: http.get(f"/jobs/{job_id}").json()["status"] == "queued", 15, "the job to be retried")
            wait_for(lambda: http.get(f"/jobs/{job_id}").json()["status"] != "queued", 15, "the retry to start")
            assert time.monotonic() - killed < 15
            wait_for(lambda: http.get(f"/jobs/{job_id}").json()["status"] == "succeeded", 120, "the retry to end")
            wait_for(lambda: ready_workers(url) == 2, 120, "the worker started again")
        serve.send_signal(signal.SIGTERM)
        serve.wait(60)
    finally:
        stop_all(serve)
    assert f"worker process {pid} killed by SIGKILL" in log.read_text()


def stop_all(serve: subprocess.Popen) -> None:
    """Leave nothing behind of a ``gdc serve`` a test failed with: stopped as Ctrl-C stops it, then whatever it
    started and left (its workers have sessions of their own) killed."""
    if serve.poll() is None:
        started = descendants(serve.pid)
        launch.stop(serve)
        for pid in started:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_serve_with_a_data_dir_keeps_queued_jobs_and_results_across_a_restart(tmp_path):
    from tests.reliability.conftest import final_statuses, running_phase, submit

    port = free_port()
    url, log = f"http://127.0.0.1:{port}", tmp_path / "serve.log"
    command = gdc_command("serve", "--port", str(port), "--workers", "1", "--data-dir", str(tmp_path / "data"))
    env = process_env(heartbeat_ttl=2, retry_backoff=1, worker_threads=1, max_steps=1000)

    def start() -> subprocess.Popen:
        with log.open("a") as output:
            serve = subprocess.Popen(command, env=env, cwd=REPO, stdout=output, stderr=subprocess.STDOUT)
        wait_for(lambda: ready_workers(url) == 1 or serve.poll() is not None, 120, "gdc serve")
        assert serve.poll() is None, log.read_text()
        return serve

    serve = start()
    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            done = submit(http)
            assert final_statuses(http, [done], timeout=60) == {done: "succeeded"}
            mask = http.get(f"/jobs/{done}/mask").content
            running = submit(http, options={"steps": 1000, "samples": 200})
            wait_for(lambda: running_phase(http, running), 60, "the long job to run")
            queued = submit(http, seed=1)  # behind it, on the one worker
            serve.send_signal(signal.SIGTERM)  # the running job is put back for a retry
            serve.wait(60)
            serve = start()
            assert http.get(f"/jobs/{done}/mask").content == mask
            assert final_statuses(http, [running, queued], timeout=180) == {running: "succeeded", queued: "succeeded"}
        serve.send_signal(signal.SIGTERM)
        serve.wait(60)
    finally:
        stop_all(serve)
    assert "its data kept in" in log.read_text()


def test_serve_runs_api_processes_that_each_answer_on_the_one_port(valkey_server):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = gdc_command("serve", "--port", str(port), "--api-workers", "2")
    env = process_env(redis_url=f"{valkey_server.connection_url}/9")
    serve = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: answers(f"{url}/healthz") == 200 or serve.poll() is not None, 60, "the API")

        def api_processes() -> set[int]:
            return {pid for pid in descendants(serve.pid) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()}

        apis = wait_for(lambda: len(api_processes()) == 2 and api_processes(), 30, "two API processes")
        for paused in apis:  # each answers alone while the other is stopped
            os.kill(paused, signal.SIGSTOP)
            try:
                assert [answers(f"{url}/healthz") for _ in range(5)] == [200] * 5
            finally:
                os.kill(paused, signal.SIGCONT)
        serve.send_signal(signal.SIGTERM)
        serve.wait(30)
        assert serve.returncode == 0 and not [pid for pid in apis if alive(pid)]
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
