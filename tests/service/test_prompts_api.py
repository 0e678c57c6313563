"""Box and click prompts on POST /segment: each bad prompt's 422, and jobs from a box, clicks and a refine of them.

The coffee photo is 180x120: the cup with its crema around (87, 40), the table in the corners.
"""
import json
import re
import subprocess
import sys

import httpx
import numpy as np
import pytest

from gdc.client import Client
from gdc.imageio import encode_png, read_labels
from tests.conftest import REPO
from tests.service.conftest import FAST, draw_scribbles
from tests.service.test_api import assert_error

CUP = "50,4,125,95"  # the cup, its crema inside
ON_CREMA = [[85, 40, 1], [75, 42, 1], [98, 43, 1]]
ON_TABLE = [[15, 12, 0], [165, 75, 0], [30, 110, 0], [160, 15, 0]]


def image_file(upload) -> dict:
    return {"image": upload()["image"]}


def post(client, files, **data):
    return client.post("/segment", files=files, data={**FAST, **data})


@pytest.mark.parametrize(
    "prompts, fragment",
    [
        ({"box": "0,0,200,100"}, "box 0,0,200,100 is not inside the 180x120 image"),
        ({"box": "100,10,50,60"}, "box 100,10,50,60 is empty or inverted"),
        ({"box": "10,10,10,50"}, "box 10,10,10,50 is empty or inverted"),
        ({"box": "0,0,180,120"}, "box covers the whole image"),
        ({"box": "1,2,3"}, "box must be four integers x0,y0,x1,y1; got '1,2,3'"),
        ({"points": "[[200, 10, 1], [5, 5, 0]]"}, "point (200, 10) is off the 180x120 image"),
        ({"points": "[[10, 10, 2], [5, 5, 0]]"}, "a point's label must be 1 (on the object) or 0 (off it); got 2"),
        ({"points": "[[10, 10, 1]"}, "points must be JSON [[x, y, label], ...]"),
        ({"points": "[[10, 10]]"}, "each point must be [x, y, label] with numbers"),
        ({"points": json.dumps(ON_CREMA)}, "the prompts name only one class: add a box, or a click off the object"),
    ],
)
def test_a_bad_prompt_is_named(api, upload, prompts, fragment):
    assert_error(post(api, image_file(upload), **prompts), 422, fragment)


def test_neither_scribbles_nor_prompts_names_all_three(api, upload):
    assert_error(post(api, image_file(upload)), 422, "or a 'box' or 'points'; neither was given")


def test_colour_scribbles_beside_a_box_are_refused(api, upload, coffee):
    colours = np.zeros((120, 180, 3), np.uint8)
    colours[35:48, 70:105] = (255, 0, 0)
    files = image_file(upload) | {"scribbles": ("s.png", encode_png(colours), "image/png")}
    assert_error(post(api, files, box=CUP), 422, "send label scribbles (1 the object, 2 its background), not colours")


def test_scribbles_and_prompts_hold_to_the_class_limit(api, upload, coffee):
    scribbles = np.zeros((120, 180), np.uint8)
    scribbles[0, :2] = [3, 4]  # with the box's 1 and 2: four classes, the limit is three
    files = image_file(upload) | {"scribbles": ("s.png", encode_png(scribbles), "image/png")}
    assert_error(post(api, files, box=CUP), 422, "the scribbles and prompts have 4 classes; at most 3 are accepted")


def test_the_form_describes_box_and_points(client):
    form = client.get("/openapi.json").json()["components"]["schemas"]["SegmentForm"]["properties"]
    assert "x0,y0,x1,y1" in form["box"]["description"] and "[[x, y, label], ...]" in form["points"]["description"]


def ended(client, job_id: str) -> tuple[dict, np.ndarray]:
    job = client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "succeeded", job
    return job, read_labels(client.get(f"/jobs/{job_id}/mask").content)


def test_a_box_alone_segments_the_object(client, upload, run_queued):
    response = post(client, image_file(upload), box=CUP)
    assert response.status_code == 202, response.text
    assert client.get(f"/jobs/{response.json()['id']}").json()["classes"] == [1, 2]
    run_queued()
    job, mask = ended(client, response.json()["id"])
    assert mask[40, 87] == 1 and mask[5, 5] == 2 and mask[115, 175] == 2


def test_clicks_alone_segment_the_object(client, upload, run_queued):
    response = post(client, image_file(upload), points=json.dumps(ON_CREMA + ON_TABLE))
    assert response.status_code == 202, response.text
    run_queued()
    _, mask = ended(client, response.json()["id"])
    assert all(mask[y, x] == 1 for x, y, _ in ON_CREMA) and all(mask[y, x] == 2 for x, y, _ in ON_TABLE)


def test_a_box_with_strokes_takes_both(client, upload, run_queued):
    strokes = [{"label": 2, "points": [[60, 100], [110, 100]], "width": 4}]  # the saucer below the cup is not it
    response = post(client, image_file(upload), box=CUP, strokes=json.dumps(strokes))
    assert response.status_code == 202, response.text
    run_queued()
    _, mask = ended(client, response.json()["id"])
    assert mask[100, 85] == 2 and mask[40, 87] == 1


def test_a_refine_with_another_click_starts_warm(client, upload, run_queued):
    first = post(client, image_file(upload), points=json.dumps(ON_CREMA + ON_TABLE[:2])).json()["id"]
    run_queued()
    ended(client, first)
    more = ON_CREMA + ON_TABLE + [[30, 60, 0]]  # every click so far, and new ones
    response = client.post("/segment", data={"previous": first, "points": json.dumps(more)})
    assert response.status_code == 202, response.text
    run_queued()
    job, mask = ended(client, response.json()["id"])
    assert job["warm"] is True and job["previous"] == first
    assert all(mask[y, x] == 2 for x, y, _ in ON_TABLE)


def test_a_refine_checks_its_clicks_against_the_previous_image(client, upload, run_queued):
    first = post(client, upload()).json()["id"]
    run_queued()
    response = client.post("/segment", data={"previous": first, "points": "[[500, 40, 1], [5, 5, 0]]"})
    assert_error(response, 422, "point (500, 40) is off the 180x120 image")


def test_the_live_worker_runs_a_box_job(live, upload):
    with httpx.Client(base_url=live.url, timeout=70) as http:
        response = http.post("/segment", files=image_file(upload), data={**FAST, "box": CUP}, params={"wait": 60})
        assert response.status_code == 200 and response.json()["status"] == "succeeded", response.text
        mask = read_labels(http.get(f"/jobs/{response.json()['id']}/mask").content)
    assert mask[40, 87] == 1 and mask[5, 5] == 2


def test_scribbles_alone_still_run_as_before(client, upload, run_queued, coffee):
    response = post(client, upload())
    run_queued()
    _, mask = ended(client, response.json()["id"])
    scribbles = draw_scribbles(coffee.shape[:2], 2)
    assert np.mean(mask[scribbles > 0] == scribbles[scribbles > 0]) > 0.95


def test_the_client_sends_a_box_then_clicks_to_refine_it(live, coffee):
    with Client(live.url) as client:
        with pytest.raises(ValueError, match="give scribbles, strokes, a box or points"):
            client.submit(coffee)
        boxed = client.submit(coffee, box=(50, 4, 125, 95), **FAST)
        client.wait(boxed, timeout=60)
        clicked = client.refine(boxed, points=[(x, y, label) for x, y, label in ON_CREMA + ON_TABLE])
        assert client.wait(clicked, timeout=60)["previous"] == boxed
        mask = client.mask(clicked)
    assert all(mask[y, x] == 2 for x, y, _ in ON_TABLE) and mask[40, 87] == 1


def test_gdc_submit_takes_box_and_points(live, coffee, tmp_path):
    (tmp_path / "coffee.png").write_bytes(encode_png(coffee))
    command = [sys.executable, "-m", "apps.cli", "submit", str(tmp_path / "coffee.png"), "--box", CUP,
               "--points", json.dumps(ON_TABLE[:1]), "--server", live.url, "-o", str(tmp_path / "mask.png"),
               "--steps", "3", "--samples", "2"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    mask = read_labels((tmp_path / "mask.png").read_bytes())
    assert mask[40, 87] == 1 and mask[12, 15] == 2


def test_the_readme_prompt_block_pasted_as_is_segments_the_cup(live, tmp_path):
    readme = (REPO / "README.md").read_text()
    block = re.search(r"### Box and click prompts\n.*?```bash\n(.*?)```", readme, re.DOTALL).group(1)
    (tmp_path / "docs").symlink_to(REPO / "docs")  # the block names docs/example/... from the repository root
    script = block.replace("http://127.0.0.1:8000", live.url)
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    first, end = json.JSONDecoder().raw_decode(done.stdout)  # the two answers, one after the other
    answers = [first, json.loads(done.stdout[end:])]
    assert [answer["status"] for answer in answers] == ["succeeded", "succeeded"], done.stdout
    with httpx.Client(base_url=live.url, timeout=30) as http:
        for answer in answers:
            mask = read_labels(http.get(f"/jobs/{answer['id']}/mask").content)
            assert mask[133, 283] == 1 and mask[250, 550] == 2
