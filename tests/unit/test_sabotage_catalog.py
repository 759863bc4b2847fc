"""The sabotage catalog itself (no stack): names resolve, unknown names are refused with the list, defects split by
the process they are planted in, and planting really replaces the system's code in this process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.oracles import slo
from harness.oracles.ledger import PROBLEMS
from harness.oracles.windows import window_family, window_kinds
from harness.programs.load import _split_defects
from harness.sabotage import CATALOG, missing_twins, plant


def test_the_catalog_covers_both_processes_and_at_least_ten_defects():
    assert len(CATALOG) >= 10
    assert {d.target for d in CATALOG.values()} == {"worker", "api", "store"}
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
        "import system.transports.sqs as r, system.storage.outbox as o; before = (r.SqsConsumer._handle, "
        "o.Outbox.publish); from harness.sabotage import plant; plant('ack_before_commit,double_publish');"
        " assert r.SqsConsumer._handle is not before[0] and o.Outbox.publish is not before[1]; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_the_entry_point_lists_the_catalog():
    out = subprocess.run(
        [sys.executable, "-m", "harness.sabotage", "--list"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and all(name in out.stdout for name in CATALOG)


def test_every_verdict_kind_has_a_sabotage_twin():
    """Every kind of problem the ledger and the content oracle report is revealed by a planted defect (the sabotage
    tests plant each and check its verdicts went red); no defect claims a verdict that does not exist."""
    assert missing_twins(CATALOG, PROBLEMS) == set()
    claimed = {k for d in CATALOG.values() for k in d.reveals}
    known = set(PROBLEMS) | slo.families(slo.load()) | window_kinds()
    assert claimed <= known, claimed - known


def test_every_kind_of_chaos_window_verdict_has_a_sabotage_twin():
    """Each target a scenario window can set, and each check every window gets, is turned red by a planted defect in
    tests/sabotage/test_chaos_load_sabotage.py; a new target without one fails here, by name."""
    kinds = window_kinds()
    assert {"window: recover_s", "window: min_accepted", "window: the fault reached the system"} <= kinds
    assert missing_twins(CATALOG, kinds) == set()
    without = {name: d for name, d in CATALOG.items() if name != "slow_api"}
    assert missing_twins(without, kinds) == {"window: api_p95_ms"}
    assert window_family("worker_kill: recover_s") == "window: recover_s"
    assert window_family("openai_5xx: the fault reached the system (openai_faulted)") == (
        "window: the fault reached the system"
    )
    assert window_family("redis_pause: failed jobs outside the budget (none) — x: 1") == (
        "window: failed jobs outside the budget"
    )
    assert window_family("ledger: not_terminal") is None and window_family("backlog drained") is None


def test_every_kind_of_slo_verdict_has_a_sabotage_twin():
    """Each kind of verdict the shipped slo.toml gives (per endpoint, queue kind or model alike) is turned red by a
    planted defect in tests/sabotage/test_slo_sabotage.py or test_backlog_sabotage.py; a new kind of SLO without one
    fails here, by name."""
    kinds = slo.families(slo.load())
    assert {"slo: api p95 ms", "slo: queue enqueue->done p95 ms", "slo: redelivered jobs"} <= kinds
    assert missing_twins(CATALOG, kinds) == set()
    without = {name: d for name, d in CATALOG.items() if name != "flaky_first_attempt"}
    assert missing_twins(without, kinds) == {"slo: redelivered jobs"}
    assert slo.family("api POST /api/v1/scores p99 ms") == "api p99 ms"
    assert slo.family("model lstm latency p95 / raw forward") == "model latency p95 / raw forward"


def test_a_verdict_whose_twin_is_removed_is_named():
    without = {name: d for name, d in CATALOG.items() if name != "metrics_off"}
    assert missing_twins(without, PROBLEMS) == {"metrics_wrong"}


def test_store_defects_are_not_planted_in_a_process():
    with pytest.raises(SystemExit, match="store defect"):
        plant("deleted_row")
