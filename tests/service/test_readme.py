"""The README's curl block, pasted as one block into bash against a live server, does what it says."""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gdc.imageio import read_image, read_labels
from tests.conftest import REPO, LiveStack, process_env

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


def fenced(heading: str, language: str) -> list[str]:
    """The ``language`` code blocks of the README section under ``### heading``."""
    readme = (REPO / "README.md").read_text()
    section = readme.split(f"### {heading}\n", 1)[1].split("\n### ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, re.DOTALL)


@pytest.fixture(scope="module")
def readme_server(live_stacks) -> LiveStack:
    """A live stack with the default result TTL, so a refine pasted a while after its first round finds it."""
    return live_stacks(workers=1)


@pytest.fixture
def pasted_at_root(tmp_path) -> Path:
    """A folder where the README's relative docs/example/... paths resolve, as at the repository's root."""
    (tmp_path / "docs").symlink_to(REPO / "docs")
    return tmp_path


def run_pasted(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, env=process_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def test_the_python_blocks_run_as_pasted(readme_server, pasted_at_root):
    client, engine = fenced("Python", "python")
    refined = run_pasted([sys.executable, "-c", client.replace(README_SERVER, readme_server.url)], pasted_at_root)
    assert refined.stdout.splitlines()[-1] == "True"  # the refine started from the first job's head
    shapes = run_pasted([sys.executable, "-c", engine], pasted_at_root)
    assert shapes.stdout.startswith("(400, 600) (3, 400, 600) (400, 600) {'superpixels'")


def test_the_command_line_block_runs_as_pasted(readme_server, pasted_at_root):
    from apps.cli import build_parser

    (block,) = fenced("Command line", "bash")
    commands = [line.split("  #")[0].strip() for line in block.replace("\\\n", "").splitlines()]
    commands = [command for command in commands if command.startswith("./run gdc ")]
    job = None
    for command in commands:
        words = shlex.split(command)[2:]
        if words[0] in ("eval", "bench"):  # a data set's worth of work: its flags must parse
            if words[0] == "eval":
                build_parser().parse_args(words)
            continue
        words = [readme_server.url if word == README_SERVER else job if word == "JOB" else word for word in words]
        if words[0] == "submit" and "--server" not in words:
            words += ["--server", readme_server.url]
        done = run_pasted([sys.executable, "-m", "apps.cli", *words], pasted_at_root)
        if words[0] == "submit":
            job = re.search(r"\(job ([0-9a-f]{32})", done.stdout).group(1)
    assert job is not None and "refining" in done.stdout  # the --previous line refined the first job
    for output in ("mask.png", "overlay.png", "probs.npy", "mask2.png"):
        assert (pasted_at_root / output).exists(), output
    ignored = subprocess.run(["git", "check-ignore", "mask.png", "overlay.png", "probs.npy", "mask2.png", "eval.json"],
                             cwd=REPO, capture_output=True, text=True)
    assert len(ignored.stdout.split()) == 5  # what the examples write at the root stays out of git
