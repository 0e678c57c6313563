"""gdc bench peers: every method on a synthetic image, the scoring loop, the table/JSON/plot writers, the CLI."""
import argparse
import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from apps.evaluate import Sample, score
from benchmarks import peers
from benchmarks.peers import METHODS, Method


def require(method: Method) -> None:
    for module in method.modules:
        pytest.importorskip(module)


def oracle(image, scribbles):
    """Labels from the synthetic image's brightness: right on two regions."""
    return np.where(image.mean(axis=2) > 125, 2, 1).astype(np.uint8)


def three_class_sample() -> Sample:
    sample = peers.two_region_example()
    scribbles = sample.scribbles.copy()
    scribbles[0, 0] = 3
    return Sample("three", sample.image, scribbles, sample.truth)


@pytest.mark.parametrize("name", list(METHODS))
def test_method_segments_two_regions_in_the_scribbles_values(name):
    method = METHODS[name]
    require(method)
    sample = peers.two_region_example()
    scribbles = np.where(sample.scribbles > 0, 3 * sample.scribbles + 1, 0).astype(np.uint8)  # classes 4 and 7
    labels = method.labels(sample.image, scribbles)
    assert labels.shape == sample.truth.shape
    assert labels.dtype == np.uint8
    assert set(np.unique(labels)) == {4, 7}
    miou, accuracy = score((labels.astype(np.int64) - 4) // 3, sample.truth)
    # 0.85: gdc's coarse working grid costs it some border pixels on so small an image.
    assert miou > 0.85 and accuracy > 0.9


def test_grabcut_refuses_three_classes():
    pytest.importorskip("cv2")
    sample = three_class_sample()
    with pytest.raises(ValueError, match="two classes"):
        peers.grabcut_labels(sample.image, sample.scribbles)


@pytest.mark.parametrize("name", list(METHODS))
def test_applies_only_two_class_methods_to_two_classes(name):
    method = METHODS[name]
    assert peers.applies(method, peers.two_region_example().scribbles)
    assert peers.applies(method, three_class_sample().scribbles) == (not method.two_classes_only)


def test_compare_scores_and_times_each_applicable_method(monkeypatch):
    monkeypatch.setitem(METHODS, "oracle", Method(oracle, ()))
    monkeypatch.setitem(METHODS, "binary-oracle", Method(oracle, (), two_classes_only=True))
    samples = [peers.two_region_example(seed=1), three_class_sample()]
    rows = peers.compare(samples, ["oracle", "binary-oracle"])
    assert [row["name"] for row in rows["oracle"]] == ["two-regions", "three"]
    assert [row["name"] for row in rows["binary-oracle"]] == ["two-regions"]
    for row in rows["oracle"]:
        assert row["miou"] == row["accuracy"] == 1.0
        assert row["seconds"] >= 0


def test_a_seeded_method_runs_once_per_seed(monkeypatch):
    calls = []

    def seeded_oracle(image, scribbles, seed):
        calls.append(seed)
        return oracle(image, scribbles)

    monkeypatch.setitem(METHODS, "seeded", Method(seeded_oracle, (), seeded=True))
    monkeypatch.setitem(METHODS, "oracle", Method(oracle, ()))
    rows = peers.compare([peers.two_region_example()], ["seeded", "oracle"], seeds=(0, 1, 2))
    assert calls == [0, 0, 1, 2]  # the untimed warm-up, then each seed
    assert [row["seed"] for row in rows["seeded"]] == [0, 1, 2]
    assert len(rows["oracle"]) == 1 and "seed" not in rows["oracle"][0]


def test_summarise_gives_each_seeds_mean_and_their_spread():
    rows = [dict(name=name, seed=seed, miou=0.5 + 0.1 * seed, accuracy=1.0, seconds=1.0) for seed in (0, 2) for name in "ab"]
    summary = peers.summarise(rows)
    assert summary["images"] == 2
    assert summary["seeds"] == {0: pytest.approx(0.5), 2: pytest.approx(0.7)}
    assert summary["miou"] == pytest.approx(0.6) and summary["miou_std"] == pytest.approx(0.1)


def test_image_means_average_an_images_seeds():
    rows = [dict(name="a", miou=0.5), dict(name="b", miou=0.9), dict(name="a", miou=0.7)]
    assert peers.image_means(rows) == {"a": pytest.approx(0.6), "b": pytest.approx(0.9)}


def test_summarise_means_median_and_p90():
    rows = [dict(name=str(i), miou=i / 10, accuracy=1 - i / 10, seconds=float(i)) for i in range(1, 11)]
    summary = peers.summarise(rows)
    assert summary["images"] == 10
    assert summary["miou"] == pytest.approx(0.55)
    assert summary["accuracy"] == pytest.approx(0.45)
    assert summary["median_seconds"] == pytest.approx(5.5)
    assert summary["p90_seconds"] == pytest.approx(9.1)
    assert peers.summarise([])["miou"] is None


def rows_for(names: list[str], miou: float) -> list[dict]:
    return [dict(name=name, miou=miou, accuracy=miou, seconds=1.0) for name in names]


def test_notes_give_a_binary_methods_subset_and_the_others_there(monkeypatch):
    monkeypatch.setattr(peers.importlib.util, "find_spec", lambda name: object())  # as if ilastik were installed
    rows = {"gdc": rows_for(["a", "b", "c"], 0.5), "grabcut": rows_for(["a"], 0.75)}
    rows["gdc"][0]["miou"] = 0.25
    (note,) = peers.notes(rows, total=3)
    assert "1 of 3 images" in note
    assert "gdc 25.0" in note and "grabcut 75.0" in note
    assert peers.notes({"grabcut": rows_for(["a", "b"], 0.5)}, total=2) == []


def test_notes_say_when_ilastik_is_missing(monkeypatch):
    monkeypatch.setattr(peers.importlib.util, "find_spec", lambda name: None)
    (note,) = peers.notes({"gdc": rows_for(["a"], 0.5)}, total=1)
    assert note.startswith("ilastik: not installed")


def test_format_table_has_a_row_per_method_and_the_notes():
    report = dict(
        data="/data/icg-dev",
        scribbles="scribbles",
        images=2,
        methods={
            "gdc": dict(summary=peers.summarise(rows_for(["a", "b"], 0.8123)), images=[]),
            "grabcut": dict(summary=peers.summarise([]), images=[]),
        },
        notes=["a note"],
    )
    table = peers.format_table(report)
    assert "icg-dev/scribbles, 2 images" in table
    assert "| gdc | 2 | 81.2 | 81.2 | 1.00 | 1.00 |" in table
    assert "| grabcut | 0 | n/a | n/a | n/a | n/a |" in table
    assert table.endswith("- a note")


def write_dataset(root, samples: list[Sample]) -> None:
    for folder in ("images", "gt", "scribbles"):
        (root / folder).mkdir(parents=True)
    for sample in samples:
        Image.fromarray(sample.image).save(root / "images" / f"{sample.name}.png")
        Image.fromarray(sample.truth).save(root / "gt" / f"{sample.name}.png")
        Image.fromarray(sample.scribbles).save(root / "scribbles" / f"{sample.name}.png")


def parse(argv: list[str]) -> argparse.Namespace:
    bench = argparse.ArgumentParser(prog="gdc bench")
    peers.add_parser(bench.add_subparsers(required=True))
    return bench.parse_args(["peers", *argv])


def test_parser_defaults_and_choices():
    args = parse(["data"])
    assert (args.data_dir, args.scribbles, args.limit, args.output_dir) == ("data", "scribbles", None, "benchmarks")
    assert args.seeds == (0,) and parse(["data", "--seeds", "0,1,2"]).seeds == (0, 1, 2)
    with pytest.raises(SystemExit):
        parse(["data", "--seeds", "0,x"])
    assert args.methods == list(METHODS)
    assert args.func is peers.run
    args = parse(["data", "--scribbles", "scribbles-2", "--limit", "3", "--methods", "gdc, grabcut"])
    assert (args.scribbles, args.limit, args.methods) == ("scribbles-2", 3, ["gdc", "grabcut"])


@pytest.mark.parametrize("argv", [["--methods", "gdc,ilastik"], ["--methods", ","], ["--limit", "0"]])
def test_parser_rejects_bad_options(argv, capsys):
    with pytest.raises(SystemExit):
        parse(["data", *argv])
    assert "error" in capsys.readouterr().err


def test_run_writes_json_and_plot_named_after_the_sets(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(METHODS, "oracle", Method(oracle, ()))
    monkeypatch.setitem(METHODS, "binary-oracle", Method(oracle, (), two_classes_only=True))
    data = tmp_path / "tiny-set"
    two_regions = peers.two_region_example()
    write_dataset(data, [replace(two_regions, name="a"), replace(three_class_sample(), name="b"), replace(two_regions, name="c")])
    out = tmp_path / "out"
    args = parse([str(data), "--methods", "oracle,binary-oracle", "--limit", "2", "--output-dir", str(out)])
    assert peers.run(args) == 0
    report = json.loads((out / "peers-tiny-set-scribbles.json").read_text())
    assert report["images"] == 2
    assert report["methods"]["oracle"]["summary"]["miou"] == 1.0
    assert report["methods"]["binary-oracle"]["summary"]["images"] == 1
    assert (out / "peers-tiny-set-scribbles.png").read_bytes().startswith(b"\x89PNG")
    printed = capsys.readouterr().out
    assert "| oracle | 2 | 100.0 | 100.0 |" in printed
    assert "ran only on the 1 of 2 images" in printed


def test_run_names_the_missing_extra(tmp_path, monkeypatch, capsys):
    find_spec = peers.importlib.util.find_spec
    monkeypatch.setattr(peers.importlib.util, "find_spec", lambda name: None if name == "cv2" else find_spec(name))
    assert peers.run(parse([str(tmp_path), "--methods", "grabcut"])) == 2
    assert capsys.readouterr().err.strip() == "gdc bench peers: grabcut needs cv2 (pip install 'gdc[bench]')"


@pytest.mark.parametrize("name", list(METHODS))
def test_every_needed_module_has_an_extra(name):
    assert set(METHODS[name].modules) <= set(peers.EXTRAS)
