"""The README's curl block, pasted as one block into bash against a live server, does what it says."""
import re
import subprocess

import numpy as np

from gdc.imageio import read_image, read_labels
from tests.conftest import REPO

README_SERVER = "http://127.0.0.1:8000"


def curl_block() -> str:
    readme = (REPO / "README.md").read_text()
    return re.search(r"### curl\n\n```bash\n(.*?)```", readme, re.DOTALL).group(1)


def test_the_poll_example_waits_for_the_job_and_fails_rather_than_saving_an_error():
    block = curl_block()
    polling = block[block.index("JOB=$(") :]
    assert "while curl" in polling and "sleep" in polling  # waits before fetching
    assert all("--fail" in line for line in polling.splitlines() if " -o " in line)


def test_the_curl_block_pasted_as_is_saves_the_mask_and_overlay(live, tmp_path):
    (tmp_path / "docs").symlink_to(REPO / "docs")  # the block names docs/example/... from the repository root
    script = curl_block().replace(README_SERVER, live.url)
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert '"status":"succeeded"' in done.stdout  # the ?wait=60 answer
    mask = read_labels((tmp_path / "mask.png").read_bytes())
    assert mask.shape == (400, 600) and set(np.unique(mask).tolist()) == {1, 2}
    assert read_image((tmp_path / "overlay.png").read_bytes()).shape == (400, 600, 3)
