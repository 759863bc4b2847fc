"""The data simulator against the real system: every job it submits is completed by both models."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from harness.oracles import journal, ledger
from harness.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]
PATTERNS = {"linear", "seasonal", "exponential", "cyclical", "random_walk"}


def test_simulator_jobs_all_complete_with_both_models(system, stack, tmp_path):
    out = tmp_path / "sim.json"
    started = time.monotonic()
    run = subprocess.run(
        [
            sys.executable,
            "data_simulator.py",
            "--interval",
            "1",
            "--min-batch",
            "2",
            "--max-batch",
            "5",
            "--count",
            "50",
            "--seed",
            "11",
            "--url",
            system.api_url,
            "--json-out",
            str(out),
            "--journal",
            str(out.with_suffix(".journal.jsonl")),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads(out.read_text())
    assert summary["sent"] == summary["accepted"] == 50 and summary["failed"] == 0
    assert 10 <= summary["batches"] <= 25  # 2-5 per batch
    assert time.monotonic() - started >= summary["batches"] - 1  # it kept to --interval 1
    assert "summary: 50 jobs" in run.stdout
    ids = summary["job_ids"]

    def all_done():
        with psycopg.connect(stack.postgres.dsn) as conn:
            return conn.execute(
                "SELECT count(*) FROM jobs WHERE id = ANY(%s::uuid[]) AND status='completed'", (ids,)
            ).fetchone()[0] == len(ids)

    wait_for(all_done, 60, what="every simulator job completed")
    with psycopg.connect(stack.postgres.dsn) as conn:
        per_job = conn.execute(
            "SELECT job_id, array_agg(model_name ORDER BY model_name), bool_and(mae IS NOT NULL) "
            "FROM inference_results WHERE job_id = ANY(%s::uuid[]) GROUP BY job_id",
            (ids,),
        ).fetchall()
    assert len(per_job) == 50
    assert all(models == ["lstm", "moving_average"] and scored for _, models, scored in per_job)
    # the ledger over the simulator's own journal: every job it was told of, its outputs against the oracle's
    told = journal.read(out.with_suffix(".journal.jsonl"))
    assert told.accepted_ids == ids and len(told.digests) == 50
    report = ledger.settle(stack, journal=told)  # one Kafka inference_results event per job and model, Redis agrees
    assert report.ok, report.summary()
    assert (
        report.content["checked"]["inference: lstm"] == 50
        and report.content["checked"]["inference: input digest"] == 50
    )

    with system.client() as c:
        patterns = {p["pattern"] for p in c.get("/api/v1/dashboard/patterns").json()["patterns"]}
        comparison = c.get("/api/v1/dashboard/model-comparison").json()
    assert PATTERNS <= patterns
    assert {"lstm", "moving_average"} <= {m["model"] for m in comparison["models"]}
    by_pattern = {(r["model"], r["pattern"]) for r in comparison["by_pattern"]}
    assert {(m, p) for m in ("lstm", "moving_average") for p in PATTERNS} <= by_pattern
    assert all(r["mae"] is not None for r in comparison["by_pattern"] if r["model"] in ("lstm", "moving_average"))


def test_ctrl_c_stops_cleanly_with_a_summary(system, tmp_path):
    out, told = tmp_path / "sim.json", tmp_path / "journal.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "data_simulator.py",
            "--interval",
            "0.2",
            "--url",
            system.api_url,
            "--seed",
            "3",
            "--json-out",
            str(out),
            "--journal",
            str(told),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # interrupted once it has had a job accepted (a busy machine takes seconds just to start it)
    wait_for(lambda: told.exists() and '"accepted"' in told.read_text(), 60, what="the simulator's first accepted job")
    time.sleep(0.5)  # mid-run: more batches on their way
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    summary = json.loads(out.read_text())
    assert summary["interrupted"] and summary["accepted"] > 0 and summary["failed"] == 0
    assert "summary:" in output and "Traceback" not in output


def test_unreachable_server_is_reported_not_a_traceback(tmp_path):
    run = subprocess.run(
        [sys.executable, "data_simulator.py", "--interval", "0.1", "--count", "3", "--url", "http://127.0.0.1:9"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert "ConnectError" in run.stdout and "Traceback" not in run.stderr
