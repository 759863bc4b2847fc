"""The time-to-a-verdict program on small pytest runs of its own: it times a cold pytest, names each test with its
seconds and outcome, keeps pytest's exit status, records every run and finds the previous one of the same command."""

from __future__ import annotations

import json

from harness.programs import verdict_time


def test_runs_are_timed_split_recorded_and_keep_pytests_exit(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(verdict_time, "REPORTS", tmp_path)
    monkeypatch.setattr(verdict_time, "HISTORY", tmp_path / "verdict-time.jsonl")
    green = ["tests/unit/test_slo_and_report.py", "-k", "diff_marks_only"]
    assert verdict_time.main(["--goal", "0.001", "--", *green]) == 0  # a missed goal is said; the exit is pytest's
    (tmp_path / "test_red.py").write_text("def test_red():\n    assert False\n")
    red = [str(tmp_path / "test_red.py")]
    assert verdict_time.main(["--goal", "600", "--", *red]) == 1
    runs = [json.loads(x) for x in (tmp_path / "verdict-time.jsonl").read_text().splitlines()]
    assert [(r["args"], r["exit"]) for r in runs] == [(green, 0), (red, 1)]
    [passed], [failed] = runs[0]["tests"], runs[1]["tests"]
    assert passed["test"] == "test_the_diff_marks_only_moves_beyond_the_noise_band" and passed["outcome"] == "passed"
    assert failed["test"] == "test_red" and failed["outcome"] == "failed"
    assert 0 < runs[0]["before_tests_s"] < runs[0]["wall_s"] and runs[0]["stack_start_s"] is None
    out = capsys.readouterr().out
    assert "goal 0.001 s: NOT met" in out and "goal 600 s: met; pytest exit 1" in out
    assert verdict_time._previous(green) == runs[0] and verdict_time._previous(["other"]) is None
