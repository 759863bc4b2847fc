"""The sabotage catalog itself (no stack): names resolve, unknown names are refused with the list, defects split by
the process they are planted in, and planting really replaces the system's code in this process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.load import _split_defects
from harness.sabotage import CATALOG, plant


def test_the_catalog_covers_both_processes_and_at_least_ten_defects():
    assert len(CATALOG) >= 10
    assert {d.target for d in CATALOG.values()} == {"worker", "api"}
    assert all(d.what for d in CATALOG.values())


def test_unknown_defects_are_refused_with_the_catalog():
    with pytest.raises(SystemExit, match="unknown defect 'nope'.*double_publish"):
        plant("nope")
    with pytest.raises(SystemExit, match="unknown defect"):
        _split_defects("slow_api,nope")


def test_defects_split_by_the_process_they_go_into():
    assert _split_defects("slow_api,double_publish,ws_silent") == ("slow_api,ws_silent", "double_publish")
    assert _split_defects("") == (None, None)


def test_planting_replaces_the_systems_code_in_a_fresh_process():
    """In a subprocess (planting is for good): the patched attribute is no longer the system's own."""
    code = (
        "import system.worker.runner as r, system.storage.outbox as o; before = (r.Worker._handle, "
        "o.Outbox.publish); from harness.sabotage import plant; plant('ack_before_commit,double_publish');"
        " assert r.Worker._handle is not before[0] and o.Outbox.publish is not before[1]; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_the_entry_point_lists_the_catalog():
    out = subprocess.run(
        [sys.executable, "-m", "harness.sabotage", "--list"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and all(name in out.stdout for name in CATALOG)
