"""The web page at ``/``, driven like a user in headless Chromium against a live service.

The screenshot of a finished segmentation lands in ``artifacts/web-page.png``, and with
``GDC_UPDATE_DOCS=1`` also in ``docs/web-page.png``, the README's picture of the page.
"""
from __future__ import annotations

import io
import os
import re
from email.parser import BytesParser
from email.policy import HTTP

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)").expect

SEGMENT_SECONDS = 120  # a job on the CPU worker with the small options below takes a few seconds
SMALL = {"steps": 3, "samples": 2}

# Strokes on the coffee photo (225x150, image pixels), each a polyline: table, cup and saucer, coffee.
TABLE = [[(8, 30), (10, 80), (20, 120)], [(70, 6), (190, 6)], [(205, 20), (214, 70), (212, 120)]]
CUP = [[(45, 110), (80, 132), (120, 136), (160, 120)], [(70, 62), (74, 80)]]
COFFEE = [[(85, 48), (110, 55), (132, 60)]]


class ScribblePage:
    """The page as a user sees it: load, pick, paint, segment, read back."""

    def __init__(self, page, live: bool = False) -> None:
        """``live``: keep the page's live mode (on by default); off, the test segments with the button."""
        self.page = page
        # Chromium reports the body of a multipart request with files only to a route that intercepts it.
        page.route("**/segment", lambda route: route.continue_())
        expect(page.locator("#option-fields input").first).to_be_attached()  # GET /options answered
        page.get_by_label("Live: segment after each stroke").set_checked(live)

    def load(self, path) -> None:
        self.page.set_input_files("#image-file", str(path))
        width, height = Image.open(path).size
        expect(self.page.locator("#status")).to_have_text(f"{path.name}: {width}×{height}")

    def set_options(self, **values) -> None:
        if self.page.locator("details.options").get_attribute("open") is None:
            self.page.get_by_text("Options").click()
        for name, value in values.items():
            self.page.get_by_label(name.replace("_", " "), exact=True).fill(str(value))

    def screen_point(self, x: float, y: float) -> tuple[float, float]:
        """Where the centre of image pixel (x, y) is on screen, at the current zoom."""
        box = self.page.locator("#scribble-layer").bounding_box()
        width, height = self.canvas_size()
        return box["x"] + (x + 0.5) * box["width"] / width, box["y"] + (y + 0.5) * box["height"] / height

    def zoom(self) -> float:
        """Screen pixels per image pixel."""
        return self.page.locator("#scribble-layer").bounding_box()["width"] / self.canvas_size()[0]

    def canvas_size(self) -> tuple[int, int]:
        return tuple(self.page.eval_on_selector("#scribble-layer", "c => [c.width, c.height]"))

    def paint(self, value: int, strokes: list[list[tuple[float, float]]]) -> None:
        """Strokes in class ``value``, each through its points (image pixels)."""
        self.page.locator(f'.class-pick[value="{value}"]').check()
        mouse = self.page.mouse
        for points in strokes:
            mouse.move(*self.screen_point(*points[0]))
            mouse.down()
            for point in points[1:]:
                mouse.move(*self.screen_point(*point), steps=8)
            mouse.up()

    def pixels(self, layer: str) -> np.ndarray:
        """A canvas layer's RGBA pixels, (H, W, 4) uint8."""
        flat = self.page.eval_on_selector(
            f"#{layer}-layer", "c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)"
        )
        width, height = self.canvas_size()
        return np.array(flat, dtype=np.uint8).reshape(height, width, 4)

    def colour(self, value: int) -> tuple[int, int, int]:
        hex_colour = self.page.locator(f'.class-pick[value="{value}"] ~ .class-colour').input_value()
        return tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))

    def segment(self):
        """Click Segment and wait for the result; the POST /segment response (request included)."""
        with self.page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/segment")) as posted:
            self.page.get_by_role("button", name="Segment").click()
        expect(self.page.locator("#status")).to_contain_text("Done", timeout=SEGMENT_SECONDS * 1000)
        return posted.value

    def download(self, button: str) -> Image.Image:
        with self.page.expect_download() as download:
            self.page.get_by_role("button", name=button).click()
        return Image.open(download.value.path())


def sent_form(request) -> dict[str, bytes]:
    """The fields of a captured multipart POST /segment request, by name."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.post_data_buffer)
    return {part.get_param("name", header="content-disposition"): part.get_payload(decode=True) for part in message.iter_parts()}


def sent_scribbles(request) -> Image.Image:
    return Image.open(io.BytesIO(sent_form(request)["scribbles"]))


@pytest.fixture
def scribbler(open_page, live_server) -> ScribblePage:
    return ScribblePage(open_page(live_server))


@pytest.mark.parametrize("strokes", [[TABLE, CUP], [TABLE, CUP, COFFEE]], ids=["2-classes", "3-classes"])
def test_segment_refine_and_download(scribbler, sample_image, live_server, strokes):
    page = scribbler.page
    scribbler.load(sample_image)
    scribbler.set_options(**SMALL)
    for _ in strokes[2:]:
        page.get_by_role("button", name="Add class").click()
    for value, points in enumerate(strokes, start=1):
        scribbler.paint(value, points)
    classes = set(range(1, len(strokes) + 1))

    first = scribbler.segment()
    sent = sent_scribbles(first.request)
    assert (sent.mode, sent.size) == ("L", (225, 150))
    labels = np.asarray(sent)
    assert set(np.unique(labels)) == {0} | classes
    for value, points_of_strokes in enumerate(strokes, start=1):
        assert all(labels[y, x] == value for points in points_of_strokes for x, y in points)  # under the pointer
    form = sent_form(first.request)
    assert (form["steps"], form["samples"]) == (b"3", b"2")  # as set in the options panel
    assert form["edges"] == b"true"  # the switch's default, sent as the form's boolean

    # Refine: one more stroke, segment again: the job refines the first one, the image stays on the server.
    scribbler.paint(1, [[(5, 140), (30, 145)]])
    second = scribbler.segment()
    assert second.json()["id"] != first.json()["id"]
    assert np.asarray(sent_scribbles(second.request))[142, 15] == 1
    refined = sent_form(second.request)
    assert "image" not in refined and refined["previous"] == first.json()["id"].encode()
    assert httpx.get(f"{live_server}/jobs/{second.json()['id']}").json()["warm"] is True

    mask = scribbler.download("Download mask")
    assert (mask.mode, mask.size) == ("L", (225, 150))
    values = np.asarray(mask)
    assert set(np.unique(values)) <= classes  # the scribbles' own values (few steps: maybe not all of them)
    served = Image.open(io.BytesIO(httpx.get(f"{live_server}/jobs/{second.json()['id']}/mask").content))
    assert np.array_equal(values, np.asarray(served))

    # The overlay paints each pixel in its class colour, exactly where the mask has that class.
    result = scribbler.pixels("result")
    for value in classes:
        assert np.all(result[values == value][:, :3] == scribbler.colour(value))
    assert np.all(result[..., 3] == 255)

    # The overlay download is what is shown: the image, and the classes at the slider's opacity.
    page.get_by_label("Overlay opacity").fill("0.4")
    overlay = np.asarray(scribbler.download("Download overlay").convert("RGB"), dtype=float)
    colours = np.zeros((256, 3))
    colours[list(classes)] = [scribbler.colour(value) for value in classes]
    expected = 0.6 * np.asarray(Image.open(sample_image).convert("RGB"), dtype=float) + 0.4 * colours[values]
    assert np.abs(overlay - expected).max() <= 2

    page.get_by_label("Show uncertainty").check()
    expect(page.locator("#result-layer")).to_have_attribute("aria-label", re.compile("uncertainty"))
    shown = scribbler.pixels("result")
    served = np.asarray(Image.open(io.BytesIO(httpx.get(f"{live_server}/jobs/{second.json()['id']}/uncertainty").content)))
    assert np.all(shown[..., 3] == 255)
    assert all(np.array_equal(shown[..., channel], served) for channel in range(3))


def test_the_uncertainty_shown_follows_each_round(scribbler, sample_image, live_server):
    """With the uncertainty shown, a refine's map replaces the last one once the job has stored it (its mask
    comes first)."""
    page = scribbler.page
    scribbler.load(sample_image)
    scribbler.set_options(**SMALL)
    for value, points in enumerate([TABLE, CUP], start=1):
        scribbler.paint(value, points)
    scribbler.segment()
    page.get_by_label("Show uncertainty").check()
    scribbler.paint(1, [[(5, 140), (30, 145)]])
    second = scribbler.segment()
    expect(page.locator("#result-layer")).to_have_attribute("aria-label", re.compile("uncertainty"))
    served = httpx.get(f"{live_server}/jobs/{second.json()['id']}/uncertainty")
    assert served.status_code == 200
    levels, shown = np.asarray(Image.open(io.BytesIO(served.content))), scribbler.pixels("result")
    assert all(np.array_equal(shown[..., channel], levels) for channel in range(3))
    expect(page.locator("#error")).to_be_empty()


def test_a_finished_segmentation_follows_the_scribbles(scribbler, sample_image, artifacts):
    """Enough steps for a real result; its screenshot is artifacts/web-page.png (and docs/web-page.png)."""
    page = scribbler.page
    scribbler.load(sample_image)
    scribbler.set_options(steps=30, samples=4)
    page.get_by_role("button", name="Add class").click()
    for value, (name, strokes) in enumerate({"table": TABLE, "cup": CUP, "coffee": COFFEE}.items(), start=1):
        page.get_by_label(f"Name of class {value}").fill(name)
        scribbler.paint(value, strokes)
    scribbler.segment()

    scribbles = scribbler.pixels("scribble")
    result = scribbler.pixels("result")
    painted = scribbles[..., 3] > 0
    agree = np.all(result[painted][:, :3] == scribbles[painted][:, :3], axis=1).mean()
    assert agree > 0.9, f"the result has the painted class on only {agree:.0%} of the painted pixels"

    page.set_viewport_size({"width": 1280, "height": 1180})  # the whole panel
    page.locator(".panel").evaluate("panel => panel.scrollTo(0, 0)")
    page.get_by_role("button", name="Fit").click()
    page.screenshot(path=artifacts / "web-page.png")
    if os.environ.get("GDC_UPDATE_DOCS") == "1":
        page.screenshot(path=REPO / "docs" / "web-page.png")


def test_live_mode_follows_five_strokes_and_cancels_stale_jobs(open_page, live_server, sample_image):
    """Live mode on (the default): each stroke segments by itself; a stroke made while a job runs cancels it."""
    page = open_page(live_server)
    expect(page.get_by_label("Live: segment after each stroke")).to_be_checked()
    scribbler = ScribblePage(page, live=True)
    scribbler.load(sample_image)
    # Refines that train their whole budget take seconds here, so the next stroke comes while each runs.
    scribbler.set_options(**SMALL, refine_steps=300, refine_stop_loss=0)
    posted, deleted = [], []
    page.on("response", lambda r: posted.append(r) if r.request.method == "POST" and r.url.endswith("/segment") else None)
    page.on("request", lambda r: deleted.append(r.url.rsplit("/", 1)[1]) if r.method == "DELETE" else None)
    strokes = [(1, TABLE[0]), (2, CUP[0]), (1, TABLE[1]), (2, CUP[1]), (1, TABLE[2])]
    is_post = lambda r: r.request.method == "POST" and r.url.endswith("/segment")  # noqa: E731

    scribbler.paint(strokes[0][0], [strokes[0][1]])
    expect(page.locator("#status")).to_have_text("Live: paint a second class to segment")
    with page.expect_response(is_post):
        scribbler.paint(strokes[1][0], [strokes[1][1]])
    expect(page.locator("#status")).to_contain_text("Done", timeout=SEGMENT_SECONDS * 1000)
    for value, points in strokes[2:]:
        with page.expect_response(is_post):  # each accepted before the next stroke starts
            scribbler.paint(value, [points])
    expect(page.locator("#status")).to_contain_text("Done", timeout=SEGMENT_SECONDS * 1000)

    ids = [response.json()["id"] for response in posted]
    assert len(ids) == 4  # one job per stroke, none for the lone first class
    cold, *stale, last = ids
    assert "image" in sent_form(posted[0].request) and "previous" not in sent_form(posted[0].request)
    assert all(sent_form(response.request)["previous"] == cold.encode() for response in posted[1:])  # refines
    assert set(deleted) == set(stale)
    for job_id in stale:
        assert httpx.get(f"{live_server}/jobs/{job_id}").json()["status"] == "canceled"
    job = httpx.get(f"{live_server}/jobs/{last}").json()
    assert (job["status"], job["warm"]) == ("succeeded", True)
    sent = np.asarray(sent_scribbles(posted[-1].request))
    assert all(sent[y, x] == value for value, points in strokes for x, y in points)  # all five strokes

    mask = np.asarray(Image.open(io.BytesIO(httpx.get(f"{live_server}/jobs/{last}/mask").content)))
    shown = scribbler.pixels("result")
    for value in (1, 2):
        assert np.all(shown[mask == value][:, :3] == scribbler.colour(value))


def test_live_mode_never_sends_a_stroke_still_being_painted(open_page, live_server, sample_image):
    """A stroke begun within the live delay after the last one is sent whole, once it ends, never half-painted."""
    page = open_page(live_server)
    scribbler = ScribblePage(page, live=True)
    scribbler.load(sample_image)
    scribbler.set_options(**SMALL)
    scribbler.paint(1, [TABLE[0]])
    posted = []
    page.on("request", lambda r: posted.append(r) if r.method == "POST" and r.url.endswith("/segment") else None)
    scribbler.paint(2, [CUP[0]])  # two classes now: the live delay starts
    held = CUP[1]
    page.mouse.move(*scribbler.screen_point(*held[0]))
    page.mouse.down()  # at once, well within the delay, and held past it while the stroke goes on
    for step in range(1, 11):
        x, y = (a + (b - a) * step / 10 for a, b in zip(held[0], held[-1]))
        page.mouse.move(*scribbler.screen_point(x, y))
        page.wait_for_timeout(60)
    page.mouse.up()
    expect(page.locator("#status")).to_contain_text("Done", timeout=SEGMENT_SECONDS * 1000)
    assert posted
    for request in posted:  # the held stroke's ends: both in the scribbles sent, or neither
        sent = np.asarray(sent_scribbles(request))
        assert (sent[held[0][1], held[0][0]] == 2) == (sent[held[-1][1], held[-1][0]] == 2)
    assert np.asarray(sent_scribbles(posted[-1]))[held[-1][1], held[-1][0]] == 2


def test_the_example_button_segments_the_example_in_one_click(scribbler, live_server):
    page = scribbler.page
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/segment")) as posted:
        page.get_by_role("button", name="Example").click()
    expect(page.locator("#status")).to_contain_text("Done: 3 classes", timeout=SEGMENT_SECONDS * 1000)
    example = REPO / "service" / "static" / "example"
    assert np.array_equal(np.asarray(sent_scribbles(posted.value.request)), np.asarray(Image.open(example / "coffee-scribbles.png")))
    assert sent_form(posted.value.request)["image"] == (example / "coffee.jpg").read_bytes()
    names = [page.get_by_label(f"Name of class {value}").input_value() for value in (1, 2, 3)]
    assert names == ["table", "cup and saucer", "coffee"]
    mask = np.asarray(Image.open(io.BytesIO(httpx.get(f"{live_server}/jobs/{posted.value.json()['id']}/mask").content)))
    assert set(np.unique(mask)) == {1, 2, 3}
    shown = scribbler.pixels("result")
    for value in (1, 2, 3):
        assert np.all(shown[mask == value][:, :3] == scribbler.colour(value))


def test_cancel_stops_a_running_job(scribbler, sample_image, live_server):
    page = scribbler.page
    scribbler.load(sample_image)
    scribbler.set_options(steps=httpx.get(f"{live_server}/options").json()["fields"]["steps"]["maximum"])
    scribbler.paint(1, TABLE)
    scribbler.paint(2, CUP)
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/segment")) as posted:
        page.get_by_role("button", name="Segment").click()
    expect(page.locator("#status")).to_contain_text("Running: optimise", timeout=SEGMENT_SECONDS * 1000)
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#status")).to_have_text("Canceled")
    expect(page.get_by_role("button", name="Segment")).to_be_enabled()
    expect(page.get_by_role("button", name="Cancel")).to_be_hidden()
    assert httpx.get(f"{live_server}/jobs/{posted.value.json()['id']}").json()["status"] == "canceled"


@pytest.mark.parametrize("device_scale_factor", [1, 2])
@pytest.mark.parametrize("zoom_clicks", [0, 3])
def test_strokes_land_on_the_image_pixel_under_the_pointer(open_page, live_server, sample_image, device_scale_factor, zoom_clicks):
    scribbler = ScribblePage(open_page(live_server, device_scale_factor=device_scale_factor))
    page = scribbler.page
    scribbler.load(sample_image)
    for _ in range(zoom_clicks):
        page.get_by_role("button", name="Zoom in").click()
    page.locator("#brush-size").fill("1")
    target = (37, 21)
    x, y = scribbler.screen_point(*target)
    page.mouse.click(x + 0.4 * scribbler.zoom(), y - 0.4 * scribbler.zoom())  # anywhere inside the pixel
    painted = np.argwhere(scribbler.pixels("scribble")[..., 3] > 0)
    assert painted.tolist() == [[target[1], target[0]]]


def test_undo_redo_clear_by_buttons_and_keys(scribbler, sample_image):
    page = scribbler.page
    scribbler.load(sample_image)
    painted = lambda: int((scribbler.pixels("scribble")[..., 3] > 0).sum())  # noqa: E731
    scribbler.paint(1, TABLE[:1])  # one stroke each: one undo step each
    one = painted()
    scribbler.paint(2, CUP[:1])
    two = painted()
    assert 0 < one < two

    page.keyboard.press("Control+z")
    assert painted() == one
    page.keyboard.press("Control+Shift+z")
    assert painted() == two
    expect(page.get_by_role("button", name="Redo")).to_be_disabled()
    page.get_by_role("button", name="Undo").click()
    page.get_by_role("button", name="Undo").click()
    assert painted() == 0
    page.get_by_role("button", name="Redo").click()
    assert painted() == one

    page.keyboard.press("e")  # eraser over the first stroke's start
    expect(page.get_by_label("Eraser")).to_be_checked()
    scribbler.page.mouse.click(*scribbler.screen_point(*TABLE[0][0]))
    assert painted() < one
    page.get_by_role("button", name="Clear").click()
    assert painted() == 0
    page.keyboard.press("Control+z")
    assert 0 < painted() < one


def test_classes_add_rename_recolour_up_to_the_server_limit(scribbler, sample_image, live_server):
    page = scribbler.page
    limit = httpx.get(f"{live_server}/options").json()["max_classes"]
    scribbler.load(sample_image)
    scribbler.paint(2, CUP)

    page.get_by_label("Name of class 2").fill("saucer")
    expect(page.get_by_label("Paint saucer")).to_be_checked()
    page.get_by_label("Colour of saucer").fill("#00ff00")
    x, y = CUP[0][0]
    assert tuple(scribbler.pixels("scribble")[y, x, :3]) == (0, 255, 0)

    add = page.get_by_role("button", name="Add class")
    while add.is_enabled():
        add.click()
    expect(page.locator(".class-row")).to_have_count(limit)
    page.keyboard.press("3")  # number keys pick classes 1-9; class 3 is the second foreground
    expect(page.get_by_label("Paint foreground 2")).to_be_checked()


def test_options_panel_shows_the_servers_defaults_and_limits(scribbler, live_server):
    page = scribbler.page
    served = httpx.get(f"{live_server}/options").json()
    page.get_by_text("Options").click()
    for name, limits in served["fields"].items():
        field = page.get_by_label(name.replace("_", " "), exact=True)
        expected = {"value": limits["default"], "min": limits["minimum"], "max": limits["maximum"]}
        for attribute, number in expected.items():
            shown = field.input_value() if attribute == "value" else field.get_attribute(attribute)
            assert shown in (None, "") if number is None else float(shown) == number, (name, attribute)
    for name, on in served["switches"].items():
        assert page.get_by_label(name.replace("_", " "), exact=True).is_checked() is on, name
    conv = page.get_by_label("conv", exact=True)
    assert conv.locator("option").all_inner_texts() == served["choices"]["conv"]["choices"]
    assert conv.input_value() == served["choices"]["conv"]["default"]


def _api_detail(live_server: str, image, scribbles: np.ndarray, **fields) -> str:
    buffer = io.BytesIO()
    Image.fromarray(scribbles).save(buffer, format="PNG")
    files = {"image": image.read_bytes(), "scribbles": buffer.getvalue()}
    answer = httpx.post(f"{live_server}/segment", files=files, data={k: str(v) for k, v in fields.items()})
    assert answer.status_code == 422
    return answer.json()["detail"]


@pytest.mark.parametrize("problem", ["one class", "too many steps"])
def test_api_errors_are_shown_in_the_apis_words(scribbler, sample_image, live_server, problem):
    page = scribbler.page
    scribbler.load(sample_image)
    scribbler.paint(1, TABLE)
    sent = np.zeros((150, 225), np.uint8)
    sent[20, 20] = 1
    fields = {}
    if problem == "too many steps":
        scribbler.paint(2, CUP)
        sent[30, 30] = 2
        fields["steps"] = httpx.get(f"{live_server}/options").json()["fields"]["steps"]["maximum"] + 1
        scribbler.set_options(**fields)
    detail = _api_detail(live_server, sample_image, sent, **fields)
    page.get_by_role("button", name="Segment").click()
    expect(page.get_by_role("alert")).to_have_text(detail)
    expect(page.get_by_role("button", name="Segment")).to_be_enabled()


def test_api_key_is_asked_for_kept_and_sent(open_page, keyed_server, api_key, sample_image):
    page = open_page(keyed_server)
    expect(page.get_by_role("alert")).to_have_text("missing or invalid API key")
    expect(page.get_by_label("API key")).to_be_focused()
    page.get_by_label("API key").fill(api_key)
    page.get_by_label("API key").press("Enter")
    scribbler = ScribblePage(page)
    expect(page.get_by_role("alert")).to_be_hidden()
    assert page.evaluate("localStorage.getItem('gdc.apiKey')") == api_key

    page.reload()
    scribbler = ScribblePage(page)  # the kept key opens /options at once
    scribbler.load(sample_image)
    scribbler.set_options(**SMALL)
    scribbler.paint(1, TABLE)
    scribbler.paint(2, CUP)
    assert scribbler.segment().request.headers["x-api-key"] == api_key
    assert scribbler.download("Download mask").size == (225, 150)


@pytest.mark.parametrize("way", ["drop", "paste"])
def test_image_opens_by_drop_and_paste(scribbler, sample_image, way):
    scribbler.page.evaluate(
        """([bytes, way]) => {
            const files = new DataTransfer();
            files.items.add(new File([new Uint8Array(bytes)], "coffee.png", { type: "image/png" }));
            const event = way === "drop"
                ? new DragEvent("drop", { dataTransfer: files, bubbles: true, cancelable: true })
                : new ClipboardEvent("paste", { clipboardData: files, bubbles: true, cancelable: true });
            (way === "drop" ? document.getElementById("stage") : document).dispatchEvent(event);
        }""",
        [list(sample_image.read_bytes()), way],
    )
    expect(scribbler.page.locator("#status")).to_have_text("coffee.png: 225×150")
    assert scribbler.canvas_size() == (225, 150)


def test_label_png_encoder_matches_pillow(scribbler):
    """The page's own grey PNG encoder, read back by Pillow as the server reads scribbles."""
    width, height = 300, 7  # rows longer than 256 bytes, values 0..255
    encoded = scribbler.page.evaluate(
        """async ([width, height]) => {
            const { encodeGreyPng } = await import("./static/png.js");
            const values = Uint8Array.from({ length: width * height }, (_, i) => (i * 7) % 256);
            return Array.from(new Uint8Array(await (await encodeGreyPng(width, height, values)).arrayBuffer()));
        }""",
        [width, height],
    )
    image = Image.open(io.BytesIO(bytes(encoded)))
    assert (image.mode, image.size) == ("L", (width, height))
    assert np.array_equal(np.asarray(image).ravel(), (np.arange(width * height) * 7) % 256)


def test_label_map_counts_its_classes_as_pixels_change(scribbler):
    """The page's label map: the classes painted, counted as pixels change, against a pass over its values."""
    steps = scribbler.page.evaluate(
        """async () => {
            const { LabelMap } = await import("./static/labelmap.js");
            const map = new LabelMap(40, 30);
            const distinct = () => new Set(map.values.filter((value) => value > 0)).size;
            const steps = [];
            const record = (name) => steps.push([name, map.classCount, distinct()]);
            const stroke = (value, a, b) => {
                map.begin(value);
                map.line(a, b, 5);
                map.end();
                record(`paint ${value}`);
            };
            record("empty");
            stroke(1, [2, 2], [30, 2]);
            stroke(2, [2, 20], [30, 20]);
            stroke(2, [2, 20], [30, 20]);  // the same pixels again: nothing changes
            stroke(3, [10, 0], [10, 29]);  // crosses both
            stroke(0, [0, 2], [39, 2]);  // erases class 1
            map.undo(); record("undo");
            map.redo(); record("redo");
            map.clear(); record("clear");
            map.undo(); record("undo clear");
            return steps;
        }"""
    )
    counted = [count for _, count, _ in steps]
    assert counted == [distinct for _, _, distinct in steps], steps
    assert counted == [0, 1, 2, 2, 3, 2, 3, 2, 0, 2], steps
