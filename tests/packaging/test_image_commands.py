"""The images' commands and health checks, run here as the images would run them.

Each command comes from the Dockerfile stage (CMD, HEALTHCHECK, ENV), runs from this venv in
an empty directory, against an embedded Redis, with every module the image does not install
made unimportable: what the extras it leaves out (and only they) would bring.
"""
from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from apps.launch import free_port, stop
from service.serve import KEEP_ALIVE_SECONDS
from tests.conftest import idle_connection_answers, process_env, wait_for
from tests.packaging.docker_files import Dockerfile

# The finders, wrapped so that a module the image lacks is found by none of them: importing it
# raises ModuleNotFoundError and importlib.util.find_spec answers None, as in the image (torch
# probes optional modules that way when it loads torch._dynamo).
HIDE_MODULES = """
import os, sys

class _NotInThisImage:
    absent = set(os.environ["ABSENT_MODULES"].split(","))

    def __init__(self, finders):
        self.finders = finders

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.absent:
            return None
        for finder in self.finders:
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                return spec
        return None

    def invalidate_caches(self):
        for finder in self.finders:
            getattr(finder, "invalidate_caches", lambda: None)()

    def find_distributions(self, *args, **kwargs):  # importlib.metadata asks the finders too
        for finder in self.finders:
            yield from getattr(finder, "find_distributions", lambda *args, **kwargs: ())(*args, **kwargs)

sys.meta_path[:] = [_NotInThisImage(list(sys.meta_path))]
"""


def _closure(extras: set[str]) -> set[str]:
    """Distributions that ``pip install gdc[extras]`` brings, as far as this venv knows them."""
    found, todo = set(), [Requirement(f"gdc[{','.join(sorted(extras))}]")]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in found:
            continue
        found.add(key)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            dependency = Requirement(text)
            markers = [{"extra": extra} for extra in requirement.extras or {""}]
            if dependency.marker is None or any(dependency.marker.evaluate(env) for env in markers):
                todo.append(dependency)
    return {name for name, _ in found}


def venv_stage(dockerfile: Dockerfile, image: str) -> str:
    """The build stage whose virtual environment the stage ``image`` copies."""
    (stage,) = re.findall(r"--from=(\S+) /opt/venv", " ".join(dockerfile.arguments(image, "COPY")))
    return stage


def absent_modules(dockerfile: Dockerfile, image: str) -> set[str]:
    """Top-level modules of the distributions gdc's other extras would bring, but this image's install does not."""
    (project,) = [run for run in dockerfile.arguments(venv_stage(dockerfile, image), "RUN") if "/src" in run]
    extras = re.search(r"/src\[([\w,]+)\]", project)
    installed = set(extras.group(1).split(",")) if extras else set()
    everything = set(metadata.metadata("gdc").get_all("Provides-Extra"))
    missing = _closure(everything) - _closure(installed)
    return {
        module
        for module, dists in metadata.packages_distributions().items()
        if all(canonicalize_name(dist) in missing for dist in dists)
    }


class Image:
    """A stage's CMD and HEALTHCHECK run here, with its ENV and without the modules it lacks."""

    def __init__(self, dockerfile: Dockerfile, stage: str, workdir, **env: str) -> None:
        self.dockerfile, self.stage, self.workdir = dockerfile, stage, workdir
        (workdir / "sitecustomize.py").write_text(HIDE_MODULES)
        self.env = {**process_env(), **dockerfile.env(stage), **env}
        self.env["ABSENT_MODULES"] = ",".join(sorted(absent_modules(dockerfile, stage)))
        self.env["PYTHONPATH"] = str(workdir)

    def command(self, keyword: str) -> list[str]:
        return self.dockerfile.local_command(self.stage, self.dockerfile.exec_form(self.stage, keyword))

    def start(self) -> subprocess.Popen:
        return subprocess.Popen(self.command("CMD"), env=self.env, cwd=self.workdir)

    def healthy(self) -> bool:
        check = subprocess.run(
            self.command("HEALTHCHECK"), env=self.env, cwd=self.workdir, capture_output=True, timeout=30
        )
        assert check.returncode in (0, 1), check.stderr  # Docker's contract: 0 healthy, 1 unhealthy
        return check.returncode == 0


def run_until_healthy(image: Image, timeout: float) -> subprocess.Popen:
    """Start the image's command, wait until its health check passes, stop it; the stopped process."""
    process = image.start()

    def healthy() -> bool:
        assert process.poll() is None, f"{image.stage} exited with {process.returncode}"
        return image.healthy()

    try:
        wait_for(healthy, timeout, f"the {image.stage} health check to pass", every=0.5)
    finally:
        stop(process, timeout=30)
    return process


def test_the_images_leave_out_what_they_do_not_install(dockerfile):
    assert {"torch", "skimage", "cv2"} <= absent_modules(dockerfile, "api")
    assert "torch" not in absent_modules(dockerfile, "worker")
    assert "cv2" in absent_modules(dockerfile, "worker")


def _parse_gdc(arguments: list[str]) -> None:
    from apps.cli import build_parser

    build_parser().parse_args(arguments)


def _parse_uvicorn(arguments: list[str]) -> None:
    from uvicorn.main import main

    main.make_context("uvicorn", arguments)


PARSERS = {"gdc": _parse_gdc, "uvicorn": _parse_uvicorn}  # each exits or raises on an unknown command or flag


@pytest.mark.parametrize("image", ["api", "worker"])
def test_the_commands_parse(dockerfile, image):
    program, *arguments = dockerfile.exec_form(image, "CMD")
    PARSERS[program](arguments)


def test_api_serves_and_its_health_check_follows_it(dockerfile, redis_url, tmp_path):
    port = str(free_port())
    api = Image(dockerfile, "api", tmp_path, REDIS_URL=redis_url, UVICORN_HOST="127.0.0.1", UVICORN_PORT=port)
    assert not api.healthy()
    run_until_healthy(api, timeout=60)
    assert not api.healthy()


def test_api_keeps_idle_connections_as_gdc_serve_does(dockerfile, redis_url, tmp_path):
    assert dockerfile.env("api")["UVICORN_TIMEOUT_KEEP_ALIVE"] == str(KEEP_ALIVE_SECONDS)
    port = free_port()
    api = Image(dockerfile, "api", tmp_path, REDIS_URL=redis_url, UVICORN_HOST="127.0.0.1", UVICORN_PORT=str(port))
    process = api.start()
    try:
        wait_for(api.healthy, 60, "the API image to be healthy", every=0.5)
        assert idle_connection_answers(port, idle=6) == 200
    finally:
        stop(process, timeout=30)


def test_worker_registers_and_its_health_check_follows_it(dockerfile, redis_url, tmp_path):
    worker = Image(dockerfile, "worker", tmp_path, REDIS_URL=redis_url, GDC_DEVICE="cpu")
    assert not worker.healthy()
    process = run_until_healthy(worker, timeout=120)
    assert process.returncode == 0, "a worker told to stop exits cleanly"
    assert not worker.healthy()


def test_a_module_the_image_lacks_cannot_be_imported_nor_found(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(HIDE_MODULES)
    probe = (
        "import importlib.util, importlib.metadata\n"
        "assert importlib.util.find_spec('colorsys') is None\n"
        "try:\n    import colorsys\nexcept ModuleNotFoundError:\n    pass\nelse:\n    raise SystemExit('colorsys imported')\n"
        "import json\n"  # what the image has still imports
        "assert importlib.metadata.version('pytest')\n"
    )
    env = {**process_env(), "ABSENT_MODULES": "colorsys", "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
