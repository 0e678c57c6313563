"""The web page's box and click prompts (issue 44), driven like a user in headless Chromium.

The page's classes start as background (1) and foreground (2); a prompt's object is the API's
class 1, so rounds with prompts swap 1 and 2 both ways and the object shows as the foreground.
"""
from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.browser.test_web_page import SEGMENT_SECONDS, SMALL, TABLE, ScribblePage, expect, sent_form

BOX = (25, 4, 185, 150)  # around the cup and saucer of the 225x150 coffee photo: x0, y0, x1, y1 (x1, y1 excluded)
ON_CUP, ON_TABLE = (110, 70), (30, 12)  # a pixel of the cup, and one of the table inside BOX's corner
BACKGROUND, FOREGROUND = 1, 2


class PromptPage(ScribblePage):
    def drag_box(self, x0: int, y0: int, x1: int, y1: int) -> None:
        """Drag the box tool from pixel (x0, y0) to pixel (x1 - 1, y1 - 1), the box's last one."""
        self.page.get_by_role("radio", name="Box").check()
        mouse = self.page.mouse
        mouse.move(*self.screen_point(x0, y0))
        mouse.down()
        mouse.move(*self.screen_point(x1 - 1, y1 - 1), steps=6)
        mouse.up()

    def click(self, x: int, y: int, on_object: bool = True, button: str = "left") -> None:
        self.page.get_by_role("radio", name="Click").check()
        keyboard = self.page.keyboard
        if not on_object:
            keyboard.down("Shift")
        self.page.mouse.click(*self.screen_point(x, y), button=button)
        if not on_object:
            keyboard.up("Shift")

    def prompts(self) -> str:
        return self.page.locator("#prompt-layer").get_attribute("aria-label")

    def painted(self) -> int:
        return int((self.pixels("scribble")[..., 3] > 0).sum())

    def classes_shown(self) -> np.ndarray:
        """The result layer as page classes: the value whose colour each pixel has (0 for none)."""
        shown = self.pixels("result")[..., :3]
        classes = np.zeros(shown.shape[:2], np.uint8)
        for value in (BACKGROUND, FOREGROUND):
            classes[np.all(shown == self.colour(value), axis=-1)] = value
        return classes


@pytest.fixture
def prompter(open_page, live_server, sample_image) -> PromptPage:
    page = PromptPage(open_page(live_server))
    page.load(sample_image)
    return page


def swap(values: np.ndarray) -> np.ndarray:
    return np.choose(values, [0, 2, 1])


@pytest.mark.parametrize("zoom_clicks", [0, 2])
def test_box_and_clicks_are_drawn_over_the_pixels_under_the_pointer(prompter, zoom_clicks):
    page = prompter.page
    for _ in range(zoom_clicks):
        page.get_by_role("button", name="Zoom in").click()
    page.keyboard.press("c")
    expect(page.get_by_role("radio", name="Click")).to_be_checked()
    page.keyboard.press("r")
    expect(page.get_by_role("radio", name="Box")).to_be_checked()
    prompter.drag_box(40, 30, 121, 101)
    assert prompter.prompts() == "Prompts: a box from 40,30 to 121,101"
    outline = page.locator("#prompt-layer rect").bounding_box()  # its 2 px line included
    left, top = prompter.screen_point(40 - 0.5, 30 - 0.5)
    right, bottom = prompter.screen_point(121 - 0.5, 101 - 0.5)
    drawn = (outline["x"], outline["y"], outline["x"] + outline["width"], outline["y"] + outline["height"])
    assert drawn == pytest.approx((left - 1, top - 1, right + 1, bottom + 1), abs=0.6)

    prompter.click(80, 60)
    prompter.click(100, 90, on_object=False)
    prompter.click(60, 50, button="right")  # off the object too, with no menu
    assert prompter.prompts() == "Prompts: a box from 40,30 to 121,101; 1 clicks on the object, 2 off it"
    dots = page.locator("#prompt-layer circle")
    assert [dots.nth(i).get_attribute("class") for i in range(3)] == ["on-object", "off-object", "off-object"]
    dot = dots.first.bounding_box()
    centre = (dot["x"] + dot["width"] / 2, dot["y"] + dot["height"] / 2)
    assert centre == pytest.approx(prompter.screen_point(80, 60), abs=1)
    assert prompter.painted() == 0  # prompts are no strokes

    prompter.drag_box(10, 10, 30, 20)  # a second box replaces the first
    expect(page.locator("#prompt-layer rect")).to_have_count(1)
    assert prompter.prompts().startswith("Prompts: a box from 10,10 to 30,20;")


def test_undo_redo_and_clear_take_prompts_and_strokes_in_turn(prompter):
    page = prompter.page
    prompter.paint(BACKGROUND, TABLE[:1])
    stroke = prompter.painted()
    prompter.drag_box(40, 30, 121, 101)
    prompter.click(80, 60)
    page.keyboard.press("b")
    prompter.paint(FOREGROUND, [[(70, 62), (74, 80)]])
    assert prompter.painted() > stroke

    page.keyboard.press("Control+z")  # the last stroke
    assert prompter.painted() == stroke
    assert prompter.prompts() == "Prompts: a box from 40,30 to 121,101; 1 clicks on the object, 0 off it"
    page.get_by_role("button", name="Undo").click()  # the click
    assert prompter.prompts() == "Prompts: a box from 40,30 to 121,101"
    page.keyboard.press("Control+z")  # the box
    assert prompter.prompts() == "Prompts: none"
    assert prompter.painted() == stroke
    page.keyboard.press("Control+Shift+z")
    page.get_by_role("button", name="Redo").click()
    assert prompter.prompts() == "Prompts: a box from 40,30 to 121,101; 1 clicks on the object, 0 off it"

    page.get_by_role("button", name="Clear").click()  # strokes and prompts, one step
    assert (prompter.prompts(), prompter.painted()) == ("Prompts: none", 0)
    page.keyboard.press("Control+z")
    assert prompter.painted() == stroke
    assert prompter.prompts() == "Prompts: a box from 40,30 to 121,101; 1 clicks on the object, 0 off it"


def test_the_page_sends_box_and_points_in_image_pixels_with_strokes_swapped(prompter):
    """The form as the API's contract has it, whatever the zoom; the server's answer is stubbed here."""
    page = prompter.page
    posted = []

    def refuse(route):
        posted.append(sent_form(route.request))
        route.fulfill(status=422, json={"detail": "stubbed"})

    page.unroute("**/segment")
    page.route("**/segment", refuse)
    page.get_by_role("button", name="Zoom in").click()
    prompter.drag_box(*BOX)
    page.get_by_role("button", name="Segment").click()
    expect(page.get_by_role("alert")).to_have_text("stubbed")
    assert posted[-1]["box"] == b"25,4,185,150"
    assert "scribbles" not in posted[-1] and "points" not in posted[-1]  # a box alone needs no strokes

    prompter.click(*ON_CUP)
    prompter.click(*ON_TABLE, on_object=False)
    page.keyboard.press("b")
    prompter.paint(BACKGROUND, TABLE[:1])
    page.get_by_role("button", name="Segment").click()
    expect(page.get_by_role("alert")).to_have_text("stubbed")
    assert len(posted) == 2
    form = posted[-1]
    assert json.loads(form["points"]) == [[*ON_CUP, 1], [*ON_TABLE, 0]]
    assert form["box"] == b"25,4,185,150" and "image" in form
    scribbles = np.asarray(Image.open(io.BytesIO(form["scribbles"])))
    x, y = TABLE[0][0]
    assert scribbles[y, x] == 2  # the page's background stroke, as the API's background class
    assert set(np.unique(scribbles)) == {0, 2}


def test_a_box_segments_the_object_and_a_click_refines_it(open_page, live_server, sample_image):
    """Live mode: the box alone segments the cup and saucer, shown as the foreground; a click off it refines."""
    prompter = PromptPage(open_page(live_server), live=True)
    page = prompter.page
    prompter.load(sample_image)
    prompter.set_options(**SMALL)
    is_post = lambda r: r.request.method == "POST" and r.url.endswith("/segment")  # noqa: E731

    with page.expect_response(is_post) as first:
        prompter.drag_box(*BOX)
    expect(page.locator("#status")).to_contain_text("Done: 2 classes", timeout=SEGMENT_SECONDS * 1000)
    expect(page.locator("#error")).to_be_empty()
    sent = sent_form(first.value.request)
    assert sent["box"] == b"25,4,185,150" and "scribbles" not in sent and "image" in sent
    job = first.value.json()["id"]
    served = np.asarray(Image.open(io.BytesIO(httpx.get(f"{live_server}/jobs/{job}/mask").content)))
    shown = prompter.classes_shown()
    assert np.array_equal(shown, swap(served))  # the API's object (1) as the page's foreground (2)
    x0, y0, x1, y1 = BOX
    inside = np.zeros(shown.shape, bool)
    inside[y0:y1, x0:x1] = True
    assert (shown[inside] == FOREGROUND).mean() > 0.5, "the object fills less than half its box"
    assert (shown[~inside] == BACKGROUND).mean() > 0.9, "the object spills out of its box"
    assert np.array_equal(np.asarray(prompter.download("Download mask")), shown)  # as shown, in the page's classes

    with page.expect_response(is_post) as second:
        prompter.click(*ON_TABLE, on_object=False)
    expect(page.locator("#status")).to_contain_text("Done: 2 classes", timeout=SEGMENT_SECONDS * 1000)
    refined = sent_form(second.value.request)
    assert refined["previous"] == job.encode() and "image" not in refined
    assert refined["box"] == b"25,4,185,150" and json.loads(refined["points"]) == [[*ON_TABLE, 0]]
    job = second.value.json()["id"]
    assert httpx.get(f"{live_server}/jobs/{job}").json()["warm"] is True
    served = np.asarray(Image.open(io.BytesIO(httpx.get(f"{live_server}/jobs/{job}/mask").content)))
    shown = prompter.classes_shown()
    assert np.array_equal(shown, swap(served))
    assert shown[ON_TABLE[1], ON_TABLE[0]] == BACKGROUND
