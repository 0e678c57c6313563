"""The real Label Studio with gdc as its ML backend, end to end.

Label Studio runs from an environment of its own, started in the background while the
tests before these run (tests/service/tools/labelstudio_server.py says how); one Label
Studio serves the module. The tests are skipped, saying why, only when Label Studio cannot
be installed.

The labelling page with gdc's mask is screenshot in Chromium into ``artifacts/labelstudio.png``,
and with ``GDC_UPDATE_DOCS=1`` into ``docs/labelstudio.png``, the picture in docs/integrations.md.
"""
import io
import os
import time
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
from label_studio_sdk.client import LabelStudio
from PIL import Image
from redis import Redis

from gdc.imageio import encode_png
from service.labelstudio import task_key
from tests.browser.conftest import artifacts, browser  # noqa: F401 (fixtures: the screenshot's Chromium)
from tests.conftest import REPO
from tests.service.conftest import draw_scribbles
from tests.service.tools.conftest import GDC_KEY, LABEL_STUDIO_TOKEN
from tests.service.tools.labelstudio_server import LABEL_STUDIO, PASSWORD, USER
from tests.service.tools.test_labelstudio import BRUSH_CONFIG, brush_region, decode_result


@pytest.fixture(scope="module")
def label_studio(pytestconfig, tools_gdc) -> str:
    """The running Label Studio (started at collection by conftest.py, told to the tools' gdc); its URL."""
    startup = pytestconfig.stash[LABEL_STUDIO]
    try:
        yield startup.wait()
    finally:
        startup.stop()


@dataclass
class Annotated:
    """A Label Studio project with gdc as its interactive backend, and its coffee task annotated from one prediction."""

    url: str
    ls: LabelStudio
    project: object  # label-studio-sdk's Project
    backend_id: int
    task_id: int
    image: bytes  # the task's image file
    scribbles: np.ndarray  # the strokes the prediction was asked with
    result: list[dict]  # the regions Label Studio stored as the annotation
    job: dict  # gdc's body of the job that prediction ran

    def interactive_prediction(self, scribbles: np.ndarray) -> dict:
        """Ask Label Studio for gdc's prediction with ``scribbles`` as brush context; its answer's regions."""
        context = {"result": [brush_region(scribbles == 1, "Crema"), brush_region(scribbles == 2, "Table")]}
        answer = httpx.post(
            f"{self.url}/api/ml/{self.backend_id}/interactive-annotating",
            headers={"Authorization": f"Token {LABEL_STUDIO_TOKEN}"},
            json={"task": self.task_id, "context": context},
            timeout=120,
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert "errors" not in body, body
        return body["data"]["result"]

    def last_job(self, gdc) -> dict:
        """gdc's body of the last job it ran for the task, found as the route remembers it."""
        project = f"{self.project.id}.{int(self.project.created_at.timestamp())}"  # as Label Studio names it
        with Redis.from_url(gdc.redis_url) as redis:
            job_id = redis.get(task_key(project, {"id": self.task_id}, self.image)).decode()
        return httpx.get(f"{gdc.url}/jobs/{job_id}", headers={"X-API-Key": GDC_KEY}).json()


@pytest.fixture(scope="module")
def annotated(label_studio, tools_gdc, coffee) -> Annotated:
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
    image = encode_png(coffee)
    imported = httpx.post(
        f"{url}/api/projects/{project.id}/import",
        headers={"Authorization": f"Token {LABEL_STUDIO_TOKEN}"},
        files={"coffee": ("coffee.png", image, "image/png")},
        timeout=60,
    )
    assert imported.status_code == 201, imported.text
    (task,) = ls.tasks.list(project=project.id)
    assert task.data["image"].startswith("/data/upload/")
    annotated = Annotated(url, ls, project, backend.id, task.id, image, draw_scribbles(coffee.shape[:2], 2), [], {})

    started = time.perf_counter()
    result = annotated.interactive_prediction(annotated.scribbles)
    seconds = time.perf_counter() - started
    annotated.job = annotated.last_job(tools_gdc)
    timings = ", ".join(f"{step} {value:.2f}" for step, value in annotated.job["timings"].items())
    print(
        f"one interactive prediction through Label Studio: {seconds:.2f} s; gdc's job: {timings} s; "
        f"load average {' '.join(f'{load:.2f}' for load in os.getloadavg())}"
    )
    # What the editor does when the annotator accepts the regions: save them as the annotation.
    ls.annotations.create(id=task.id, result=result)
    (stored,) = ls.annotations.list(id=task.id)
    annotated.result = stored.result
    return annotated


def test_label_studio_gets_and_stores_gdc_brushes(annotated):
    labels = decode_result(annotated.result, 180, 120)
    assert set(np.unique(labels)) == {1, 2}
    scribbled = annotated.scribbles > 0
    assert np.mean(labels[scribbled] == annotated.scribbles[scribbled]) > 0.95
    assert labels[40, 85] == 1 and labels[10, 10] == 2  # the cup's crema, the table


def test_the_next_prediction_through_label_studio_refines_the_last_job(annotated, tools_gdc):
    more = annotated.scribbles.copy()
    more[100:115, 5:60] = 2  # a stroke on the table below the saucer
    labels = decode_result(annotated.interactive_prediction(more), 180, 120)
    job = annotated.last_job(tools_gdc)
    assert job["status"] == "succeeded" and job["previous"] == annotated.job["id"] and job["warm"] is True, job
    assert labels[40, 85] == 1 and labels[110, 30] == 2


def test_the_labelling_page_shows_gdc_mask(annotated, browser, artifacts):  # noqa: F811 (the fixtures above)
    """Logged in through Label Studio's form, the task's labelling page draws the stored brush regions."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 760})
    try:
        page = context.new_page()
        page.goto(f"{annotated.url}/user/login/")
        page.fill("#email", USER)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/user/login" not in url)
        page.goto(f"{annotated.url}/projects/{annotated.project.id}/data?task={annotated.task_id}")
        regions = page.locator(".lsf-tree__node_type_brushregion")
        expect(regions).to_have_count(2, timeout=60_000)
        expect(regions.filter(has_text="Crema")).to_have_count(1)
        page.locator(".lsf-main-content canvas").first.wait_for()
        page.wait_for_timeout(1000)  # the brush layer is drawn just after the image
        shot = Image.open(io.BytesIO(page.screenshot())).quantize(256)  # a palette keeps the PNG small
    finally:
        context.close()
    shot.save(artifacts / "labelstudio.png", optimize=True)
    if os.environ.get("GDC_UPDATE_DOCS") == "1":
        shot.save(REPO / "docs" / "labelstudio.png", optimize=True)
