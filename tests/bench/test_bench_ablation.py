import json

import pytest

from apps.cli import main
from benchmarks.ablation import configurations, markdown


def test_each_conv_at_the_default_sigma_then_gdc_at_the_others():
    runs = configurations(["gdc", "normal"], [0.1, 0.2], default_sigma=0.2)
    assert runs == [dict(conv="gdc"), dict(conv="normal"), dict(conv="gdc", sigma=0.1)]


def test_markdown_rows_show_mean_and_spread():
    summary = dict(miou=dict(mean=0.7812, std=0.0034), accuracy=dict(mean=0.91, std=0), seconds=dict(mean=1.5, std=0))
    table = markdown([dict(label="conv=gdc", summary=summary)])
    assert table.splitlines()[-1] == "| conv=gdc | 78.12 ± 0.34 | 91.00 | 1.50 |"


def test_ablation_runs_every_configuration_over_seeds(tiny_dataset, tmp_path, capsys):
    code = main(["bench", "ablation", str(tiny_dataset), "--scribbles", "marks", "--convs", "gdc,normal",
                 "--sigmas", "0.1", "--seeds", "0,1", "--steps", "2", "--samples", "2", "--output-dir", str(tmp_path)])
    assert code == 0
    report = json.loads((tmp_path / f"ablation-{tiny_dataset.name}-marks.json").read_text())
    assert [row["label"] for row in report["rows"]] == ["conv=gdc", "conv=normal", "conv=gdc sigma=0.1"]
    assert all(len(row["runs"]) == 2 for row in report["rows"])
    table = (tmp_path / f"ablation-{tiny_dataset.name}-marks.md").read_text()
    assert table.count("\n") == 5 and "conv=gdc sigma=0.1" in capsys.readouterr().out


def test_an_unknown_conv_is_refused_with_the_known_ones(tiny_dataset, capsys):
    with pytest.raises(SystemExit):
        main(["bench", "ablation", str(tiny_dataset), "--convs", "gdc,sparse"])
    error = capsys.readouterr().err
    assert "argument --convs: conv: Input should be 'gdc', 'normal'" in error and "in 'gdc,sparse'" in error
