"""The Label Studio ML backend under /labelstudio: the protocol, brush context, image fetching, basic auth.

Predictions run on the tools' live stack (a real worker, API keys on); the image comes from a small
HTTP server standing in for Label Studio's file store. The real Label Studio drives the
same routes in test_labelstudio_app.py.
"""
import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest
from label_studio_sdk.converter import brush
from redis import Redis

from gdc.errors import InputError
from gdc.imageio import encode_png
from gdc.prompts import Box, Click
from service.errors import ImageFetchFailed
from service.labelstudio import LabelConfig, fetch_image, read_context, task_key
from service.settings import Settings
from tests.conftest import free_port
from tests.service.conftest import draw_scribbles
from tests.service.tools.conftest import GDC_KEY
from worker.keys import Kind, key_for

BRUSH_CONFIG = """
<View>
  <Image name="image" value="$image" smart="true"/>
  <BrushLabels name="tag" toName="image">
    <Label value="Crema" background="#f59e0b"/><Label value="Table" background="#2563eb"/>
  </BrushLabels>
  <KeyPointLabels name="points" toName="image" smart="true">
    <Label value="Crema"/><Label value="Table"/><Label value="Spoon"/>
  </KeyPointLabels>
  <RectangleLabels name="box" toName="image" smart="true">
    <Label value="Crema"/>
  </RectangleLabels>
</View>
"""
LEGACY_TOKEN = "legacy-token"
PERSONAL_TOKEN = "header.payload.signature"  # a JWT's shape: Label Studio's personal access token
ACCESS_TOKEN = "short-lived-access"


class FileStore:
    """Serves the coffee image at /photo.png, mirrored at /mirrored.png, and at /data/upload/1/coffee.png to
    Label Studio's tokens only."""

    def __init__(self, image: bytes, mirrored: bytes) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                accepted = (f"Token {LEGACY_TOKEN}", f"Bearer {ACCESS_TOKEN}")
                if self.path == "/mirrored.png":
                    self._answer(200, mirrored, "image/png")
                elif self.path == "/photo.png" or (
                    self.path == "/data/upload/1/coffee.png" and self.headers.get("Authorization") in accepted
                ):
                    self._answer(200, image, "image/png")
                else:
                    self._answer(401 if self.path.startswith("/data/") else 404, b"{}", "application/json")

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/api/token/refresh" and body == {"refresh": PERSONAL_TOKEN}:
                    self._answer(200, json.dumps({"access": ACCESS_TOKEN}).encode(), "application/json")
                else:
                    self._answer(401, b"{}", "application/json")

            def _answer(self, status, body, kind):
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def files(coffee):
    store = FileStore(encode_png(coffee), encode_png(coffee[:, ::-1]))
    yield store
    store.server.shutdown()


def brush_region(mask: np.ndarray, label: str) -> dict:
    height, width = mask.shape
    return {
        "type": "brushlabels",
        "from_name": "tag",
        "to_name": "image",
        "original_width": width,
        "original_height": height,
        "value": {"format": "rle", "rle": brush.mask2rle((mask * 255).astype(np.uint8)), "brushlabels": [label]},
    }


def decode_result(result: list[dict], width: int, height: int) -> np.ndarray:
    """Label Studio's regions as a label map (classes in the config's order), decoded by label-studio-sdk."""
    labels = np.zeros((height, width), np.uint8)
    for region in result:
        assert region["from_name"] == "tag" and region["to_name"] == "image" and region["type"] == "brushlabels"
        assert (region["original_width"], region["original_height"]) == (width, height)
        mask = np.reshape(brush.decode_rle(region["value"]["rle"]), (height, width, 4))[..., 3] > 0
        labels[mask] = ["Crema", "Table"].index(region["value"]["brushlabels"][0]) + 1
    return labels


def predict_body(
    url: str, regions: list[dict], config: str = BRUSH_CONFIG, project: str = "1.1700000000", task: int = 7
) -> dict:
    return {
        "tasks": [{"id": task, "data": {"image": url}}],
        "label_config": config,
        "project": project,
        "params": {"context": {"result": regions}},
    }


@pytest.fixture
def http(tools_gdc):
    with httpx.Client(base_url=tools_gdc.url, timeout=70, auth=("label-studio", GDC_KEY)) as client:
        yield client


def test_health_setup_and_webhook(client):
    assert client.get("/labelstudio/health").json()["status"] == "UP"
    setup = client.post("/labelstudio/setup", json={"project": "1.1", "schema": BRUSH_CONFIG})
    assert setup.status_code == 200 and setup.json()["model_version"].startswith("gdc-")
    assert client.post("/labelstudio/webhook", json={"action": "ANNOTATION_CREATED"}).status_code == 200


def test_setup_refuses_a_config_without_brushes(client):
    config = '<View><Image name="image" value="$image"/><RectangleLabels name="r" toName="image"/></View>'
    answer = client.post("/labelstudio/setup", json={"project": "1.1", "schema": config})
    assert answer.status_code == 422 and "no <BrushLabels> tag" in answer.json()["detail"]


def test_without_context_each_task_gets_an_empty_prediction(client):
    body = {"tasks": [{"id": 1, "data": {"image": "x"}}, {"id": 2, "data": {}}], "label_config": BRUSH_CONFIG}
    results = client.post("/labelstudio/predict", json=body).json()["results"]
    assert [result["result"] for result in results] == [[], []]


def test_brush_context_becomes_a_brush_mask_per_class(http, files, coffee):
    scribbles = draw_scribbles(coffee.shape[:2], 2)
    regions = [brush_region(scribbles == 1, "Crema"), brush_region(scribbles == 2, "Table")]
    answer = http.post("/labelstudio/predict", json=predict_body(f"{files.url}/photo.png", regions))
    assert answer.status_code == 200, answer.text
    (prediction,) = answer.json()["results"]
    assert 0 < prediction["score"] <= 1 and prediction["model_version"].startswith("gdc-")
    labels = decode_result(prediction["result"], 180, 120)
    assert set(np.unique(labels)) == {1, 2}  # every pixel labelled, each class once
    scribbled = scribbles > 0
    assert np.mean(labels[scribbled] == scribbles[scribbled]) > 0.95


def test_keypoints_are_scribbles_too(http, files):
    points = [("Crema", 48, 35), ("Crema", 52, 38), ("Table", 10, 10), ("Table", 90, 60)]  # percent of the image
    regions = [
        {
            "type": "keypointlabels",
            "original_width": 180,
            "original_height": 120,
            "value": {"x": x, "y": y, "width": 1, "keypointlabels": [label]},
        }
        for label, x, y in points
    ]
    answer = http.post("/labelstudio/predict", json=predict_body(f"{files.url}/photo.png", regions))
    assert answer.status_code == 200, answer.text
    labels = decode_result(answer.json()["results"][0]["result"], 180, 120)
    assert labels[round(0.36 * 120), round(0.5 * 180)] == 1 and labels[12, 18] == 2


def keypoint(label: str, x: float, y: float) -> dict:
    value = {"x": x, "y": y, "width": 1, "keypointlabels": [label]}
    return {"type": "keypointlabels", "original_width": 180, "original_height": 120, "value": value}


def rectangle(label: str, x: float, y: float, width: float, height: float, rotation: float = 0) -> dict:
    value = {"x": x, "y": y, "width": width, "height": height, "rotation": rotation, "rectanglelabels": [label]}
    return {"type": "rectanglelabels", "original_width": 180, "original_height": 120, "value": value}


def test_a_rectangle_is_the_box_and_keypoints_are_clicks():
    config = LabelConfig.parse(BRUSH_CONFIG)
    regions = [keypoint("Crema", 50, 30), keypoint("Table", 10, 10), keypoint("Spoon", 50, 90)]
    context = read_context(config, [rectangle("Crema", 27.9, 3.4, 41.7, 75.2), *regions])
    assert context.box == Box(50, 4, 126, 95)  # 27.9% of 180 = 50.2 .. 69.6% = 125.3; 3.4% of 120 = 4.1 .. 94.3
    assert context.clicks == [Click(90, 36, True), Click(18, 12, False)]
    assert context.scribbles[108, 90] == 3 and context.scribbles[36, 90] == 0  # other classes stay scribbles


@pytest.mark.parametrize(
    "region, fragment",
    [
        (rectangle("Table", 10, 10, 20, 20), "a rectangle is a box around the object: label it 'Crema', not 'Table'"),
        (rectangle("Crema", 10, 10, 20, 20, rotation=30), "a rotated rectangle cannot be a box"),
    ],
)
def test_a_rectangle_that_is_no_box_is_refused(region, fragment):
    with pytest.raises(InputError, match=fragment):
        read_context(LabelConfig.parse(BRUSH_CONFIG), [region])


def test_a_rectangle_alone_segments_its_object(http, files):
    regions = [rectangle("Crema", 27.8, 3.3, 41.7, 75.8)]  # the cup: 50,4 .. 125,95 of 180x120
    answer = http.post("/labelstudio/predict", json=predict_body(f"{files.url}/photo.png", regions, task=8))
    assert answer.status_code == 200, answer.text
    labels = decode_result(answer.json()["results"][0]["result"], 180, 120)
    assert labels[40, 87] == 1 and labels[5, 5] == 2


@pytest.mark.parametrize(
    "url, status, detail",
    [
        ("/data/upload/1/coffee.png", 422, "set LABEL_STUDIO_URL"),
        ("s3://bucket/coffee.png", 422, "is not an http(s) URL or a Label Studio path"),
        ("http://127.0.0.1:9/photo.png", 502, "fetching the image http://127.0.0.1:9/photo.png failed"),
    ],
)
def test_an_image_that_cannot_be_fetched_is_named(client, coffee, url, status, detail):
    scribbles = draw_scribbles(coffee.shape[:2], 2)
    regions = [brush_region(scribbles == 1, "Crema"), brush_region(scribbles == 2, "Table")]
    answer = client.post("/labelstudio/predict", json=predict_body(url, regions))
    assert answer.status_code == status and detail in answer.json()["detail"], answer.text


def test_a_label_outside_the_config_is_refused(client):
    region = brush_region(np.ones((120, 180), bool), "Saucer")
    answer = client.post("/labelstudio/predict", json=predict_body("http://x/p.png", [region]))
    assert answer.status_code == 422 and "label 'Saucer' is not in the project's label config" in answer.text


@pytest.mark.parametrize("key", [LEGACY_TOKEN, PERSONAL_TOKEN])
def test_label_studio_images_are_fetched_with_its_token(files, coffee, key):
    settings = Settings(redis_url="redis://unused", label_studio_url=files.url, label_studio_api_key=key)
    config = LabelConfig.parse(BRUSH_CONFIG)
    image = asyncio.run(fetch_image({"id": 1, "data": {"image": "/data/upload/1/coffee.png"}}, config, settings))
    assert image == encode_png(coffee)


def test_a_refused_token_is_named(files):
    settings = Settings(redis_url="redis://unused", label_studio_url=files.url, label_studio_api_key="wrong")
    task = {"id": 1, "data": {"image": f"{files.url}/data/upload/1/coffee.png"}}
    with pytest.raises(ImageFetchFailed, match="answered 401 \\(check LABEL_STUDIO_API_KEY\\)"):
        asyncio.run(fetch_image(task, LabelConfig.parse(BRUSH_CONFIG), settings))


def test_the_token_goes_to_label_studio_only(files):
    settings = Settings(redis_url="redis://unused", label_studio_url="http://label-studio:8080", label_studio_api_key="t")
    task = {"id": 1, "data": {"image": f"{files.url}/data/upload/1/coffee.png"}}  # elsewhere: sent without it
    with pytest.raises(ImageFetchFailed, match="answered 401$"):
        asyncio.run(fetch_image(task, LabelConfig.parse(BRUSH_CONFIG), settings))


def test_config_labels_become_classes_in_order():
    config = LabelConfig.parse(BRUSH_CONFIG)
    assert (config.brush_tag, config.image_tag, config.image_field) == ("tag", "image", "image")
    assert config.labels == ("Crema", "Table", "Spoon") and config.class_of("Table") == 2
    with pytest.raises(InputError, match="at least two labels"):
        LabelConfig.parse('<View><Image name="i" value="$i"/><BrushLabels name="b" toName="i"><Label value="A"/></BrushLabels></View>')


@pytest.mark.parametrize("credentials, status", [(("labelstudio", "k"), 200), (("labelstudio", "no"), 401), (None, 401)])
def test_the_api_key_works_as_a_basic_auth_password(make_client, credentials, status):
    """Label Studio sends the user and password of a backend URL such as http://user:KEY@host/labelstudio."""
    assert make_client(api_keys="k").get("/labelstudio/health", auth=credentials).status_code == status



class Annotator:
    """Interactive predictions on the live stack, one project per test, and the jobs they ran."""

    def __init__(self, http, files, coffee, redis_url: str, project: str) -> None:
        self.http, self.files, self.project = http, files, project
        self.redis = Redis.from_url(redis_url)
        self.images = {"photo": encode_png(coffee), "mirrored": encode_png(coffee[:, ::-1])}
        scribbles = draw_scribbles(coffee.shape[:2], 2)
        self.regions = [brush_region(scribbles == 1, "Crema"), brush_region(scribbles == 2, "Table")]

    def predict(self, task: int = 7, image: str = "photo") -> dict:
        """Predict on ``task`` showing ``image``; the body of the gdc job it ran."""
        body = predict_body(f"{self.files.url}/{image}.png", self.regions, project=self.project, task=task)
        answer = self.http.post("/labelstudio/predict", json=body)
        assert answer.status_code == 200, answer.text
        job_id = self.redis.get(task_key(self.project, {"id": task}, self.images[image])).decode()
        return self.http.get(f"/jobs/{job_id}").json()


@pytest.fixture
def annotator(http, files, coffee, tools_gdc, request):
    annotator = Annotator(http, files, coffee, tools_gdc.redis_url, project=f"{request.node.name}.1700000000")
    yield annotator
    annotator.redis.close()


def test_the_next_prediction_on_a_task_refines_its_last_job(annotator):
    first = annotator.predict()
    assert first["status"] == "succeeded" and first["previous"] is None
    second = annotator.predict()
    assert second["status"] == "succeeded", second
    assert second["previous"] == first["id"] and second["warm"] is True
    assert annotator.predict()["previous"] == second["id"]  # each round refines the one before
    assert annotator.redis.ttl(task_key(annotator.project, {"id": 7}, annotator.images["photo"])) > 0


def test_another_task_or_a_changed_image_starts_afresh(annotator):
    first = annotator.predict(task=7)
    assert annotator.predict(task=8)["previous"] is None
    assert annotator.predict(task=7, image="mirrored")["previous"] is None
    assert annotator.predict(task=7)["previous"] == first["id"]


def test_a_deleted_or_expired_last_job_still_answers_cold(annotator):
    first = annotator.predict()
    assert annotator.http.delete(f"/jobs/{first['id']}").status_code == 200
    second = annotator.predict()
    assert second["status"] == "succeeded", second
    assert second["previous"] == first["id"] and second["warm"] is False
    annotator.redis.delete(key_for(Kind.WARM, second["id"]))  # as when its warm start's TTL ran out
    third = annotator.predict()
    assert third["status"] == "succeeded", third
    assert third["previous"] == second["id"] and third["warm"] is False
