"""Fixtures the chaos, sabotage and load tests share (``report_paths`` too): a fault timeline per test (saved under reports/chaos/), the fault
families, a system of the test's own (or one per module for tests that only turn the mock's knobs), and ``jobs_for``
(harness.drivers.jobs.Jobs bound to it)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, settings

from harness.drivers.jobs import Jobs
from harness.faults import FaultTimeline, HttpFaults, ProcessFaults
from harness.reports.report import reports_path
from harness.settings import current

# Hypothesis profiles: "ci" (the default; derandomized, so a run is repeatable and a red one is red again) and
# "fuzz" (`nox -s fuzz`: random, many more examples). Pick one with --hypothesis-profile=NAME or
# VERISIM_HYPOTHESIS_PROFILE. Failing examples are printed (with a reproduce blob) and kept in .hypothesis/.
settings.register_profile(
    "ci",
    max_examples=100,
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "fuzz", max_examples=1000, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=50, deadline=None, print_blob=True)
settings.load_profile(current().hypothesis_profile)


def pytest_collection_modifyitems(config, items):
    """Several at a time by module (``-n N --dist loadfile``, CI's parallel steps): the modules that take longest
    (tests/durations.json, harness.reports.durations) are handed out first, so a step does not end on one module
    of minutes started last. A run one test at a time keeps the collected order. The xdist workers collect (the
    order they report is the one handed out), and xdist sets their own ``--dist`` to "no": they are told by
    ``workerinput``."""
    if not hasattr(config, "workerinput") and config.getoption("dist", default="no") not in ("loadfile", "loadscope"):
        return
    from harness.reports import durations

    items[:] = durations.longest_first(items, durations.load(), config.rootpath)


CHAOS_ENV = {
    "SQS_VISIBILITY_TIMEOUT": "4",  # a dead or frozen worker's message comes back quickly
    "SQS_MAX_RECEIVE_COUNT": "8",
    "WORKER_RETRY_BASE_SECONDS": "0.5",
    "OPENAI_TIMEOUT_SECONDS": "2",
    # Celery: a worker silent this long is lost, and the jobs it was running are sent again (its unacknowledged
    # tasks come back only after CELERY_VISIBILITY_TIMEOUT, left at the system's default: it must outlast the
    # longest job); a job of a worker only frozen may run twice — harmless (claimed by id, finished once), and the
    # ledger would show a second result if it were not
    "WORKER_LOST_AFTER_SECONDS": "4",
    # a job whose message a broker lost sits queued until the workers' stale-job sweep sends it again (300 s by
    # default, looked for every half of it): 30 s here. Seen in CI: Celery's Redis transport lost a message that a
    # worker killed mid-stream had popped but not yet recorded as unacknowledged; the job stayed queued past the
    # test's 120 s wait. Tests that prove a faster path (the queue-epoch re-send) set the default back.
    "REQUEUE_AFTER_SECONDS": "30",
}
MATRIX: list[dict] = []  # one row per chaos test that ran the ledger: printed at the end of the session
REPORTS: list[str] = []  # run reports the tests wrote: listed at the end of the session


@pytest.fixture
def timeline(request):
    tl = FaultTimeline(seed=7)
    yield tl
    tl.save(reports_path("chaos", f"{request.node.name}.json"))


@pytest.fixture
def http_faults(mock_openai, timeline):
    return HttpFaults(mock_openai, timeline)


@pytest.fixture
def process_faults(stack_provider, timeline):
    return ProcessFaults(timeline, stack_provider)


@pytest.fixture
def chaos_system(system_factory):
    """A system of the test's own (own queue), tuned so faults resolve in seconds: API + workers started on demand."""

    def make(
        workers: int = 2,
        concurrency: int = 4,
        sabotage: str | None = None,
        api_sabotage: str | None = None,
        transport: str | None = None,
        **env,
    ):
        sut = system_factory(env={**CHAOS_ENV, **env}, transport=transport)
        sut.start(workers, concurrency=concurrency, grace=5, sabotage=sabotage, api_sabotage=api_sabotage)
        return sut

    return make


@pytest.fixture(scope="module")
def knob_system(stack, tmp_path_factory, request):
    """One system (own queue, chaos settings, one worker of concurrency 2) for a whole module whose tests change
    nothing in it: they only turn the mock OpenAI service's knobs, reset before and after each test. Sharing it is
    safe for the verdicts: each test's ledger judges the jobs its own journal accepted, and counts any other job on
    the queue accepted since that journal began (none may exist), so earlier tests' jobs are neither judged nor hidden."""
    from harness.drivers.system_under_test import SystemUnderTest
    from harness.pytest_plugin import SYSTEM_ENV, chosen_transport

    sut = SystemUnderTest(
        stack,
        workdir=tmp_path_factory.mktemp("knob-system"),
        env={**SYSTEM_ENV, **CHAOS_ENV},
        isolated=True,
        transport=chosen_transport(request.config),
    )
    try:
        sut.start(1, concurrency=2, grace=5)
        yield sut
    finally:
        sut.stop()
        assert sut.leftovers() == []


@pytest.fixture
def celery_tasks_lost(stack):
    """``celery_tasks_lost(sut, jobs, seed, stamp_too=False)``: a Celery system's tasks lost as a broker loses them.
    Its one worker is frozen (SIGSTOP) once it has stamped its queue (the stamp it keeps on the broker beside the
    queue, ``CeleryTransport.created``, noted in Postgres); two requests of five inference jobs are sent, their
    tasks taken off the list (and the stamp with them where ``stamp_too``: a broker that lost its data), and the
    worker resumes. Returns the jobs' ids, a Redis client and the stamp's key."""
    import signal

    import psycopg
    import redis

    from harness.polling import wait_for

    r = redis.Redis.from_url(stack.redis.url)

    def lose(sut, jobs, seed: int, stamp_too: bool = False):
        key = f"verisim:queue-epoch:{sut.queue_name}"

        def recorded() -> bool:  # on the broker, and noted in Postgres as this deployment's queue's
            with psycopg.connect(stack.postgres.dsn) as conn:
                row = conn.execute("SELECT created FROM queue_epochs WHERE queue = %s", (sut.queue_name,)).fetchone()
            return bool(row and r.exists(key) and row[0].endswith(r.get(key).decode()))

        wait_for(recorded, 30, 0.2, what="the worker's queue stamp on the broker and in Postgres")
        sut.workers[0].proc.send_signal(signal.SIGSTOP)  # a worker that takes nothing: these wait on the list
        ids = jobs.inference(5, seed=seed) + jobs.inference(5, seed=seed + 5)
        wait_for(lambda: r.llen(sut.queue_name), 10, 0.1, what="tasks waiting on the list")
        assert r.delete(sut.queue_name, *([key] if stamp_too else [])) == 1 + stamp_too  # what the broker lost
        sut.workers[0].proc.send_signal(signal.SIGCONT)
        return ids, r, key

    yield lose
    r.close()


@pytest.fixture
def jobs_for(stack, request, timeline):
    matrix = MATRIX if "tests/chaos/" in str(request.node.fspath) else None
    return lambda sut: Jobs(sut, stack, request.node.name, timeline, matrix)


@pytest.fixture(scope="session")
def report_paths():
    """Tests append the reports they wrote; the terminal summary says where they are."""
    return REPORTS


def pytest_sessionfinish(session):
    """On a pytest-xdist worker (-n): hand this worker's matrix rows and reports to the controller, which prints them."""
    handed = getattr(session.config, "workeroutput", None)
    if handed is not None:
        handed["verisim_matrix"] = json.dumps(MATRIX)
        handed["verisim_reports"] = json.dumps(REPORTS)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """pytest-xdist's controller: a worker finished; gather what it handed over."""
    handed = getattr(node, "workeroutput", {})
    MATRIX.extend(json.loads(handed.get("verisim_matrix", "[]")))
    REPORTS.extend(json.loads(handed.get("verisim_reports", "[]")))


def pytest_terminal_summary(terminalreporter):
    if REPORTS:
        terminalreporter.section("verisim reports")
        for path in REPORTS:
            terminalreporter.write_line(f"run report: {path}")
    if not MATRIX:
        return
    out = reports_path("chaos", "matrix.json")
    out.write_text(json.dumps(MATRIX, indent=2))
    terminalreporter.section("fault matrix")
    head = (
        f"{'test':<58} {'sent':>5} {'done':>5} {'warn':>5} {'fail':>5} {'lost':>5} {'dup':>4} {'recovery s':>10}"
        f" {'agree s':>8}"
    )
    terminalreporter.write_line(head)
    for r in MATRIX:
        terminalreporter.write_line(
            f"{r['test'][:58]:<58} {r['sent']:>5} {r['completed']:>5} {r['with_warnings']:>5} {r['failed']:>5} "
            f"{r['lost']:>5} {r['duplicated']:>4} {str(r['recovery_s']):>10} {str(r['agree_s']):>8}"
        )
    terminalreporter.write_line(f"(saved to {out})")
