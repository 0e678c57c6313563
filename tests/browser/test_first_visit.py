"""What a new user meets first, in headless Chromium: the page's starting class and icon, the API docs offline.

These need no worker, so the API runs alone here (on the module's embedded Redis).
"""
from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from apps.launch import stop
from tests.browser.conftest import start_api

# ReDoc's "API docs by Redocly" footer always asks for this logo and hides it when it fails.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"

expect = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
).expect


@pytest.fixture(scope="module")
def api_alone(redis_url: str) -> Iterator[str]:
    api, url = start_api(redis_url)
    try:
        yield url
    finally:
        stop(api)


def test_painting_starts_in_the_first_foreground_class(open_page, api_alone):
    page = open_page(api_alone)
    expect(page.locator('.class-pick[value="2"]')).to_be_checked()
    expect(page.get_by_label("Name of class 2")).to_have_value("foreground")


def test_the_page_names_an_icon_the_server_has(open_page, api_alone):
    page = open_page(api_alone)
    status = page.evaluate("fetch(document.querySelector('link[rel=icon]').href).then(answer => answer.status)")
    assert status == 200


@pytest.mark.parametrize(
    ("path", "shown"),
    [("/docs", ".swagger-ui .info .title"), ("/redoc", "h1")],
    ids=["swagger-ui", "redoc"],
)
def test_the_api_docs_render_with_no_other_host(browser, api_alone, path, shown):
    """Every request to another host is refused, as on a closed network; the docs render all the same."""
    context = browser.new_context()
    elsewhere = []

    def local_only(route):
        if urlsplit(route.request.url).netloc == urlsplit(api_alone).netloc:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", local_only)
    try:
        page = context.new_page()
        page.goto(api_alone + path)
        expect(page.locator(shown).first).to_contain_text("gdc", timeout=30_000)
        expect(page.get_by_text("Segment an image from its scribbles").first).to_be_attached()
    finally:
        context.close()
    assert set(elsewhere) <= {REDOC_LOGO}
