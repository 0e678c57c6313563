"""docker-compose.yml: Redis with a persistent AOF, the API, scalable GPU and CPU workers, settings from env."""
from __future__ import annotations

import re
import shutil
import subprocess
from urllib.parse import urlparse

import pytest

from tests.packaging.docker_files import REPO, compose_defaults, settings_variables

WORKERS = ("worker", "cpu-worker")


def environment(service: dict) -> dict:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment should be a mapping"
    return env


def test_the_stack_has_redis_the_api_and_both_workers(compose):
    assert set(compose["services"]) == {"redis", "api", *WORKERS}


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


def test_the_api_publishes_the_port_uvicorn_listens_on(compose, dockerfile):
    (mapping,) = compose["services"]["api"]["ports"]
    container_port = mapping.rpartition(":")[2]
    assert container_port == dockerfile.env("api")["UVICORN_PORT"]


@pytest.mark.parametrize("name", WORKERS)
def test_workers_scale(compose, name):
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
