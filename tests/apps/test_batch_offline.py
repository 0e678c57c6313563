"""gdc batch's pieces that need no server: pairing by stem, the options a server takes, COCO output."""
import argparse

import numpy as np
import pytest
from pycocotools.coco import COCO

from apps.batch import Journal, pair_files, server_options
from apps.coco import coco_instances, read_class_names
from gdc.errors import InputError
from gdc.imageio import encode_png


def test_pairs_by_stem_and_names_the_images_without_scribbles(tmp_path):
    images, scribbles = tmp_path / "images", tmp_path / "scribbles"
    images.mkdir(), scribbles.mkdir()
    for name in ("a.jpg", "b.png", "c.tif", "notes.txt"):
        (images / name).write_bytes(b"x")
    for name in ("a.png", "c.png", "z.png"):
        (scribbles / name).write_bytes(b"x")
    pairs, unpaired = pair_files(images, scribbles)
    assert [(p.stem, p.image.name, p.scribbles.name) for p in pairs] == [("a", "a.jpg", "a.png"), ("c", "c.tif", "c.png")]
    assert unpaired == ["b.png"]


def test_images_sharing_a_stem_are_refused(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(InputError, match="several images share a stem.*: a"):
        pair_files(tmp_path, tmp_path)


def test_options_a_server_sets_itself_are_refused():
    accepted = {
        "fields": {"steps": {}, "samples": {}, "sigma": {}, "superpixel_size": {}, "seed": {}},
        "switches": {"edges": True},
        "choices": {"conv": {}},
    }
    assert server_options(argparse.Namespace(steps=3, conv="gdc", sigma=None), accepted) == {"steps": 3, "conv": "gdc"}
    with pytest.raises(InputError, match="chooses --device, --feature-stride itself; give them with --local"):
        server_options(argparse.Namespace(steps=3, device="cuda", feature_stride=2), accepted)


@pytest.mark.parametrize(("flag", "what"), [("--concurrency", "jobs"), ("--processes", "processes")])
@pytest.mark.parametrize("value", ["0", "-2", "1.5"])
def test_counts_below_one_are_a_usage_error_naming_what_they_count(flag, what, value, tmp_path, capsys):
    from apps.cli import main

    with pytest.raises(SystemExit) as exit:
        main(["batch", str(tmp_path), str(tmp_path), "-o", str(tmp_path / "out"), f"{flag}={value}"])
    assert exit.value.code == 2
    assert f"expected a whole number of {what}, at least 1, got {value!r}" in capsys.readouterr().err


def test_class_names_by_line(tmp_path):
    (tmp_path / "classes.txt").write_text("cat\n\ndog\n")
    assert read_class_names(tmp_path / "classes.txt") == {1: "cat", 3: "dog"}
    with pytest.raises(InputError, match="cannot read the class names"):
        read_class_names(tmp_path / "missing.txt")


def test_coco_instances_read_back_with_pycocotools(tmp_path):
    first = np.ones((40, 60), np.uint8)
    first[10:20, 5:25] = 2
    second = np.full((30, 50), 3, np.uint8)
    (tmp_path / "a.png").write_bytes(encode_png(first))
    (tmp_path / "b.png").write_bytes(encode_png(second))
    dataset = coco_instances([("a.jpg", tmp_path / "a.png"), ("b.jpg", tmp_path / "b.png")], {1: "sky", 2: "boat"})
    coco = COCO()
    coco.dataset = dataset
    coco.createIndex()
    assert [(c["id"], c["name"]) for c in coco.loadCats(coco.getCatIds())] == [(1, "sky"), (2, "boat"), (3, "class 3")]
    assert [image["file_name"] for image in coco.loadImgs(coco.getImgIds())] == ["a.jpg", "b.jpg"]
    boat = coco.loadAnns(coco.getAnnIds(imgIds=[1], catIds=[2]))[0]
    assert boat["area"] == 200 and boat["bbox"] == [5, 10, 20, 10]
    assert np.array_equal(coco.annToMask(boat), (first == 2).astype(np.uint8))
    assert len(coco.getAnnIds(imgIds=[2])) == 1
    assert len({a["id"] for a in dataset["annotations"]}) == 3


def test_journal_survives_a_torn_line_and_keeps_its_nonce(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    journal.record("a", "d1", submitted="job1")
    journal.record("b", "d2", submitted="job2")
    journal.finish("b", "d2")
    unsent = journal.idempotency_key("a", "d1")
    journal.record("a", "d1", failed="server unreachable")
    assert journal.idempotency_key("a", "d1") == unsent, "no job was made: the same key cannot make a second"
    journal.record("a", "d1", failed="job job1 failed", job="job1")
    key = journal.idempotency_key("a", "d1")
    assert key != unsent, "a job failed: the next try is a new job"
    journal.close()
    with (tmp_path / "journal.jsonl").open("a") as file:
        file.write('{"stem": "c", "dig')  # killed mid-write
    again = Journal(tmp_path / "journal.jsonl")
    assert again.done == {("b", "d2")} and again.jobs == {("b", "d2"): "job2"}
    assert again.idempotency_key("a", "d1") == key != journal.idempotency_key("b", "d2")


def test_a_busy_or_unreachable_server_is_asked_again_and_a_refusal_is_the_images_failure(tmp_path):
    import httpx

    from apps.batch import ServerLabeller
    from gdc.client import ApiError, ServerUnreachable

    answers = [ApiError(503, "the job store (Redis) is unreachable"), ServerUnreachable("http://gdc.test/segment", httpx.ConnectError("refused")), ApiError(429, "full"), "job"]

    def flaky():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    labeller = ServerLabeller(client=None, options={}, journal=None, out_dir=tmp_path)
    labeller.stopping.wait = lambda seconds: False  # no real waiting between tries
    assert labeller._patiently(flaky) == "job" and not answers

    def refused():
        raise ApiError(422, "scribbles need at least two classes")

    with pytest.raises(ApiError, match="422"):
        labeller._patiently(refused)


def test_a_run_with_other_options_says_which_changed(tmp_path, capsys):
    from apps.batch import Batch, Pair

    for name in ("a.png", "a-s.png"):
        (tmp_path / name).write_bytes(b"not read as an image here")
    pairs = [Pair("a", tmp_path / "a.png", tmp_path / "a-s.png")]
    Batch(pairs, {"steps": 20}, tmp_path).journal.close()
    Batch(pairs, {"steps": 20}, tmp_path).journal.close()
    assert "options differ" not in capsys.readouterr().err  # the same options: nothing to say
    Batch(pairs, {"steps": 10, "edges": False}, tmp_path).journal.close()
    said = capsys.readouterr().err
    assert "the options differ from the last run's: edges unset -> False, steps 20 -> 10" in said
    assert "labelled again" in said


def test_no_server_at_the_address_is_one_line_naming_it_and_leaves_no_output_folder(tmp_path, capsys):
    from apps.cli import main
    from apps.launch import free_port

    images, scribbles, out = tmp_path / "images", tmp_path / "scribbles", tmp_path / "out"
    images.mkdir(), scribbles.mkdir()
    (images / "a.png").write_bytes(encode_png(np.zeros((16, 16, 3), np.uint8)))
    (scribbles / "a.png").write_bytes(encode_png(np.eye(16, dtype=np.uint8)))
    server = f"http://127.0.0.1:{free_port()}"
    code = main(["batch", str(images), str(scribbles), "-o", str(out), "--server", server])
    error = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert error.startswith(f"gdc batch: error: cannot reach the gdc server at {server}/") and error.count("\n") == 1
    assert error.endswith("start one (gdc serve), name it with --server, or label here with --local\n")
