"""CVAT's interactor: POST /cvat/interactor, and the nuclio function (integrations/cvat/main.py) forwarding to it."""
import base64
import importlib.util
import json
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from gdc.imageio import encode_png, read_image
from gdc.prompts import Box, Click
from service.routes import cvat
from tests.conftest import REPO
from tests.service.tools.conftest import GDC_KEY

FUNCTION = REPO / "integrations" / "cvat"
# On the coffee photo: clicks on the crema, clicks on the table around the cup.
POSITIVE = [[85, 40], [75, 42], [98, 43]]
NEGATIVE = [[15, 12], [165, 75], [30, 110], [160, 15]]


def load_function():
    spec = importlib.util.spec_from_file_location("gdc_cvat_function", FUNCTION / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Context:
    """What nuclio hands a handler: user_data, a logger, and its Response type."""

    def __init__(self) -> None:
        self.user_data = SimpleNamespace()
        self.logger = SimpleNamespace(info=print, warn=print, error=print)
        self.Response = lambda **fields: SimpleNamespace(**fields)


def call_function(monkeypatch, url: str, body: dict, key: str = GDC_KEY):
    function = load_function()
    monkeypatch.setenv("GDC_URL", url)
    monkeypatch.setenv("GDC_API_KEY", key)
    context = Context()
    function.init_context(context)
    return function.handler(context, SimpleNamespace(body=body))


@pytest.fixture
def frame(coffee) -> str:
    return base64.b64encode(encode_png(coffee)).decode()


def test_the_function_forwards_clicks_and_cvat_gets_a_mask(monkeypatch, tools_gdc, frame):
    answer = call_function(monkeypatch, tools_gdc.url, {"image": frame, "pos_points": POSITIVE, "neg_points": NEGATIVE})
    assert answer.status_code == 200 and answer.content_type == "application/json", answer.body
    mask = np.array(json.loads(answer.body)["mask"])
    assert mask.shape == (120, 180) and set(np.unique(mask)) == {0, 255}
    assert all(mask[y, x] == 255 for x, y in POSITIVE) and all(mask[y, x] == 0 for x, y in NEGATIVE)


def test_a_box_stands_for_negative_clicks(monkeypatch, tools_gdc, frame):
    body = {"image": frame, "pos_points": POSITIVE, "neg_points": [], "obj_bbox": [[62, 30], [112, 52]]}
    answer = call_function(monkeypatch, tools_gdc.url, body)
    assert answer.status_code == 200, answer.body
    mask = np.array(json.loads(answer.body)["mask"])
    assert mask[40, 85] == 255 and mask[5, 5] == 0 and mask[110, 170] == 0


def test_a_box_alone_is_enough(monkeypatch, tools_gdc, frame):
    body = {"image": frame, "pos_points": [], "neg_points": [], "obj_bbox": [[125.4, 95.2], [50, 4]]}  # any corners
    answer = call_function(monkeypatch, tools_gdc.url, body)
    assert answer.status_code == 200, answer.body
    mask = np.array(json.loads(answer.body)["mask"])
    assert mask[40, 87] == 255 and mask[5, 5] == 0 and mask[115, 175] == 0


def test_a_box_reaching_past_the_frame_is_clipped_to_it(client, frame, monkeypatch):
    seen = {}

    async def segment_and_wait(queue, settings, image, scribbles=None, *, box=None, clicks=()):
        seen.update(box=box, clicks=clicks)
        return "job", np.zeros((120, 180), np.uint8)

    monkeypatch.setattr(cvat, "segment_and_wait", segment_and_wait)
    body = {"image": frame, "pos_points": [[85, 40]], "obj_bbox": [[-3.5, 10.2], [190, 119.5]]}
    assert client.post("/cvat/interactor", json=body).status_code == 200
    assert seen == {"box": Box(0, 10, 180, 120), "clicks": [Click(85, 40, True)]}


def test_gdc_errors_reach_cvat_as_they_are(monkeypatch, tools_gdc, frame):
    answer = call_function(monkeypatch, tools_gdc.url, {"image": frame, "pos_points": POSITIVE})
    assert answer.status_code == 422
    assert "the prompts name only one class" in json.loads(answer.body)["detail"]


def test_the_function_sends_the_api_key(monkeypatch, tools_gdc, frame):
    answer = call_function(monkeypatch, tools_gdc.url, {"image": frame, "pos_points": POSITIVE}, key="wrong")
    assert answer.status_code == 401


def test_an_unreachable_gdc_is_a_502_naming_it(monkeypatch, frame):
    answer = call_function(monkeypatch, "http://127.0.0.1:9", {"image": frame, "pos_points": POSITIVE})
    assert answer.status_code == 502 and "gdc at http://127.0.0.1:9/cvat/interactor failed" in answer.body


@pytest.mark.parametrize(
    "body, detail",
    [
        ({"image": "not base64!", "pos_points": POSITIVE, "neg_points": NEGATIVE}, "image is not valid base64"),
        ({"image": base64.b64encode(b"text").decode(), "pos_points": POSITIVE, "neg_points": NEGATIVE}, "not an image"),
        ({"image": "", "pos_points": [], "neg_points": []}, "give a box or points around or on the object"),
        ({"image": "", "obj_bbox": [[1, 2]]}, "obj_bbox"),
    ],
)
def test_bad_calls_are_named(client, body, detail):
    answer = client.post("/cvat/interactor", json=body)
    assert answer.status_code == 422 and detail in answer.json()["detail"], answer.text


def test_function_yaml_declares_an_interactor():
    spec = yaml.safe_load((FUNCTION / "function.yaml").read_text())
    annotations = spec["metadata"]["annotations"]
    assert annotations["type"] == "interactor" and annotations["min_pos_points"] == 1
    assert spec["spec"]["handler"] == "main:handler"
    assert int(spec["spec"]["eventTimeout"].rstrip("s")) > 50  # longer than gdc's own wait (GDC_INTERACTIVE_WAIT)


def test_the_api_decodes_no_frame(make_client, monkeypatch, frame):
    """The route reads the frame's size from its header to draw the clicks; the worker decodes it."""
    from service import uploads

    decoded = []
    monkeypatch.setattr(uploads, "read_image", lambda data: decoded.append(data) or read_image(data))
    client = make_client(interactive_wait=0.2)  # no worker here: the job is enqueued, then given up on
    answer = client.post("/cvat/interactor", json={"image": frame, "pos_points": POSITIVE, "neg_points": NEGATIVE})
    assert answer.status_code == 504 and decoded == [], answer.text