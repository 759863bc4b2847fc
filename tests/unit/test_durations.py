"""The module durations CI's parallel steps are ordered by (harness/reports/durations.py)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from harness.reports import durations

JUNIT = """<testsuites><testsuite>
<testcase classname="tests.chaos.test_a" name="t1" time="10.5"/>
<testcase classname="tests.chaos.test_a" name="t2" time="4.5"/>
<testcase classname="tests.unit.test_b" name="t1" time="3"/>
</testsuite></testsuites>"""


def test_a_module_s_seconds_are_its_test_cases_and_the_most_any_run_says(tmp_path):
    (tmp_path / "one.xml").write_text(JUNIT)
    (tmp_path / "two.xml").write_text(JUNIT.replace('time="3"', 'time="30"').replace('time="10.5"', 'time="1"'))
    table = durations.from_junit([tmp_path / "one.xml", tmp_path / "two.xml"])
    assert table == {"tests/unit/test_b.py": 30.0, "tests/chaos/test_a.py": 15.0}
    assert list(table) == ["tests/unit/test_b.py", "tests/chaos/test_a.py"]  # longest first, as kept


def test_items_go_longest_module_first_each_module_in_its_order_the_unknown_last(tmp_path):
    root = Path("/r")
    items = [
        SimpleNamespace(fspath=f"/r/tests/{m}.py", name=n)
        for m, n in [("a", 1), ("b", 1), ("a", 2), ("c", 1), ("d", 1), ("b", 2)]
    ]
    table = {"tests/b.py": 50.0, "tests/c.py": 90.0, "tests/a.py": 10.0}
    got = [(Path(i.fspath).stem, i.name) for i in durations.longest_first(items, table, root)]
    assert got == [("c", 1), ("b", 1), ("b", 2), ("a", 1), ("a", 2), ("d", 1)]


def test_the_kept_table_names_real_modules_and_reads_empty_when_missing(tmp_path):
    kept = durations.load()
    root = Path(durations.__file__).resolve().parents[2]
    assert kept and all((root / m).is_file() for m in kept), [m for m in kept if not (root / m).is_file()]
    assert durations.load(tmp_path / "none.json") == {}
    (tmp_path / "bad.json").write_text("[1]")
    assert durations.load(tmp_path / "bad.json") == {}
    assert json.loads(durations.TABLE.read_text()) == kept
