"""gdc bench api: the API alone on a Valkey, driven by clients; the report's fields on a tiny run."""
import json
import os

import pytest

from apps.cli import main

CPUS = sorted(os.sched_getaffinity(0))


@pytest.mark.skipif(len(CPUS) < 2, reason="the API on a CPU of its own needs two")
def test_a_tiny_run_reports_every_figure_per_process_count_and_client_count(tmp_path, capsys):
    report_path = tmp_path / "api.json"
    code = main(["bench", "api", "--clients", "1", "3", "--api-processes", "1", "2", "--seconds", "0.5",
                 "--api-cpus", str(CPUS[0]), "--output", str(report_path)])
    report = json.loads(report_path.read_text())
    assert code == 0, report
    assert report["api_cpus"] == CPUS[:1] and report["generator_cpus"] == CPUS[1:]
    assert os.sched_getaffinity(0) == set(CPUS)  # the generator's CPUs as they were
    assert report["seconds"] == 0.5 and report["image"].endswith("coffee.jpg")
    assert report["machine"]["cpus"] >= 1 and "generator" in report["note"]
    assert [(run["api_processes"], run["clients"]) for run in report["runs"]] == [(1, 1), (1, 3), (2, 1), (2, 3)]
    for run in report["runs"]:
        assert run["accepted_on_the_queue"] is True
        assert run["load_average_1min_before"] >= 0 and run["load_average_1min_after"] >= 0
        for name in ("uploads", "status_gets"):
            figures = run[name]
            assert figures["requests"] > 0 and figures["per_second"] > 0, figures
            assert set(figures["statuses"]) == {"202" if name == "uploads" else "200"}, figures
            assert 0 < figures["p50_ms"] <= figures["p99_ms"]
            assert figures["api_cpu_seconds"] > 0 and figures["generator_cpu_seconds"] > 0
            assert figures["api_cpu_ms_per_request"] > 0
    printed = capsys.readouterr().out
    assert "uploads/s" in printed and f"wrote {report_path}" in printed


def test_the_api_cannot_take_every_cpu(tmp_path, capsys):
    code = main(["bench", "api", "--api-cpus", *map(str, CPUS), "--output", str(tmp_path / "api.json")])
    assert code == 2 and "leave one for Valkey and the load generator" in capsys.readouterr().err
    assert not (tmp_path / "api.json").exists()


def test_an_unknown_cpu_is_refused_by_name(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "api", "--api-cpus", "9999"])
    assert "'9999' is not one of this machine's CPUs" in capsys.readouterr().err
