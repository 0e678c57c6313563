"""The wheel the images install (``pip install /src``) holds every file of the packages, web page included; the
editable install that ``./run`` makes warns of nothing.

Tests elsewhere use the editable install, which reads the repository and so cannot miss a file.
The wheel is built from what the Dockerfile's ``source`` stage copies, as the image build does.
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.packaging.docker_files import REPO


@pytest.fixture
def source(dockerfile, tmp_path) -> Path:
    """A copy of what the Dockerfile's ``source`` stage copies."""
    source = tmp_path / "src"
    for copy in dockerfile.stages["source"].arguments("COPY"):
        *paths, target = shlex.split(copy)
        for path in paths:
            copy_to = source / target.removeprefix("/src").strip("/")
            if (REPO / path).is_dir():
                shutil.copytree(REPO / path, copy_to, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                copy_to.mkdir(parents=True, exist_ok=True)
                shutil.copy(REPO / path, copy_to)
    return source


def test_the_wheel_holds_every_file_the_image_build_copies(source, tmp_path):
    files = {path.relative_to(source).as_posix() for path in source.glob("*/**/*") if path.is_file()}
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("gdc-*.whl")
    packed = set(zipfile.ZipFile(wheel).namelist())
    assert files - packed == set(), "add them to [tool.setuptools.package-data] in pyproject.toml"
    assert {"service/static/example/coffee.jpg", "service/static/example/coffee-scribbles.png"} <= packed


def test_the_editable_install_warns_of_nothing(source, tmp_path):
    """What ``pip install -e .`` runs (PEP 660's hook), with setuptools' warnings made errors."""
    build = subprocess.run(
        [sys.executable, "-W", "error::UserWarning", "-c",
         "import sys; from setuptools import build_meta; build_meta.build_editable(sys.argv[1])", str(tmp_path)],
        cwd=source,
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-2000:]
