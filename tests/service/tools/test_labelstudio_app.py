"""The real Label Studio with gdc as its ML backend, end to end.

Label Studio pins many packages of its own, so it lives in a virtual environment of its
own (``GDC_LABEL_STUDIO_VENV``, default ``.label-studio-venv`` in the repository),
installed from PyPI the first time. Its first start migrates a database for a minute or
more, so that start is made once into a blank data folder kept beside the environment,
and each run starts on a copy. One Label Studio serves the module; the test is skipped,
saying why, only when Label Studio cannot be installed.
"""
import os
import shutil
import subprocess
import time
import venv
from pathlib import Path

import httpx
import numpy as np
import pytest
from label_studio_sdk.client import LabelStudio

from gdc.imageio import encode_png
from tests.conftest import REPO, stop_process, wait_for
from tests.service.conftest import draw_scribbles
from tests.service.tools.conftest import GDC_KEY, LABEL_STUDIO_TOKEN
from tests.service.tools.test_labelstudio import BRUSH_CONFIG, brush_region, decode_result

LABEL_STUDIO = "label-studio==1.23.2"
VENV = Path(os.environ.get("GDC_LABEL_STUDIO_VENV", REPO / ".label-studio-venv"))


def label_studio_python() -> Path:
    """The Python of Label Studio's own environment, installing it the first time; skips if it cannot."""
    python = VENV / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", "import label_studio"], capture_output=True).returncode == 0:
        return python
    venv.create(VENV, with_pip=True)
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", LABEL_STUDIO], capture_output=True, text=True, timeout=1800
    )
    if install.returncode != 0:
        pytest.skip(f"{LABEL_STUDIO} could not be installed into {VENV}: {install.stderr.strip()[-500:]}")
    return python


def start_label_studio(data_dir: Path, url: str) -> subprocess.Popen:
    """Label Studio on ``url``'s port with its data in ``data_dir`` and the test user (legacy token on)."""
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LATEST_VERSION_CHECK": "false",  # no call to PyPI at start-up
        # gdc listens on loopback here; Label Studio refuses local addresses for backends (and for the
        # /webhook it adds with each backend) unless told otherwise.
        "ML_BLOCK_LOCAL_IP": "false",
        "SSRF_PROTECTION_ENABLED": "false",
    }
    command = "import sys; from label_studio.server import main; sys.exit(main())"
    process = subprocess.Popen(
        [label_studio_python(), "-c", command, "start", "--no-browser", "--port", url.rsplit(":", 1)[1],
         "--data-dir", str(data_dir), "--username", "test@gdc.local", "--password", "gdc-test-password",
         "--user-token", LABEL_STUDIO_TOKEN, "--enable-legacy-api-token"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return process


def wait_until_up(process: subprocess.Popen, url: str, timeout: float) -> None:
    def answers() -> bool:
        assert process.poll() is None, "Label Studio exited while starting"
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(answers, timeout, "Label Studio to start")


def blank_data(url: str) -> Path:
    """Label Studio's data folder as its first start leaves it (database migrated, test user made), made once."""
    blank = VENV / "blank-data"
    if not (blank / "label_studio.sqlite3").exists():
        shutil.rmtree(blank, ignore_errors=True)
        process = start_label_studio(blank, url)
        try:
            wait_until_up(process, url, 900)
        finally:
            stop_process(process)
    return blank


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory, label_studio_url, request) -> str:
    """A running Label Studio, started while the tools' gdc stack starts; its URL."""
    data = tmp_path_factory.mktemp("label-studio") / "data"
    shutil.copytree(blank_data(label_studio_url), data)
    process = start_label_studio(data, label_studio_url)
    try:
        request.getfixturevalue("tools_gdc")
        wait_until_up(process, label_studio_url, 240)
        yield label_studio_url
    finally:
        stop_process(process)


def test_label_studio_gets_and_stores_gdc_brushes(label_studio, tools_gdc, coffee):
    url = label_studio
    ls = LabelStudio(base_url=url, api_key=LABEL_STUDIO_TOKEN)
    project = ls.projects.create(title="gdc", label_config=BRUSH_CONFIG)
    backend = ls.ml.create(
        project=project.id,
        url=f"{tools_gdc.url}/labelstudio",
        title="gdc",
        is_interactive=True,
        auth_method="BASIC_AUTH",
        basic_auth_user="label-studio",
        basic_auth_pass=GDC_KEY,
    )
    token = {"Authorization": f"Token {LABEL_STUDIO_TOKEN}"}
    imported = httpx.post(
        f"{url}/api/projects/{project.id}/import",
        headers=token,
        files={"coffee": ("coffee.png", encode_png(coffee), "image/png")},
        timeout=60,
    )
    assert imported.status_code == 201, imported.text
    (task,) = ls.tasks.list(project=project.id)
    assert task.data["image"].startswith("/data/upload/")

    scribbles = draw_scribbles(coffee.shape[:2], 2)
    context = {"result": [brush_region(scribbles == 1, "Crema"), brush_region(scribbles == 2, "Table")]}
    started = time.perf_counter()
    answer = httpx.post(
        f"{url}/api/ml/{backend.id}/interactive-annotating",
        headers=token,
        json={"task": task.id, "context": context},
        timeout=120,
    )
    print(f"one interactive prediction through Label Studio: {time.perf_counter() - started:.2f} s")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert "errors" not in body, body
    result = body["data"]["result"]

    # What the editor does when the annotator accepts the regions: save them as the annotation.
    ls.annotations.create(id=task.id, result=result)
    (stored,) = ls.annotations.list(id=task.id)
    labels = decode_result(stored.result, 180, 120)
    assert set(np.unique(labels)) == {1, 2}
    scribbled = scribbles > 0
    assert np.mean(labels[scribbled] == scribbles[scribbled]) > 0.95
    assert labels[40, 85] == 1 and labels[10, 10] == 2  # the cup's crema, the table
