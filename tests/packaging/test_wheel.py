"""The wheel the images install (``pip install /src``) holds every file of the packages, web page included.

Tests elsewhere use the editable install, which reads the repository and so cannot miss a file.
The wheel is built from what the Dockerfile's ``source`` stage copies, as the image build does.
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import zipfile

from tests.packaging.docker_files import REPO


def test_the_wheel_holds_every_file_the_image_build_copies(dockerfile, tmp_path):
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
