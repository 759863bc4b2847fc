"""The coverage gate's own arithmetic: packages summed from coverage's JSON, and a total under the gate is red."""

from __future__ import annotations

import json

from harness.reports import coverage_report


def coverage_json(tmp_path, files):
    path = tmp_path / "coverage.json"
    path.write_text(
        json.dumps(
            {"files": {p: {"summary": {"num_statements": n, "covered_lines": c}} for p, (n, c) in files.items()}}
        )
    )
    return str(path)


def test_packages_are_summed_and_a_total_over_the_gate_passes(tmp_path, capsys):
    path = coverage_json(
        tmp_path, {"system/api/app.py": (100, 90), "system/api/jobs.py": (100, 100), "system/config.py": (50, 50)}
    )
    assert coverage_report.main(["--json", path, "--fail-under", "85"]) == 0
    table = json.loads((tmp_path / "summary.json").read_text())["packages"]
    assert table["system/api"] == {"statements": 200, "covered": 190, "percent": 95.0}
    assert table["total"]["percent"] == 96.0
    assert "96.0% (gate 85%)" in capsys.readouterr().out


def test_a_total_under_the_gate_is_red_with_the_figure(tmp_path, capsys):
    path = coverage_json(tmp_path, {"system/worker/runner.py": (200, 150)})
    assert coverage_report.main(["--json", path, "--fail-under", "85"]) == 1
    assert "coverage of system/ is 75.0%, under the gate of 85%" in capsys.readouterr().err
