"""nox sessions. Each runs in the project's own .venv (made by `python3 dev.py setup`, which they call if needed).

    nox -s lint | unit | integration | chaos | verdict-time | chaos-load | sabotage | load | load-distributed |
           bench | images | containers | compose | coverage | ci | up | demo
Arguments after `--` go to pytest (or to the program, for up/demo), e.g. `nox -s integration -- -k sqs --stack=local`.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
PY = str(ROOT / ".venv" / "bin" / "python")
nox.options.sessions = ["lint", "unit", "integration"]
nox.options.default_venv_backend = "none"
# Python writes the bytecode of what it compiles (system/, harness/, tests/, and pytest's assertion-rewritten test
# modules) where this kind of machine says not to (PYTHONDONTWRITEBYTECODE): otherwise every process a session starts
# (each pytest worker, each API and worker process of each system) compiles them again from source, about 5 s of CPU
# per pytest process on 2 cores
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def _setup(session: nox.Session) -> None:
    if not os.environ.get("VERISIM_SETUP_DONE"):
        session.run(sys.executable, str(ROOT / "dev.py"), "setup", external=True)


def _pytest(session: nox.Session, *args: str, success_codes=(0,)) -> None:
    _setup(session)
    session.run(PY, "-m", "pytest", *args, *session.posargs, external=True, success_codes=list(success_codes))


# lint, the format check, and mypy over system/ and harness/ (settings in pyproject.toml [tool.mypy])
STATIC_CHECKS = [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]]


def _static_checks(session: nox.Session) -> None:
    for check in STATIC_CHECKS:
        session.run(PY, "-m", *check, external=True)


class _Beside:
    """CI steps run in the background, one after another, beside a step in the foreground: each runs every one of
    its commands (output to its own log, shown when it ends) and has its own figures and verdict."""

    def __init__(self, steps: list[tuple[str, list[list[str]], Path]]):
        self.steps = steps
        self.figures: list[dict] = []
        self.waiter = threading.Thread(target=self._run, daemon=True)
        self.waiter.start()

    def _run(self) -> None:
        for name, commands, log in self.steps:
            started, busy_before = time.monotonic(), _cpu_jiffies()
            script = "rc=0; " + " ".join(f"{shlex.join(c)} || rc=1;" for c in commands) + " exit $rc"
            with open(log, "wb") as out:
                code = subprocess.run(["bash", "-c", script], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT).returncode
            self.figures.append(_step_figures(name, started, busy_before, code == 0))

    def join(self, session: nox.Session) -> list[dict]:
        self.waiter.join()
        for name, _, log in self.steps:
            session.log(f"{name} ({log}):\n{log.read_text().rstrip()}")
        return self.figures


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """ruff over everything (lint, and the format check: `ruff format .` fixes it), then mypy over system/ and
    harness/ (every function body, annotated or not)."""
    _setup(session)
    _static_checks(session)


@nox.session(python=False)
def unit(session: nox.Session) -> None:
    """Unit tests: no backing services."""
    _pytest(session, "tests/unit")


@nox.session(python=False)
def integration(session: nox.Session) -> None:
    """Integration tests against the real stack (--stack=auto|local|containers)."""
    _pytest(session, "tests/integration")


@nox.session(python=False)
def chaos(session: nox.Session) -> None:
    """Fault-injection tests (tests/chaos; select a fault with -- -k rate_limit)."""
    _pytest(session, "tests/chaos")


@nox.session(name="verdict-time", python=False)
def verdict_time(session: nox.Session) -> None:
    """Time a cold `pytest tests/chaos -k rate_limit` (or the pytest arguments after --) from the command to its
    exit, split into start-up, stack and each test; appended to reports/verdict-time.jsonl."""
    _setup(session)
    session.run(PY, "-m", "harness.programs.verdict_time", *session.posargs, external=True)


@nox.session(name="chaos-load", python=False)
def chaos_load(session: nox.Session) -> None:
    """A chaos-under-load scenario: Locust at 20 users while the scenario's faults hit, verdicts per window, the
    ledger over every job (-- --scenario ci|full|PATH --users 20 --stack local|containers --only WINDOW,…)."""
    _setup(session)
    Path(ROOT / "reports").mkdir(exist_ok=True)
    session.run(PY, "-m", "harness.programs.chaos_load", *session.posargs, external=True)


@nox.session(python=False)
def fuzz(session: nox.Session) -> None:
    """Longer property tests and API fuzzing: Hypothesis's "fuzz" profile (random, 10x the examples) and 20 000
    generated API requests (VERISIM_FUZZ_REQUESTS overrides); counts in reports/fuzz/counts.json."""
    session.env.setdefault("VERISIM_FUZZ_REQUESTS", "20000")
    _pytest(
        session,
        "tests/unit/test_properties_domain.py",
        "tests/unit/test_properties_ledger.py",
        "tests/unit/test_properties_slo.py",
        "tests/integration/test_properties_stores.py",
        "tests/integration/test_api_fuzz.py",
        "tests/integration/test_job_lifecycle_stateful.py",
        "--hypothesis-profile=fuzz",
        "--stack=local",
        "--timeout=3000",
    )


@nox.session(python=False)
def sabotage(session: nox.Session) -> None:
    """Planted defects (tests/sabotage): each verdict of the suite must turn red, naming the violation."""
    _pytest(session, "tests/sabotage", "-m", "sabotage")


@nox.session(python=False)
def load(session: nox.Session) -> None:
    """Locust (20 users, 60 s) against the system on the stack, gated on slo.toml; writes reports/<timestamp>/."""
    session.env.setdefault("VERISIM_LOAD_USERS", "20")
    session.env.setdefault("VERISIM_LOAD_SECONDS", "60")
    _pytest(session, "tests/load", "-m", "not bench")


@nox.session(name="load-open", python=False)
def load_open(session: nox.Session) -> None:
    """The open model: the submissions offered at an arrival rate that does not wait for answers, 9/s by default
    (the closed 20 users' rate), gated on slo.toml and on the generator's own shortfall
    (-- --arrival ramp:5:40:60 --duration 120)."""
    _setup(session)
    session.run(PY, "-m", "harness.programs.load", "--arrival", "constant:9", *session.posargs, external=True)


@nox.session(name="load-distributed", python=False)
def load_distributed(session: nox.Session) -> None:
    """The same load from a Locust master and 2 workers (-- --users 40 --duration 120 …)."""
    _setup(session)
    session.run(PY, "-m", "harness.programs.load", "--workers", "2", *session.posargs, external=True)


@nox.session(python=False)
def bench(session: nox.Session) -> None:
    """pytest-benchmark benchmarks; JSON saved under .benchmarks/ (compare runs with -- --benchmark-compare)."""
    Path(ROOT / "reports").mkdir(exist_ok=True)
    compare = []
    if list((ROOT / ".benchmarks").glob("*/*.json")):  # a previous run to compare with: regressions fail
        compare = ["--benchmark-compare", "--benchmark-compare-fail=median:40%"]
    _pytest(
        session,
        "tests",
        "-m",
        "bench",
        "--benchmark-only",
        "--benchmark-autosave",
        "--benchmark-json=reports/bench-latest.json",
        *compare,
    )


# on the containers stack CI runs the integration tests and the chaos tests whose faults the provider carries out
# (process faults: Docker kill/pause/stop/start instead of signals) again. HTTP faults (the mock's knobs) and TCP
# faults (the harness's own proxies) act the same on both providers; `nox -s containers` runs every chaos test there.
CONTAINERS_CI_TESTS = ["tests/integration", "tests/chaos/test_process_faults.py"]
# what does not depend on where the services run is not run twice in CI: the dashboard in Chromium, the data
# simulator and the load simulator (clients of the API), the plugin test (it starts a local stack of its own), the
# score pipeline's stages, the Celery path, the design's operator commands, the worker's own failure handling and the
# local provider's own promises (test_stack_lifecycle starts local processes whatever --stack says); the containers
# pass runs on the sqs transport (`nox -s containers`: everything)
CONTAINERS_CI_SKIP = [
    "tests/integration/test_stack_lifecycle.py",
    "tests/integration/test_dashboard_browser.py",
    "tests/integration/test_data_simulator.py",
    "tests/integration/test_simulate_load.py",
    "tests/integration/test_pytest_plugin.py",
    "tests/integration/test_score_pipeline.py",
    "tests/integration/test_celery_transport.py",
    "tests/integration/test_seed_operator_commands.py",
    "tests/integration/test_system_failures.py",
]
# the workers are local processes on both providers: killing, freezing or skewing the clock of one is the same fault
# on either
CONTAINERS_CI_DESELECT = "not worker_kill and not worker_pause and not minutes_off"


@nox.session(python=False)
def images(session: nox.Session) -> None:
    """Start dockerd if none answers, build the offline images (cached by build hash; -- --force, -- system …)."""
    _setup(session)
    session.run(PY, "-m", "harness.docker.build", *session.posargs, external=True)


@nox.session(python=False)
def compose(session: nox.Session) -> None:
    """docker-compose.yml end to end: up (offline images), a bounded mix of jobs, all completed, down (-- --keep)."""
    _setup(session)
    session.run(PY, "-m", "harness.docker.compose_check", *session.posargs, external=True)


@nox.session(python=False)
def containers(session: nox.Session) -> None:
    """The integration and every chaos test (chaos under load included) on the Testcontainers stack (starts dockerd,
    builds images first)."""
    _setup(session)
    _containers_pass(session, ["tests/integration", "tests/chaos"])


def _containers_pass(session: nox.Session, tests: list[str] | None = None) -> None:
    for command in _containers_commands(tests, session.posargs):
        session.run(*command, external=True)


def _containers_commands(tests: list[str] | None = None, posargs: list[str] | tuple = ()) -> list[list[str]]:
    """The image build (a no-op when the images are current), then the tests on the containers stack: ``tests``, or
    CI's selection (CONTAINERS_CI_TESTS, less what does not depend on where the services run)."""
    Path(ROOT / "reports").mkdir(exist_ok=True)
    # what judges the API, the browser page or the lifecycle rather than the services runs once in CI, on the local
    # stack: generated inputs (marker fuzz), the dashboard in Chromium, the data simulator
    marks = "not bench" if tests else "not bench and not fuzz"
    ignore = (
        []
        if tests
        else [*(f"--ignore={t}" for t in CONTAINERS_CI_SKIP), "--transport=sqs", "-k", CONTAINERS_CI_DESELECT]
    )
    return [
        [PY, "-m", "harness.docker.build"],
        [
            PY,
            "-m",
            "pytest",
            *(tests or CONTAINERS_CI_TESTS),
            *ignore,
            "-m",
            marks,
            "--stack=containers",
            "-p",
            "no:cacheprovider",
            "--junitxml=reports/junit-containers.xml",
            # two at a time, test by test, each xdist worker on a containers stack of its own: the process-fault
            # file alone is most of the pass, so splitting by file would leave one worker idle
            *(["-n", "2", "--dist", "load"] if not tests else []),
            *posargs,
        ],
    ]


@nox.session(python=False)
def coverage(session: nox.Session) -> None:
    """system/'s coverage over the unit and integration tests (the generated-input ones aside) on the local stack,
    measured in the test process and in every API, worker and simulator process they start (coverage's subprocess
    support); gated at 85 % of system/, as in CI. Per-package table and reports/coverage/summary.json; HTML in
    reports/coverage/html (-- -k … narrows the run)."""
    _setup(session)
    session.run(PY, "-m", "pytest", *MEASURED_TESTS, *session.posargs, env=_coverage_env(), external=True)
    _coverage_gate(session, html=True)


# what the coverage gate measures: the system's own behaviour, not its timing. The chaos, sabotage and load tests judge
# time and throughput, which the tracer would slow; the generated-input tests (fuzz) spend their time in Hypothesis's
# engine, in the test process, which the tracer slows most: those run unmeasured
UNMEASURED = "chaos or sabotage or load or fuzz"
MEASURED_TESTS = ["tests", "-m", f"not bench and not ({UNMEASURED})", "--stack=local", "-p", "no:cacheprovider"]
COVERAGE_DATA = ROOT / "reports" / "coverage"


def _coverage_env() -> dict[str, str]:
    """A fresh data folder, and the variable that makes every Python process the tests start measure itself."""
    import shutil

    shutil.rmtree(COVERAGE_DATA, ignore_errors=True)
    COVERAGE_DATA.mkdir(parents=True)
    return {"COVERAGE_PROCESS_START": str(ROOT / "pyproject.toml"), "COVERAGE_FILE": str(COVERAGE_DATA / ".coverage")}


def _coverage_gate(session: nox.Session, html: bool = False) -> None:
    """Combine every process's data; the per-package table and the gate (harness.reports.coverage_report: 85 % of system/)."""
    env = {"COVERAGE_FILE": str(COVERAGE_DATA / ".coverage")}
    session.run(PY, "-m", "coverage", "combine", "--quiet", env=env, external=True)
    # the gate is harness.reports.coverage_report's (with its per-package table), not each of coverage's writers
    written = ["--quiet", "--fail-under=0"]
    session.run(
        PY, "-m", "coverage", "json", *written, "-o", str(COVERAGE_DATA / "coverage.json"), env=env, external=True
    )
    if html:
        session.run(PY, "-m", "coverage", "html", *written, "-d", str(COVERAGE_DATA / "html"), env=env, external=True)
    session.run(
        PY, "-m", "harness.reports.coverage_report", "--json", str(COVERAGE_DATA / "coverage.json"), external=True
    )


@nox.session(python=False)
def ci(session: nox.Session) -> None:
    """Everything that gates a merge: the unit and integration tests on the local stack, three at a time, with
    system/'s coverage measured and gated; the chaos, sabotage and fuzz tests that judge no time, three at a time,
    with lint, the format check and the type check, then the integration and process-fault tests again on the
    containers stack (dockerd started and images built when needed), beside them; then those that judge time (marker
    timing: load SLOs, the CI chaos-under-load scenario) and the ratio benchmarks, one at a time. Every step runs; the
    session fails if any did."""
    from nox.command import CommandFailed

    ci_started = time.monotonic()
    _setup(session)
    Path(ROOT / "reports").mkdir(exist_ok=True)
    failed: list[str] = []

    figures: list[dict] = []
    # the machine's CPU by kind of process, read once a second beside the steps (harness.reports.cpu_kinds)
    CPU_BY_KIND.unlink(missing_ok=True)
    sampler = subprocess.Popen([PY, "-m", "harness.reports.cpu_kinds", str(CPU_BY_KIND)], cwd=ROOT)

    def step(name: str, run: Callable[[], object]) -> None:
        started, busy_before, kinds_before = time.monotonic(), _cpu_jiffies(), _cpu_by_kind()
        try:
            run()
        except CommandFailed:
            failed.append(name)
            session.warn(f"CI step failed: {name} (the next steps still run)")
        fig = _step_figures(name, started, busy_before, name not in failed)
        fig["cpu_s_by_kind"] = _kinds_between(kinds_before, _cpu_by_kind())
        figures.append(fig)

    def pytest_step(
        name: str, selection: str, parallel: bool, junit: str, env: dict | None = None, more: tuple[str, ...] = ()
    ) -> None:
        """One pytest run of CI: ``selection`` (a marker expression) on the local stack, three at a time (a file's
        tests together, each xdist worker on a local stack and system of its own) or alone."""
        args = ["tests", "-m", selection, "--stack=local", "-p", "no:cacheprovider", f"--junitxml=reports/{junit}"]
        args += more
        extra = ["-n", str(PARALLEL_TESTS), *BY_MODULE] if parallel else []
        step(name, lambda: session.run(PY, "-m", "pytest", *args, *extra, *session.posargs, env=env, external=True))

    # the unit and integration tests mostly wait on the processes and stores they drive: several at a time, measured
    # by coverage in every process
    cov_env = _coverage_env()
    measured = f"not bench and not ({UNMEASURED}) and not timing"
    pytest_step("unit and integration (3 at a time)", measured, True, "junit.xml", cov_env)
    step("coverage gate", lambda: _coverage_gate(session))
    # the fault tests that judge no time (or only that a planted defect turns a time verdict red: red_verdicts) run
    # several at a time, each xdist worker on a local stack of its own, so one test's restarted Postgres is never
    # another's; they mostly wait (fault windows, visibility timeouts)
    faults = f"not bench and ({UNMEASURED}) and not timing"
    # the fault step mostly waits on its windows and leaves about a quarter of the cores idle: beside it run the
    # static checks (one core for two minutes), then the containers pass (integration and process faults on the
    # Testcontainers stack, two at a time: it mostly waits on Docker), which neither judges time
    beside = _Beside(
        [
            (
                "static checks (beside the fault step)",
                [[PY, "-m", *check] for check in STATIC_CHECKS],
                ROOT / "reports" / "static-checks.log",
            ),
            (
                "containers stack (beside the fault step)",
                _containers_commands(posargs=session.posargs),
                ROOT / "reports" / "containers.log",
            ),
        ]
    )
    pytest_step("chaos, sabotage and fuzz (3 at a time)", faults, True, "junit-faults.xml")
    for fig in beside.join(session):
        figures.append(fig)
        if not fig["ok"]:
            failed.append(fig["step"])
    # what judges time then runs alone, in one pytest run (one stack, one system): the tests whose verdict is a wait
    # (marker timing: SLO gates, chaos under load, a score that must not hold up short jobs) and the ratio benchmarks
    # (same-run ratios, so a fresh clone needs no saved baseline; history in reports/)
    pytest_step(
        "what judges time, and the ratio benchmarks (alone)",
        "timing or bench",
        False,
        "junit-timing.xml",
        more=("--benchmark-json=reports/bench-latest.json",),
    )
    sampler.terminate()
    _report_steps(session, figures, time.monotonic() - ci_started)
    if failed:
        session.error(f"CI failed: {', '.join(failed)}")


def _cpu_jiffies() -> tuple[int, int]:
    """The machine's (busy, total) CPU time so far, from /proc/stat (every process, the stack's included)."""
    try:
        fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return (0, 0)
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields) - idle, sum(fields))


CPU_BY_KIND = ROOT / "reports" / "ci-cpu-by-kind.json"  # written by harness.reports.cpu_kinds while CI runs


def _cpu_by_kind() -> dict[str, float]:
    """CPU seconds by kind of process since CI's sampler started ({} before its first reading)."""
    try:
        return json.loads(CPU_BY_KIND.read_text())["cpu_s"]
    except (OSError, ValueError, KeyError):
        return {}


def _kinds_between(before: dict[str, float], after: dict[str, float], top: int = 8) -> dict[str, float]:
    """CPU seconds by kind of process from one reading to a later one: the ``top`` largest, largest first."""
    used = {k: round(v - before.get(k, 0.0), 1) for k, v in after.items()}
    return dict(sorted(((k, v) for k, v in used.items() if v >= 0.1), key=lambda kv: -kv[1])[:top])


def _step_figures(name: str, started: float, before: tuple[int, int], ok: bool) -> dict:
    busy, total = (a - b for a, b in zip(_cpu_jiffies(), before, strict=True))
    return {
        "step": name,
        "ok": ok,
        "wall_s": round(time.monotonic() - started, 1),
        "cpu_busy": round(busy / total, 3) if total else None,  # share of all cores' time spent busy
        "cores": os.cpu_count(),
    }


def _report_steps(session: nox.Session, figures: list[dict], total_s: float) -> None:
    """Where CI's time went: each step's wall time and how busy the machine's cores were meanwhile (a step well
    below 100 % waits on something; one at 100 % is bound by the CPU). Appended to reports/ci-steps.jsonl."""
    lines = [f"{'step':<48} {'wall s':>7} {'cpu busy':>8}"]
    for f in figures:
        busy = f"{f['cpu_busy']:.0%}" if f["cpu_busy"] is not None else "-"
        lines.append(f"{f['step'] + ('' if f['ok'] else ' (FAILED)'):<48} {f['wall_s']:>7.0f} {busy:>8}")
    lines.append(f"{'all steps (the session, set-up included)':<48} {total_s:>7.0f}")
    lines.append("CPU seconds by kind of process during each step (what ran beside it included):")
    for f in figures:
        if f.get("cpu_s_by_kind"):
            kinds = ", ".join(f"{k} {v:.0f}" for k, v in list(f["cpu_s_by_kind"].items())[:6])
            lines.append(f"  {f['step']}: {kinds}")
    session.log("CI steps:\n" + "\n".join(lines))
    record = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "steps": figures, "total_s": round(total_s)}
    with open(ROOT / "reports" / "ci-steps.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")


# xdist workers of CI's parallel steps: on 2 cores the tests mostly wait (fault windows, visibility timeouts, the
# processes they drive), so three keep both cores busy; a file's tests stay on one worker (--dist loadfile), and the
# files are handed out longest first (tests/durations.json, by tests/conftest.py; xdist's own reorder would put the
# files with the most tests first instead, and a step of minutes would end on a long file of few tests)
PARALLEL_TESTS = 3
BY_MODULE = ["--dist", "loadfile", "--no-loadscope-reorder"]


@nox.session(python=False)
def up(session: nox.Session) -> None:
    """Start the stack, the API and 2 workers, print every URL, run until Ctrl-C (-- --workers 4 …)."""
    _setup(session)
    session.run(PY, "-m", "harness.programs.up", *session.posargs, external=True)


@nox.session(python=False)
def capacity(session: nox.Session) -> None:
    """Inference jobs at 1, 2 and 4 workers against the raw SQS ceiling, CPU per job by process, client headroom,
    a 300-job burst and a mixed phase (-- --profile for py-spy's top frames; -- --help)."""
    _setup(session)
    session.run(PY, "-m", "harness.programs.capacity", *session.posargs, external=True)


@nox.session(python=False)
def demo(session: nox.Session) -> None:
    """The main job: everything up on the local stack, a bounded mixed load with live progress, then a summary."""
    _setup(session)
    session.run(PY, "-m", "harness.programs.demo", *session.posargs, external=True)
