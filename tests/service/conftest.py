"""Fixtures for the service tests: the coffee image and its scribbles, limits, the shared live stack.

The Redis server, in-process clients and live processes come from ``tests/conftest.py``.
"""
from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

import httpx
import numpy as np
import pytest

from gdc.imageio import encode_png
from tests.conftest import LiveStack

# Small engine options keep each job to a second or two on a laptop CPU.
FAST = {"steps": 3, "samples": 2, "superpixel_size": 200}
# A few more steps, so that every one of three classes shows up in the mask.
MULTI = {"steps": 10, "samples": 2, "superpixel_size": 200}
# Long enough for polls every 50 ms to see the engine's phases, however fast the machine (with FAST's 3
# steps a Xeon with AMX ran a whole job between two polls).
WATCHED = {"steps": 100, "samples": 2, "superpixel_size": 200}
# Enough steps to still be running when a test cancels or kills its worker.
SLOW = {"steps": 500, "samples": 2, "superpixel_size": 200}


# --- images and scribbles -------------------------------------------------------------


@pytest.fixture(scope="session")
def coffee() -> np.ndarray:
    """scikit-image's coffee cup at 180x120, (H, W, 3) uint8."""
    from skimage import data, transform

    return (transform.resize(data.coffee(), (120, 180)) * 255).round().astype(np.uint8)


def draw_scribbles(shape: tuple[int, int], classes: int) -> np.ndarray:
    """Rectangles on the coffee image: 1 the crema, 2 the table, 3 the saucer (when classes == 3)."""
    scribbles = np.zeros(shape, np.uint8)
    scribbles[35:48, 70:105] = 1
    scribbles[5:25, 5:35] = 2
    scribbles[50:100, 150:175] = 2
    if classes == 3:
        scribbles[70:90, 28:45] = 3
        scribbles[103:110, 70:110] = 3
    return scribbles


@pytest.fixture(scope="session")
def upload(coffee) -> Callable[..., dict]:
    """Multipart ``files`` for POST /segment: the coffee image and K-class scribbles."""

    def make(classes: int = 2, scribbles: np.ndarray | None = None) -> dict:
        labels = draw_scribbles(coffee.shape[:2], classes) if scribbles is None else scribbles
        return {
            "image": ("coffee.png", encode_png(coffee), "image/png"),
            "scribbles": ("s.png", encode_png(labels), "image/png"),
        }

    return make


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` but whose data is a single tiny row."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0\0")) + chunk(b"IEND", b"")


# Limits the error tests rely on, shared by in-process apps and the main live stack.
LIMITS = {"max_classes": 3, "max_upload_bytes": 1_000_000}
CALLBACK_SECRET = "test-secret"


@pytest.fixture(scope="session")
def live(live_stacks) -> LiveStack:
    """The shared live stack: API and one worker, with short result TTL and local callbacks allowed."""
    return live_stacks(
        workers=1,
        **LIMITS,
        result_ttl=6,
        heartbeat_ttl=3,
        allow_private_callbacks="true",
        callback_secret=CALLBACK_SECRET,
        callback_backoff=1,
    )


@pytest.fixture(params=["in-process", "live"])
def api(request, make_client):
    """An httpx-style client on an in-process app or on the live server, with the same limits."""
    if request.param == "in-process":
        yield make_client(**LIMITS)
    else:
        with httpx.Client(base_url=request.getfixturevalue("live").url, timeout=30) as client:
            yield client
