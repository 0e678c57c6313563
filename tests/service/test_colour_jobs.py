"""POST /segment with colour scribbles: the job says which colour is which class; the mask comes back in them."""
import io
import subprocess
import sys

import numpy as np
from PIL import Image

from gdc.imageio import encode_png, read_image
from tests.conftest import REPO
from tests.service.conftest import FAST, draw_scribbles

CREMA, TABLE = (250, 200, 0), (0, 90, 255)  # as a paint tool saves them, on a transparent layer


def colour_upload(coffee) -> dict:
    labels = draw_scribbles(coffee.shape[:2], 2)
    strokes = np.zeros((*labels.shape, 4), np.uint8)
    strokes[labels == 1] = (*CREMA, 255)
    strokes[labels == 2] = (*TABLE, 255)
    return {"image": ("coffee.png", encode_png(coffee)), "scribbles": ("strokes.png", encode_png(strokes))}


def test_colour_scribbles_give_a_mask_in_their_colours(client, coffee, run_queued):
    created = client.post("/segment", files=colour_upload(coffee), data=FAST)
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    run_queued()
    job = client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "succeeded"
    assert (job["classes"], job["colours"]) == ([1, 2], ["#005aff", "#fac800"])  # TABLE, CREMA: in #rrggbb order
    mask = client.get(f"/jobs/{job_id}/mask", params={"format": "colour"})
    assert mask.status_code == 200 and mask.headers["content-type"] == "image/png"
    painted = read_image(mask.content)
    assert painted.shape == (*coffee.shape[:2], 3)
    assert {tuple(colour) for colour in painted.reshape(-1, 3).tolist()} == {CREMA, TABLE}
    assert tuple(painted[40, 80]) == CREMA and tuple(painted[10, 10]) == TABLE  # inside the strokes


def test_label_scribbles_name_the_overlays_colours(client, upload, run_queued):
    job_id = client.post("/segment", files=upload(2), data=FAST).json()["id"]
    run_queued()
    assert client.get(f"/jobs/{job_id}").json()["colours"] == ["#e6194b", "#3cb44b"]
    painted = read_image(client.get(f"/jobs/{job_id}/mask", params={"format": "colour"}).content)
    assert {tuple(colour) for colour in painted.reshape(-1, 3).tolist()} <= {(230, 25, 75), (60, 180, 75)}


def test_a_photo_as_scribbles_is_refused_for_its_colours(client, coffee):
    files = {"image": ("coffee.png", encode_png(coffee)), "scribbles": ("photo.png", encode_png(coffee))}
    answer = client.post("/segment", files=files, data=FAST)
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("the scribbles have ")
    limit = client.get("/options").json()["max_classes"]  # GDC_MAX_CLASSES
    assert f"colours, and each colour is a class: at most {limit} are accepted" in answer.json()["detail"]


def test_jpeg_scribbles_are_refused_as_not_png(client, coffee):
    buffer = io.BytesIO()
    Image.fromarray(coffee).save(buffer, format="JPEG")
    files = {"image": ("coffee.png", encode_png(coffee)), "scribbles": ("s.jpg", buffer.getvalue())}
    answer = client.post("/segment", files=files, data=FAST)
    assert answer.status_code == 422
    assert answer.json()["detail"] == "scribbles must be a PNG (label or colour), got JPEG"


def test_gdc_submit_writes_the_mask_of_colour_scribbles_in_their_colours(live, coffee, tmp_path):
    upload = colour_upload(coffee)
    for name in ("image", "scribbles"):
        (tmp_path / upload[name][0]).write_bytes(upload[name][1])
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in FAST.items()]
    command = [sys.executable, "-m", "apps.cli", "submit", str(tmp_path / "coffee.png"), str(tmp_path / "strokes.png")]
    done = subprocess.run(
        [*command, "--server", live.url, "-o", str(tmp_path / "mask.png"), *flags],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    painted = read_image((tmp_path / "mask.png").read_bytes())
    assert {tuple(colour) for colour in painted.reshape(-1, 3).tolist()} == {CREMA, TABLE}
