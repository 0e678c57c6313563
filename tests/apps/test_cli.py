"""The ``gdc segment`` and ``gdc eval`` commands, run as a user runs them."""
import argparse
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from apps.arguments import add_engine_options, engine_options
from apps.cli import main

FAST = ["--steps", "5", "--samples", "3"]


@pytest.fixture(scope="module")
def files(tmp_path_factory, request):
    image, truth, scribbles = request.getfixturevalue("scene3")
    folder = tmp_path_factory.mktemp("cli")
    Image.fromarray(image).save(folder / "photo.jpg")
    Image.fromarray(scribbles).save(folder / "scribbles.png")
    return folder


def test_segment_writes_mask_probabilities_overlay_and_timings(files, capsys):
    out = files / "out"
    out.mkdir(exist_ok=True)
    code = main(
        ["segment", str(files / "photo.jpg"), str(files / "scribbles.png"), "-o", str(out / "mask.png"),
         "--probs", str(out / "p.npy"), "--overlay", str(out / "o.png"), "--uncertainty", str(out / "u.png"),
         "--timings", *FAST]
    )
    assert code == 0
    mask = np.array(Image.open(out / "mask.png"))
    assert mask.shape == (120, 160) and set(np.unique(mask)) <= {1, 2, 3}
    assert np.load(out / "p.npy").shape == (3, 120, 160)
    with Image.open(out / "o.png") as overlay, Image.open(out / "u.png") as uncertainty:
        assert overlay.size == (160, 120) and uncertainty.mode == "L"
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"total \d+\.\d\d s", lines[-1])
    phases = {"decode", "superpixels", "features", "optimise", "sample", "upsample", "edges", "encode"}
    assert {line.split()[0] for line in lines[:-1]} == phases


def test_an_option_out_of_range_gives_a_one_line_error(files, capsys):
    code = main(["segment", str(files / "photo.jpg"), str(files / "scribbles.png"), "-o", str(files / "x.png"),
                 "--steps", "-1"])
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith("gdc: error: steps: Input should be greater than or equal to 0") and error.count("\n") == 1


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda d: (d / "missing.jpg", d / "scribbles.png"), "image not found"),
        (lambda d: ((d / "notes.txt"), d / "scribbles.png"), "is not a readable image"),
        (lambda d: (d / "photo.jpg", d / "small.png"), "scribbles are 80x60 but the image is 160x120"),
        (lambda d: (d / "photo.jpg", d / "one-class.png"), "at least two classes"),
    ],
)
def test_bad_files_give_one_line_errors(files, make, message, capsys):
    (files / "notes.txt").write_text("not an image")
    Image.fromarray(np.ones((60, 80), dtype=np.uint8)).save(files / "small.png")
    Image.fromarray(np.ones((120, 160), dtype=np.uint8)).save(files / "one-class.png")
    image, scribbles = make(files)
    code = main(["segment", str(image), str(scribbles), "-o", str(files / "x.png")])
    error = capsys.readouterr().err
    assert code == 2
    assert error.startswith("gdc: error: ") and message in error and error.count("\n") == 1


def test_eval_scores_a_data_set_and_writes_json(tiny_dataset, tmp_path, capsys):
    report_path = tmp_path / "report.json"
    code = main(["eval", str(tiny_dataset), "--scribbles", "marks", "--seeds", "0,1", "--json", str(report_path), *FAST])
    assert code == 0
    report = json.loads(report_path.read_text())
    assert report["images"] == 2 and [run["seed"] for run in report["runs"]] == [0, 1]
    assert [image["name"] for image in report["runs"][0]["images"]] == ["a", "b"]
    per_image = [image["miou"] for run in report["runs"] for image in run["images"]]
    assert report["summary"]["miou"]["mean"] == pytest.approx(np.mean(per_image))
    assert all(0 <= miou <= 1 for miou in per_image)
    each_image = [np.mean([run["images"][i]["miou"] for run in report["runs"]]) for i in range(2)]
    assert report["summary"]["per_image_miou"] == pytest.approx(
        {"min": min(each_image), "10%": np.quantile(each_image, 0.1), "25%": np.quantile(each_image, 0.25),
         "median": np.median(each_image)}
    )
    printed = capsys.readouterr().out
    assert "mIoU" in printed and f"min {100 * min(each_image):.1f}" in printed


def test_engine_flags_reach_the_options():
    parser = argparse.ArgumentParser()
    add_engine_options(parser)
    flags = ["--conv", "normal", "--superpixel-size", "0", "--feature-stride", "2", "--precision", "float32",
             "--optimiser", "adam", "--lr", "0.05"]
    options = engine_options(parser.parse_args(flags))
    assert (options.conv, options.superpixel_size, options.feature_stride, options.precision) == ("normal", 0, 2, "float32")
    assert (options.optimiser, options.lr) == ("adam", 0.05)
    assert engine_options(parser.parse_args([])).precision == "auto"
    edges = engine_options(parser.parse_args(["--no-edges", "--edge-strength", "20"]))
    assert (edges.edges, edges.edge_strength) == (False, 20.0)
    assert engine_options(parser.parse_args([])).edges is True


def test_threads_below_one_are_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["segment", "a.png", "b.png", "-o", "c.png", "--threads", "0"])
    assert exit.value.code == 2
    assert "at least 1" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "threads"), [([], 1), (["--threads", "2"], 2)])
def test_engine_commands_run_torch_on_the_threads_asked_and_openmp_waits_passively(flags, threads, files, monkeypatch):
    import torch

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr("gdc.torch_threads._chosen", None)  # the process's choice, put back after the test
    before = torch.get_num_threads()
    try:
        code = main(["segment", str(files / "photo.jpg"), str(files / "scribbles.png"), "-o", str(files / "t.png"),
                     *FAST, *flags])
        assert code == 0 and torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_a_wait_policy_the_user_set_is_kept(monkeypatch):
    from gdc.threads import passive_openmp

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    passive_openmp()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_an_image_too_large_to_decode_is_one_line_in_gdcs_words_and_exit_2(tmp_path, monkeypatch, capsys):
    from tests.service.conftest import png_claiming

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 89_478_485)  # Pillow's, as in a `gdc` process (the API sets its own)
    (tmp_path / "huge.png").write_bytes(png_claiming(30000, 30000))
    code = main(["segment", str(tmp_path / "huge.png"), str(tmp_path / "huge.png"), "-o", str(tmp_path / "mask.png")])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1
    assert error == (f"gdc: error: image {tmp_path / 'huge.png'} is too large to decode: over 179 million pixels, the "
                     "most gdc reads; shrink it\n")  # not Pillow's "could be decompression bomb DOS attack"


@pytest.mark.parametrize("flag", ["-o", "--probs", "--overlay", "--uncertainty"])
def test_an_output_into_a_missing_folder_is_refused_before_any_work(flag, files, tmp_path, monkeypatch, capsys):
    import gdc.engine

    monkeypatch.setattr(gdc.engine, "segment", lambda *args, **kwargs: pytest.fail("segmented before checking"))
    outputs = {"-o": str(tmp_path / "mask.png"), flag: str(tmp_path / "missing" / "out.png")}
    code = main(["segment", str(files / "photo.jpg"), str(files / "scribbles.png"), *sum(outputs.items(), ())])
    assert code == 2
    assert capsys.readouterr().err == (
        f"gdc: error: {flag} {tmp_path / 'missing' / 'out.png'}: the folder {tmp_path / 'missing'} does not exist; "
        "create it first\n"
    )


@pytest.mark.parametrize("missing", ["image", "scribbles"])
def test_submit_names_a_missing_file_before_asking_any_server(missing, files, tmp_path, capsys):
    given = {"image": str(files / "photo.jpg"), "scribbles": str(files / "scribbles.png")}
    given[missing] = str(tmp_path / "nowhere.png")
    code = main(["submit", given["image"], given["scribbles"], "--server", "http://127.0.0.1:9", "-o",
                 str(tmp_path / "mask.png")])
    assert code == 2
    assert capsys.readouterr().err == f"gdc: error: {missing} not found: {tmp_path / 'nowhere.png'}\n"


@pytest.mark.parametrize(
    "command, said",
    [
        (["segment", "a.png", "b.png", "-o", "c.png", "--stepz", "5"], "gdc segment: error: unknown argument '--stepz' (did you mean '--steps'?)"),
        (["bench", "refine", "data", "--sigmaa=1"], "gdc bench refine: error: unknown argument '--sigmaa' (did you mean '--sigma'?)"),
    ],
)
def test_an_unknown_flag_is_named_with_the_closest_one_of_its_command(command, said, capsys):
    with pytest.raises(SystemExit) as exit:
        main(command)
    assert exit.value.code == 2 and capsys.readouterr().err.splitlines()[-1] == said


def test_segment_from_a_box_alone(files, tmp_path):
    # scene3's class 3 is a disc in the top-left corner, about (24, 24) with radius 18.
    code = main(["segment", str(files / "photo.jpg"), "--box", "4,4,45,45", "-o", str(tmp_path / "mask.png"), *FAST])
    assert code == 0
    mask = np.array(Image.open(tmp_path / "mask.png"))
    assert mask.shape == (120, 160) and set(np.unique(mask)) == {1, 2}
    assert mask[24, 24] == 1 and mask[110, 150] == 2


def test_segment_from_clicks_alone(files, tmp_path):
    clicks = [[24, 24, 1], [30, 15, 1], [150, 110, 0], [80, 60, 0], [5, 110, 0]]
    code = main(["segment", str(files / "photo.jpg"), "--points", json.dumps(clicks), "-o", str(tmp_path / "mask.png"),
                 *FAST])
    assert code == 0
    mask = np.array(Image.open(tmp_path / "mask.png"))
    assert all(mask[y, x] == (2 - label) for x, y, label in clicks)


@pytest.mark.parametrize(
    "prompt, said",
    [
        ([], "give the scribbles, --box or --points"),
        (["--box", "4,4,45"], "box must be four integers x0,y0,x1,y1; got '4,4,45'"),
        (["--points", "[[1, 2, 1]"], "points must be JSON [[x, y, label], ...]"),
        (["--points", "[[1, 2, 3]]"], "a point's label must be 1 (on the object) or 0 (off it); got 3"),
        (["--box", "4,4,200,45"], "box 4,4,200,45 is not inside the 160x120 image"),
        (["--points", "[[24, 24, 1], [160, 5, 0]]"], "point (160, 5) is off the 160x120 image"),
    ],
)
def test_a_bad_prompt_is_one_line_before_any_work(prompt, said, files, tmp_path, monkeypatch, capsys):
    import gdc.engine

    monkeypatch.setattr(gdc.engine, "segment", lambda *args, **kwargs: pytest.fail("segmented before checking"))
    code = main(["segment", str(files / "photo.jpg"), *prompt, "-o", str(tmp_path / "mask.png")])
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith(f"gdc: error: {said}") and error.count("\n") == 1


@pytest.mark.parametrize(
    "words, said",
    [
        (["--previous", "abc"], "gdc submit: error: give the image (or --previous JOB) and its scribbles, --box or "
                                "--points\n"),
        (["image.png"], "gdc submit: error: give the image (or --previous JOB) and its scribbles, --box or --points\n"),
        (["image.png", "--points", "[[1, 2]]"],
         "gdc: error: each point must be [x, y, label] with numbers; got [1, 2]\n"),
    ],
)
def test_submit_refuses_a_request_without_scribbles_or_prompts_before_asking_any_server(words, said, tmp_path, capsys):
    code = main(["submit", *words, "--server", "http://127.0.0.1:9", "-o", str(tmp_path / "mask.png")])
    assert code == 2
    assert capsys.readouterr().err == said
