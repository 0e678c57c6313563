"""The HTTP contract without running jobs: bad input, limits, keys, CORS, docs, the web page.

Bad-input tests run twice: in-process (TestClient) and against the live uvicorn server.
"""
import gc
import json
import subprocess
import sys

import numpy as np
import pytest

from gdc.imageio import encode_png
from gdc.options import HEAD_CONVS, SegmentOptions, request_options
from tests.conftest import REPO
from tests.service.conftest import LIMITS, SLOW, png_claiming


def post(api, files, data=None, **kwargs):
    return api.post("/segment", files=files, data=data or {}, **kwargs)


def assert_error(response, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    for fragment in fragments:
        assert fragment in detail


def test_missing_image(api, upload):
    files = upload()
    del files["image"]
    assert_error(post(api, files), 422, "send the image as the file 'image', or name the job to refine as 'previous'")


def test_not_an_image(api, upload):
    files = upload() | {"image": ("a.png", b"these bytes are no picture", "image/png")}
    assert_error(post(api, files), 422, "image is not an image file")


def test_truncated_image(api, upload):
    image = upload()["image"][1]
    files = upload() | {"image": ("a.png", image[: len(image) // 2], "image/png")}
    assert_error(post(api, files), 422, "is not a readable image", "truncated")


def test_scribbles_of_another_size_name_both_sizes(api, upload):
    files = upload(scribbles=np.ones((60, 90), np.uint8))
    assert_error(post(api, files), 422, "scribbles are 90x60 but the image is 180x120")


@pytest.mark.parametrize(
    "painted, message",
    [({}, "found no labels"), ({1: (slice(0, 10), slice(0, 10))}, "found only class 1")],
)
def test_scribbles_need_two_classes(api, upload, painted, message):
    scribbles = np.zeros((120, 180), np.uint8)
    for value, where in painted.items():
        scribbles[where] = value
    assert_error(post(api, upload(scribbles=scribbles)), 422, "at least two classes", message)


def test_more_classes_than_allowed(api, upload):
    scribbles = np.zeros((120, 180), np.uint8)
    scribbles[0, :4] = [1, 2, 3, 4]
    assert_error(
        post(api, upload(scribbles=scribbles)), 422, f"4 classes; at most {LIMITS['max_classes']} are accepted"
    )


@pytest.mark.parametrize(
    "options, message",
    [
        ({"steps": 501}, "steps must be at most 500 on this server, got 501"),
        ({"samples": 0}, "samples: Input should be greater than or equal to 1"),
        ({"sigma": 2}, "sigma: Input should be less than or equal to 1"),
        ({"conv": "fancy"}, "conv: Input should be 'gdc'"),
        ({"steps": "many"}, "steps: Input should be a valid integer"),
        ({"superpixel_size": -1}, "superpixel_size: Input should be greater than or equal to 0"),
        ({"edge_strength": -1}, "edge_strength: Input should be greater than or equal to 0"),
        ({"edges": "maybe"}, "edges: Input should be a valid boolean"),
    ],
)
def test_options_out_of_range(api, upload, options, message):
    assert_error(post(api, upload(), options), 422, message)


def test_malformed_strokes(api, upload):
    files = {"image": upload()["image"]}
    assert_error(
        post(api, files, {"strokes": '[{"label": 1, "points": [[1, 2]'}), 422, "strokes are malformed: Invalid JSON"
    )


def test_a_scribble_image_sent_as_strokes_is_named(api, upload):
    response = post(api, {"image": upload()["image"], "strokes": upload()["scribbles"]})
    assert_error(response, 422, "strokes: a file was sent, but `strokes` is a text form field", "the file `scribbles`")
    assert "valid string" not in response.json()["detail"]


def test_too_many_stroke_classes_are_one_short_answer_naming_the_limit(api, upload):
    strokes = [{"label": label, "points": [[label % 180, label % 120]], "width": 3} for label in range(1, 301)]
    response = post(api, {"image": upload()["image"]}, {"strokes": json.dumps(strokes)})
    assert_error(response, 422, f"the strokes have 300 classes; at most {LIMITS['max_classes']} are accepted")
    assert len(response.json()["detail"]) < 400


def test_strokes_wholly_outside_the_image_say_so(api, upload):
    strokes = [{"label": 1, "points": [[300, 10]], "width": 4}, {"label": 2, "points": [[10, -50]], "width": 4}]
    response = post(api, {"image": upload()["image"]}, {"strokes": json.dumps(strokes)})
    assert_error(response, 422, "the strokes fall outside the 180x120 image", "x from 0 to 179 and y from 0 to 119")


@pytest.mark.parametrize("strokes, message", [(None, "neither was given"), ("[]", "not both")])
def test_scribbles_xor_strokes(api, upload, strokes, message):
    files = upload() if strokes is not None else {"image": upload()["image"]}
    data = {"strokes": strokes} if strokes is not None else {}
    assert_error(post(api, files, data), 422, message)


def test_upload_over_the_byte_limit(api, upload):
    files = upload() | {"image": ("big.png", b"\0" * (LIMITS["max_upload_bytes"] + 1), "image/png")}
    assert_error(post(api, files), 413, f"limit of {LIMITS['max_upload_bytes']} bytes")


@pytest.mark.parametrize(
    "width, height, said",
    [
        (10000, 6000, "image is 10000x6000 = 60000000 pixels; this server accepts at most 50000000"),
        # Past Pillow's bomb guard (2 x its 89 MP), in this server's words and limit all the same.
        (30000, 30000, "image is larger than this server accepts: at most 50000000 pixels"),
    ],
)
def test_image_over_the_pixel_limit(api, upload, width, height, said):
    files = upload() | {"image": ("huge.png", png_claiming(width, height), "image/png")}
    assert_error(post(api, files), 413, said)


@pytest.mark.parametrize("wait", ["0", "61", "soon"])
def test_wait_out_of_range(api, upload, wait):
    assert_error(post(api, upload(), params={"wait": wait}), 422, "wait:")


UNKNOWN_ID = "00000000deadbeef00000000deadbeef"  # shaped like an id, never issued


@pytest.mark.parametrize("result", ["", "/mask", "/overlay"])
def test_unknown_job(api, result):
    assert_error(api.get(f"/jobs/{UNKNOWN_ID}{result}"), 404, f"job {UNKNOWN_ID} not found")
    assert_error(api.delete(f"/jobs/{UNKNOWN_ID}"), 404, "not found")


@pytest.mark.parametrize("job_id", ["no-such-job", "rq:job:x", "gdc:upload:x", "*", UNKNOWN_ID + "0", UNKNOWN_ID.upper()])
def test_a_malformed_job_id_is_refused_before_redis(api, job_id):
    assert_error(api.get(f"/jobs/{job_id}"), 422, "job_id: String should match pattern")


def test_results_before_the_job_ended(api, upload):
    created = post(api, upload(), SLOW)
    assert created.status_code == 202
    job_id = created.json()["id"]
    for result in ("mask", "overlay", "probabilities", "uncertainty"):
        response = api.get(f"/jobs/{job_id}/{result}")
        assert response.status_code == 409
        assert response.json()["detail"].startswith(f"job {job_id} is ")  # queued or running
    assert api.delete(f"/jobs/{job_id}").json()["status"] == "canceled"
    assert_error(api.get(f"/jobs/{job_id}/mask"), 409, "is canceled")


def test_streamed_upload_over_the_limit_without_content_length(make_client):
    def body():  # a valid multipart stream with a 3 MB file, chunked: no Content-Length
        yield b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
        for _ in range(30):
            yield b"\0" * 100_000
        yield b"\r\n--x--\r\n"

    client = make_client(**LIMITS)
    response = client.post("/segment", content=body(), headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "larger than this server's limit")


def test_private_callback_urls_are_refused(make_client, upload):
    response = post(make_client(), upload(), {"callback_url": "http://127.0.0.1:9/hook"})
    assert_error(response, 422, "'127.0.0.1' is 127.0.0.1, a loopback or private address")
    assert_error(post(make_client(), upload(), {"callback_url": "ftp://example.org/x"}), 422, "absolute http(s) URL")


def test_an_idempotency_key_cannot_be_reused_for_another_body(client, upload):
    key = {"Idempotency-Key": "order-17"}
    assert post(client, upload(2), headers=key).status_code == 202
    assert_error(post(client, upload(3), headers=key), 422, "'order-17' was already used with a different request")


def test_options_come_from_the_engine_and_the_settings(make_client):
    body = make_client(max_steps=10, api_keys="k").get("/options", headers={"X-API-Key": "k"}).json()
    fields = SegmentOptions.model_fields
    # the engine's 20 capped by 10
    assert body["fields"]["steps"] == {"default": 10, "minimum": 0, "maximum": 10, "integer": True}
    assert body["fields"]["samples"]["default"] == fields["samples"].default
    assert body["fields"]["sigma"]["maximum"] == fields["sigma"].metadata[1].le
    assert body["fields"]["seed"]["maximum"] == 2**53 - 1  # exact in a browser's number
    assert body["fields"]["edge_strength"] == {
        "default": fields["edge_strength"].default, "minimum": 0, "maximum": 10_000, "integer": False
    }
    assert body["switches"] == {"edges": True}
    assert body["choices"] == {"conv": {"default": fields["conv"].default, "choices": list(HEAD_CONVS)}}
    assert body["descriptions"] == {name: fields[name].description for name in request_options()}
    assert body["auth_required"] is True
    assert set(body) == {
        "fields", "switches", "choices", "descriptions", "max_classes", "max_upload_bytes", "max_pixels", "auth_required"
    }


@pytest.mark.parametrize(
    "method, path",
    [
        ("POST", "/segment"),
        ("GET", f"/jobs/{UNKNOWN_ID}"),
        ("DELETE", f"/jobs/{UNKNOWN_ID}"),
        ("GET", f"/jobs/{UNKNOWN_ID}/mask"),
        ("GET", "/options"),
        ("GET", "/metrics"),
    ],
)
@pytest.mark.parametrize("key", [None, "wrong"])
def test_api_keys_guard_every_endpoint(make_client, method, path, key):
    client = make_client(api_keys="k1,k2")
    headers = {"X-API-Key": key} if key else {}
    assert_error(client.request(method, path, headers=headers), 401, "missing or invalid API key")


def test_a_valid_key_passes_and_public_endpoints_need_none(make_client):
    client = make_client(api_keys="k1,k2")
    assert client.get("/options", headers={"X-API-Key": "k2"}).status_code == 200
    assert client.get(f"/jobs/{UNKNOWN_ID}", headers={"X-API-Key": "k1"}).status_code == 404
    assert client.get("/healthz").json() == {"status": "ok"}
    assert_error(client.get("/readyz"), 503, "no live worker listens on queue 'gdc'")
    for path in ("/", "/static/app.js"):
        assert client.get(path).status_code in (200, 404)  # the page's files belong to the web-page work


def test_cors_for_configured_origins_only(make_client):
    client = make_client(cors_origins="https://app.example", api_keys="k")
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key"}
    allowed = client.options("/segment", headers={"Origin": "https://app.example", **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    refused = client.options("/segment", headers={"Origin": "https://other.example", **preflight})
    assert "access-control-allow-origin" not in refused.headers
    denied = client.get("/options", headers={"Origin": "https://app.example"})  # errors readable by the page too
    assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == "https://app.example"


def test_openapi_documents_the_contract(client):
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/segment", "/jobs/{job_id}", "/jobs/{job_id}/mask", "/options", "/healthz", "/readyz", "/metrics"} <= set(
        spec["paths"]
    )
    form = spec["components"]["schemas"]["SegmentForm"]["properties"]
    assert json.loads(form["strokes"]["examples"][0])[0]["label"] == 1
    # The form is the request's own fields and every option the engine's model lets a request set.
    request_fields = {"image", "scribbles", "previous", "strokes", "box", "points", "callback_url"}
    assert set(form) == request_fields | set(request_options())
    assert form["steps"]["description"] == SegmentOptions.model_fields["steps"].description
    assert "X-GDC-Signature" in spec["info"]["description"]
    assert "202" in spec["paths"]["/segment"]["post"]["responses"]


def test_metrics_are_prometheus_text(client, upload):
    post(client, upload())
    text = client.get("/metrics").text
    assert 'gdc_jobs{state="queued"} 1.0' in text
    assert 'gdc_http_requests_total{method="POST",route="/segment",status="202"} 1.0' in text


def test_the_api_process_never_imports_torch(redis_url):
    code = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "from service.app import create_app\n"
        "from service.settings import Settings\n"
        "import apps.cli, gdc.client\n"
        "apps.cli.build_parser()  # registers serve, worker and submit\n"
        f"client = TestClient(create_app(Settings(redis_url={redis_url!r})))\n"
        "assert client.get('/options').status_code == 200\n"
        "assert client.post('/segment', files={'image': ('a', b'x')}).status_code == 422\n"
        "assert 'torch' not in sys.modules, 'the API imported torch'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_an_image_stays_an_image(client, upload, coffee):
    """A JPEG and a grey PNG are accepted as well as RGB PNG (type sniffed from the bytes)."""
    import io

    from PIL import Image

    jpeg = io.BytesIO()
    Image.fromarray(coffee).save(jpeg, format="JPEG")
    for image in (jpeg.getvalue(), encode_png(coffee[..., 0])):
        response = post(client, upload() | {"image": ("noext", image, "application/octet-stream")})
        assert response.status_code == 202, response.text


def test_the_edge_switch_defaults_on_and_turns_off():
    from service.schemas import resolve_options
    from service.settings import Settings

    assert resolve_options({}, Settings())["edges"] is True
    resolved = resolve_options({"edges": False, "edge_strength": 20.0}, Settings())
    assert (resolved["edges"], resolved["edge_strength"]) == (False, 20.0)


def test_the_app_freezes_what_exists_when_it_starts(make_settings):
    # What startup made lives as long as the process; frozen, the cycle collector's full passes skip it.
    from fastapi.testclient import TestClient

    from service.app import create_app

    gc.unfreeze()
    with TestClient(create_app(make_settings())) as client:
        assert gc.get_freeze_count() > 0
        assert client.get("/healthz").status_code == 200
