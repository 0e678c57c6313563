"""``gdc submit`` and the client when there is no server to talk to: one line, no traceback."""
import subprocess
import sys

import httpx
import numpy as np
import pytest

from gdc.client import Client, ServerUnreachable
from gdc.imageio import encode_png
from tests.conftest import REPO, free_port


def test_the_client_names_the_url_it_could_not_reach():
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, timeout=5) as client, pytest.raises(ServerUnreachable, match=f"cannot reach .*{url}/jobs/x"):
        client.status("x")


def test_a_cause_without_a_message_is_named_by_its_kind():
    error = ServerUnreachable("http://gdc.example/segment", httpx.ReadTimeout(""))
    assert str(error) == "cannot reach the gdc server at http://gdc.example/segment: ReadTimeout"


def test_gdc_submit_without_a_server_prints_one_line_and_exits_2(tmp_path):
    image, scribbles = tmp_path / "image.png", tmp_path / "scribbles.png"
    image.write_bytes(encode_png(np.zeros((16, 16, 3), np.uint8)))
    scribbles.write_bytes(encode_png(np.eye(16, dtype=np.uint8)))
    url = f"http://127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "apps.cli", "submit", str(image), str(scribbles), "--server", url]
    done = subprocess.run(
        [*command, "-o", str(tmp_path / "mask.png"), "--superpixel-size", "50"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"gdc submit: error: cannot reach the gdc server at {url}/segment: ")
    assert "refused" in done.stderr.lower()


def test_gdc_submit_flags_are_dashed_like_gdc_segment():
    done = subprocess.run(
        [sys.executable, "-m", "apps.cli", "submit", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert "--superpixel-size" in done.stdout and "--superpixel_size" not in done.stdout


def test_gdc_submit_takes_every_option_a_request_may_set_and_no_other():
    done = subprocess.run(
        [sys.executable, "-m", "apps.cli", "submit", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert "--edges, --no-edges" in done.stdout and "--refine-samples" in done.stdout
    assert "--device" not in done.stdout and "--threads" not in done.stdout  # the worker's to choose


def test_gdc_submit_prints_a_refused_requests_detail_and_exits_2(live, tmp_path):
    image, scribbles = tmp_path / "image.png", tmp_path / "scribbles.png"
    image.write_bytes(encode_png(np.zeros((16, 16, 3), np.uint8)))
    scribbles.write_bytes(encode_png(np.eye(16, dtype=np.uint8)))
    command = [sys.executable, "-m", "apps.cli", "submit", str(image), str(scribbles), "--server", live.url]
    done = subprocess.run(
        [*command, "-o", str(tmp_path / "mask.png"), "--steps", "100000", "--no-edges"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("gdc submit: error: 422: steps") and done.stderr.count("\n") == 1, done.stderr
