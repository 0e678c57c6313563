"""``gdc batch`` against a live server (uvicorn, the embedded Redis, ``gdc worker``), and ``--local``."""
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from pycocotools.coco import COCO
from redis import Redis
from rq import Worker

from apps import batch
from apps.batch import jobs_submitted
from apps.cli import main
from gdc.client import ServerUnreachable
from gdc.imageio import encode_png, read_labels
from tests.conftest import REPO, process_env, wait_for
from tests.service.conftest import FAST, draw_scribbles

FAST_FLAGS = [f"--{name.replace('_', '-')}={value}" for name, value in FAST.items()]


def make_folders(root: Path, coffee: np.ndarray, count: int, stride: int = 1) -> tuple[Path, Path]:
    """``count`` distinct images (the coffee cup rolled sideways, every ``stride``-th pixel) with two-class scribbles."""
    images, scribbles = root / "images", root / "scribbles"
    images.mkdir(parents=True), scribbles.mkdir(parents=True)
    picture = coffee[::stride, ::stride]
    marks = draw_scribbles(coffee.shape[:2], 2)[::stride, ::stride]
    for index in range(count):
        (images / f"cup{index:03d}.png").write_bytes(encode_png(np.roll(picture, index, axis=1)))
        (scribbles / f"cup{index:03d}.png").write_bytes(encode_png(np.roll(marks, index, axis=1)))
    return images, scribbles


def jobs_run(redis_url: str) -> int:
    """Jobs the stack's workers have ended, successfully or not."""
    with Redis.from_url(redis_url) as redis:
        return sum(w.successful_job_count + w.failed_job_count for w in Worker.all(connection=redis))


def test_labels_a_folder_writes_coco_and_failures_then_skips_what_is_done(live, coffee, tmp_path, capsys):
    images, scribbles = make_folders(tmp_path, coffee, 3)
    (images / "lonely.jpg").write_bytes(encode_png(coffee))
    (images / "one-class.png").write_bytes(encode_png(coffee))
    (scribbles / "one-class.png").write_bytes(encode_png((draw_scribbles(coffee.shape[:2], 2) == 1).astype(np.uint8)))
    (tmp_path / "classes.txt").write_text("crema\ntable\n")
    out = tmp_path / "out"
    command = ["batch", str(images), str(scribbles), "-o", str(out), "--server", live.url, "--classes", str(tmp_path / "classes.txt"), *FAST_FLAGS]

    assert main(command) == 1
    said = capsys.readouterr().err
    assert "1 image(s) have no scribbles, skipped: lonely.jpg" in said
    assert "3 of 4 labelled, 1 failed" in said
    failures = json.loads((out / "failures.json").read_text())
    assert [f["image"] for f in failures] == ["one-class.png"] and "at least two classes" in failures[0]["reason"]
    for index in range(3):
        mask = read_labels(out / f"cup{index:03d}.png")
        assert mask.shape == coffee.shape[:2] and set(np.unique(mask)) == {1, 2}

    coco = COCO(str(out / "coco.json"))
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == {"crema", "table"}
    for image in coco.loadImgs(coco.getImgIds()):
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        mask = read_labels(out / f"{Path(image['file_name']).stem}.png")
        assert {a["category_id"] for a in annotations} == {1, 2}
        assert all(np.array_equal(coco.annToMask(a), (mask == a["category_id"]).astype(np.uint8)) for a in annotations)

    before = jobs_run(live.redis_url)
    assert main(command) == 1  # the one-class image fails again; the others are not sent
    assert "3 already done, 1 to label" in capsys.readouterr().err
    assert jobs_run(live.redis_url) == before
    assert all(len(ids) == 1 for stem, ids in jobs_submitted(out).items() if stem.startswith("cup"))


def test_a_run_killed_halfway_goes_on_and_runs_every_image_once(live, coffee, tmp_path):
    images, scribbles = make_folders(tmp_path, coffee, 6)
    out = tmp_path / "out"
    command = ["batch", str(images), str(scribbles), "-o", str(out), "--server", live.url, "--concurrency", "2", *FAST_FLAGS]
    before = jobs_run(live.redis_url)
    first = subprocess.Popen([sys.executable, "-m", "apps.cli", *command], env=process_env(), cwd=REPO)
    try:
        wait_for(lambda: (out / "journal.jsonl").exists() and '"done"' in (out / "journal.jsonl").read_text(), 120, "a first image")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert len(list(out.glob("cup*.png"))) < 6, "the run should have been killed halfway"

    assert main(command) == 0
    assert sorted(p.name for p in out.glob("cup*.png")) == [f"cup{index:03d}.png" for index in range(6)]
    assert all(len(ids) == 1 for ids in jobs_submitted(out).values())
    assert wait_for(lambda: jobs_run(live.redis_url) - before == 6 and 6, 30, "the workers' counts")
    metrics = httpx.get(f"{live.url}/metrics").text
    counted = sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("gdc_worker_jobs{"))
    assert counted == jobs_run(live.redis_url)
    assert not list(out.glob("*.partial"))


def test_a_batch_on_a_server_needs_no_torch_here(live, coffee, tmp_path):
    images, scribbles = make_folders(tmp_path, coffee, 1)
    out = tmp_path / "out"
    command = ["batch", str(images), str(scribbles), "-o", str(out), "--server", live.url, *FAST_FLAGS]
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # importing it fails, as on the base install\n"
        "from apps.cli import main\n"
        f"sys.exit(main({command!r}))\n"
    )
    subprocess.run([sys.executable, "-c", code], env=process_env(), cwd=REPO, check=True)
    assert set(np.unique(read_labels(out / "cup000.png"))) == {1, 2}


def test_a_full_queue_slows_the_batch_down_but_loses_nothing(stacks_for_this_test, coffee, tmp_path):
    stack = stacks_for_this_test(workers=1, max_queued=5)
    images, scribbles = make_folders(tmp_path, coffee, 60, stride=3)
    out = tmp_path / "out"
    deepest, finished = [0], threading.Event()

    def watch_queue() -> None:
        with Redis.from_url(stack.redis_url) as redis:
            while not finished.is_set():
                deepest[0] = max(deepest[0], redis.llen("rq:queue:gdc"))
                finished.wait(0.01)

    watcher = threading.Thread(target=watch_queue)
    watcher.start()
    try:
        code = main(["batch", str(images), str(scribbles), "-o", str(out), "--server", stack.url, "--concurrency", "20", "--steps=0", "--samples=1", "--superpixel-size=0"])
    finally:
        finished.set()
        watcher.join()
    assert code == 0
    assert len(list(out.glob("cup*.png"))) == 60
    assert 0 < deepest[0] <= 5
    metrics = httpx.get(f"{stack.url}/metrics").text
    refused = [line for line in metrics.splitlines() if 'route="/segment",status="429"' in line and line.startswith("gdc_http_requests_total")]
    assert refused and float(refused[0].split()[-1]) > 0


def test_a_batch_drops_a_request_the_server_leaves_unanswered(monkeypatch):
    """A request caught by a cut link is asked again on a new connection, not left to TCP's back-off."""
    monkeypatch.setattr(batch, "REQUEST_SECONDS", 0.5)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never answers
        started = time.monotonic()
        with batch.server_client(f"http://127.0.0.1:{silent.getsockname()[1]}", None) as client:
            with pytest.raises(ServerUnreachable, match="cannot reach the gdc server"):
                client.options()
    assert time.monotonic() - started < 5  # the client's default would have waited 60 s


def test_a_local_process_runs_the_threads_asked_and_leaves_ctrl_c_to_the_parent(monkeypatch):
    import torch

    monkeypatch.setattr("gdc.torch_threads._chosen", None)  # the process's choice, put back after the test
    from apps.batch import _start_local_process

    threads, handler = torch.get_num_threads(), signal.getsignal(signal.SIGINT)
    try:
        _start_local_process(3)
        assert torch.get_num_threads() == 3 and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        torch.set_num_threads(threads)
        signal.signal(signal.SIGINT, handler)


def test_local_runs_the_engine_in_processes_and_resumes(coffee, tmp_path, capsys):
    images, scribbles = make_folders(tmp_path, coffee, 2)
    out = tmp_path / "out"
    command = ["batch", str(images), str(scribbles), "-o", str(out), "--local", "--processes", "2", *FAST_FLAGS]
    assert main(command) == 0
    assert set(np.unique(read_labels(out / "cup000.png"))) == {1, 2}
    assert main(command) == 0
    assert "2 already done, 0 to label" in capsys.readouterr().err


def test_options_the_server_sets_itself_are_refused(live, coffee, tmp_path, capsys):
    images, scribbles = make_folders(tmp_path, coffee, 1)
    assert main(["batch", str(images), str(scribbles), "-o", str(tmp_path / "out"), "--server", live.url, "--device", "cuda"]) == 2
    assert "a gdc server chooses --device itself; give them with --local" in capsys.readouterr().err
