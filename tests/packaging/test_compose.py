"""docker-compose.yml: Redis with a persistent AOF, the API behind an entry point, scalable API containers and GPU
and CPU workers, settings from env."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from urllib.parse import urlparse

import httpx
import pytest

from apps import launch
from apps.launch import free_port
from benchmarks.tiny import QUICK, tiny_upload
from tests.packaging.docker_files import REPO, Dockerfile, compose_defaults, settings_variables

WORKERS = ("worker", "cpu-worker")


def environment(service: dict) -> dict:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment should be a mapping"
    return env


def test_the_stack_has_redis_the_entry_the_api_and_both_workers(compose):
    assert set(compose["services"]) == {"redis", "entry", "api", *WORKERS}


def test_redis_keeps_an_append_only_file_on_a_named_volume(compose):
    redis = compose["services"]["redis"]
    command = " ".join(redis["command"])
    assert re.search(r"--appendonly\s+yes", command)
    volume, _, target = redis["volumes"][0].partition(":")
    assert target == "/data" and volume in compose["volumes"]
    assert "healthcheck" in redis


def test_the_api_and_workers_reach_the_stack_redis(compose):
    for name in ("api", *WORKERS):
        service = compose["services"][name]
        assert urlparse(environment(service)["REDIS_URL"]).hostname == "redis"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name, target", [("api", "api"), ("worker", "worker"), ("cpu-worker", "worker")])
def test_services_build_a_stage_of_the_dockerfile(compose, dockerfile, name, target):
    build = compose["services"][name]["build"]
    assert (REPO / build["context"] / build["dockerfile"]).resolve() == (REPO / "docker" / "Dockerfile")
    assert build["target"] == target and target in dockerfile.stages


def entry_dockerfile() -> Dockerfile:
    return Dockerfile(REPO / "docker" / "entry.Dockerfile")


def test_the_entry_publishes_the_api_port_and_forwards_to_the_port_uvicorn_listens_on(compose, dockerfile):
    entry = compose["services"]["entry"]
    (mapping,) = entry["ports"]
    assert mapping == "8000:8000"  # API_PORT, unset: 8000
    assert (REPO / entry["build"]["context"] / entry["build"]["dockerfile"]).resolve() == (
        REPO / "docker" / "entry.Dockerfile"
    )
    (stage,) = entry_dockerfile().stages
    env = entry_dockerfile().env(stage)
    assert env["ENTRY_BIND"].rpartition(":")[2] == mapping.rpartition(":")[2]
    host, _, port = env["API_ADDRESS"].rpartition(":")
    assert host == "api" and port == dockerfile.env("api")["UVICORN_PORT"]
    config = (REPO / "docker" / "haproxy.cfg").read_text()
    assert '"${ENTRY_BIND}"' in config and '"${API_ADDRESS}"' in config


def test_the_entry_image_runs_as_a_non_root_user_with_a_health_check():
    (stage,) = entry_dockerfile().stages
    assert entry_dockerfile().last(stage, "USER") not in (None, "root", "0")
    assert entry_dockerfile().exec_form(stage, "HEALTHCHECK")


HAPROXY = shutil.which("haproxy")


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (apt-get install haproxy)")
def test_haproxy_accepts_the_entry_configuration():
    env = {"ENTRY_BIND": "127.0.0.1:8000", "API_ADDRESS": "api:8000"}
    check = subprocess.run([HAPROXY, "-c", "-f", str(REPO / "docker" / "haproxy.cfg")], env=env,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("name", ["api", *WORKERS])
def test_api_containers_and_workers_scale(compose, name):
    service = compose["services"][name]
    assert "container_name" not in service and "ports" not in service
    assert service.get("deploy", {}).get("replicas") is None, "--scale sets the count"


def test_gpu_workers_reserve_the_gpus_and_use_cuda(compose, dockerfile):
    worker = compose["services"]["worker"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert device["count"] == "all", "replicas share the GPUs; count 1 would hand each one GPU 0"
    assert environment(worker)["GDC_DEVICE"] == "cuda:auto"
    index = worker["build"]["args"]["TORCH_INDEX"]
    assert index != dockerfile.arg_default("worker-build", "TORCH_INDEX"), "the CUDA image needs a CUDA torch"


def test_cpu_workers_are_a_profile_with_the_cpu_image(compose):
    worker = compose["services"]["cpu-worker"]
    assert worker["profiles"] == ["cpu"]
    assert environment(worker)["GDC_DEVICE"] == "cpu"
    assert "deploy" not in worker and "args" not in worker["build"], "the Dockerfile's default torch is the CPU one"
    assert compose["services"]["worker"]["image"] != worker["image"]


def test_every_setting_passes_through_and_only_settings(compose):
    settings = set(settings_variables()) - {"GDC_REDIS_URL"}  # REDIS_URL is its name here
    for name in ("api", *WORKERS):
        env = environment(compose["services"][name])
        named = {key for key in env if key.startswith("GDC_")}
        assert named <= settings, f"{name}: unknown settings {named - settings}"
        expected = settings - {"GDC_DEVICE"} if name == "api" else settings
        assert named == expected, f"{name}: missing {expected - named}"
        unset = [key for key, value in env.items() if value is None]
        assert set(unset) == named - {"GDC_DEVICE"}, "settings pass through unset, keeping gdc's defaults"


def test_env_example_lists_every_variable_with_its_default():
    lines = (REPO / ".env.example").read_text().splitlines()
    listed = dict(line[2:].split("=", 1) for line in lines if re.match(r"# \w+=", line))
    expected = {**settings_variables(), **compose_defaults()}
    expected.pop("GDC_REDIS_URL")  # REDIS_URL is its name here
    assert listed == expected


def _compose_cli() -> bool:
    return (
        shutil.which("docker") is not None
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    )


@pytest.mark.skipif(not _compose_cli(), reason="docker compose is not installed")
def test_docker_compose_accepts_the_file():
    # `config` reads and validates the file; it needs no Docker engine.
    command = ["docker", "compose", "--profile", "cpu", "config", "--quiet"]
    check = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


@pytest.mark.skipif(not _compose_cli(), reason="docker compose is not installed")
def test_on_the_host_network_the_api_listens_on_the_api_port_itself():
    files = ["-f", "docker-compose.yml", "-f", "docker-compose.host.yml"]
    command = ["docker", "compose", *files, "--profile", "cpu", "config", "--format", "json"]
    # No API_PORT of this shell: the defaults are what is checked.
    check = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    assert check.returncode == 0, check.stderr
    services = json.loads(check.stdout)["services"]
    assert "entry" not in services, "no Docker DNS on the host's network to find the API containers by"
    assert services["api"]["environment"]["UVICORN_PORT"] == "8000" and not services["api"].get("ports")


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (apt-get install haproxy)")
def test_the_entry_streams_uploads_to_the_api_and_passes_its_answers_on(redis_url):
    """The entry's HAProxy in front of an API of two processes (the compose network's name swapped for an address)."""
    api_port, entry_port = free_port(), free_port()
    api = launch.start_api(api_port, env=launch.process_env(max_upload_bytes=200_000) | {"REDIS_URL": redis_url},
                           log_level="warning", processes=2, cwd=REPO)
    env = {"ENTRY_BIND": f"127.0.0.1:{entry_port}", "API_ADDRESS": f"127.0.0.1:{api_port}"}
    entry = subprocess.Popen([HAPROXY, "-W", "-db", "-f", str(REPO / "docker" / "haproxy.cfg")], env=env)
    try:
        url = f"http://127.0.0.1:{entry_port}"
        launch.wait_ready(url, workers=0, processes=[api, entry], timeout=60)
        with httpx.Client(base_url=url, timeout=30) as client:
            accepted = client.post("/segment", files=tiny_upload(), data=QUICK)
            assert accepted.status_code == 202, accepted.text
            assert client.get(accepted.headers["Location"]).json()["status"] == "queued"

            def streamed():  # chunked, no Content-Length: the API's own limit answers, in JSON
                yield b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
                yield from (bytes(10_000) for _ in range(30))

            refused = client.post("/segment", content=streamed(), headers={"Content-Type": "multipart/form-data; boundary=x"})
            assert refused.status_code == 413 and "limit of 200000 bytes" in refused.json()["detail"]
    finally:
        launch.stop(entry)
        launch.stop(api)
