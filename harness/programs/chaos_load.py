"""Chaos under load: one Locust run (a subprocess) against a system of its own, with a scenario's fault windows
driven on a timeline from this process, then verdicts per phase, the ledger over every job the run accepted, and
one report.

    python -m harness.programs.chaos_load                                  # scenarios/full.toml, 20 users, local stack
    python -m harness.programs.chaos_load --scenario ci --stack containers
    python -m harness.programs.chaos_load --scenario full --only redis_restart,worker_kill
    nox -s chaos-load -- --scenario scenarios/full.toml --users 20

Phases: ``warmup``, ``steady`` (the baseline), then per window ``<name>`` (the fault) and ``<name>/recovery``.
Per window: requests accepted and refused (by status; a refusal of a kind the window does not expect is a server
error), API p95, enqueue->done p95 of the jobs accepted in it, jobs completed in it, time to recover (from the
fault's end until the backlog accepted before the end is drained and the enqueue->done p95 of jobs accepted since is
back under ``recovery_tolerance`` × the steady phase's), and the evidence that the fault reached the system.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import psycopg

from harness.drivers.throughput import percentile
from harness.faults import FaultTimeline, FaultWindow, HttpFaults, MockOpenAIControl, ProcessFaults
from harness.faults.catalog import CATALOG, FaultName, Target
from harness.faults.tcp import TcpProxy
from harness.oracles import journal as journals
from harness.oracles import ledger, two_judges
from harness.oracles.contract import EVENTS_TOPIC, FAILED, OPEN, RUNNING, sql_in
from harness.oracles.slo import Verdict
from harness.oracles.windows import (
    BreachWatch,
    abort_verdict,
    arrival_verdict,
    failure_budget_verdict,
    generator_verdicts,
    held_back,
    offered_load_verdict,
    resilience_score,
    steady_state_verdicts,
    time_to_recover,
    why_not_recovered,
    window_offered,
    window_verdicts,
)
from harness.programs.load import open_model_figures
from harness.programs.scenario import Scenario, Window
from harness.reports import cpu_kinds, report
from harness.stack.choice import CHOICES

if TYPE_CHECKING:
    from harness.drivers.system_under_test import SystemUnderTest
    from harness.faults.aws import AwsFaultProxy
    from harness.stack.process import ManagedProcess
    from harness.stack.services.kafka import LocalKafka

CPU_TIMELINE = "cpu-by-kind.jsonl"  # the run dir's record of the CPU by kind of process, once a second
IN_HAND_GAUGE = "verisim_worker_inflight_jobs"  # a worker's /metrics: the jobs it holds now (system/worker/metrics.py)
BASE_ENV = {  # faults resolve in seconds, as in the chaos tests; a scenario's [system] table overrides these
    "SQS_VISIBILITY_TIMEOUT": "4",
    "SQS_MAX_RECEIVE_COUNT": "8",
    "WORKER_RETRY_BASE_SECONDS": "0.5",
    "OPENAI_TIMEOUT_SECONDS": "2",
    "WORKER_LOST_AFTER_SECONDS": "4",  # a Celery worker silent this long is lost: its running jobs are sent again
}
SERVICE_TROUBLE = {  # a system log line (WARNING or worse) that shows a backing service's fault reached the system
    "postgres": ("dependency unavailable", "failed", "Postgres", "connection", "pool"),
    "redis": ("status cache",),
    "kafka": ("kafka", "event publish deferred", "restoring events", "broker"),
    "localstack": ("queue", "receive failed", "send"),
}


@dataclass
class Phase:
    name: str
    kind: str  # warmup | steady | fault | recovery
    start: float
    end: float
    window: str | None = None


@dataclass
class Outcome:
    scenario: Scenario
    run_dir: Path
    phases: list[Phase]
    windows: list[dict]  # per window: name, fault, params, start, end, evidence, figures, verdicts
    verdicts: list[Verdict]
    ledger: ledger.LedgerReport
    figures: dict
    report_path: Path | None = None
    timeline: list[dict] = field(default_factory=list)
    judges: list = field(
        default_factory=list
    )  # harness.oracles.two_judges rows: each window's targets, Prometheus beside

    breach: dict | None = None  # the abort's, when a breach stopped the run

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.verdicts)

    @property
    def score(self) -> float | None:
        return (self.figures.get("resilience") or {}).get("score")

    def table(self) -> str:
        """The fault × phase table, as printed at the end of a run."""
        head = (
            f"{'window':<22} {'phase':<9} {'acc':>5} {'ref':>4} {'5xx':>4} {'api p95':>8} {'done p95':>9} "
            f"{'done':>5} {'recover s':>9} {'evidence':>9} verdict"
        )
        lines = [head]
        for w in self.windows:
            for ph in ("fault", "recovery"):
                f = w["phases"][ph]
                lines.append(
                    f"{w['name'][:22]:<22} {ph:<9} {f['accepted']:>5} {f['refused']:>4} {f['server_errors']:>4} "
                    f"{_fmt(f['api_p95_ms']):>8} {_fmt(f['done_p95_ms']):>9} {f['completed']:>5} "
                    f"{_fmt(w['recover_s']) if ph == 'recovery' else '':>9} "
                    f"{w['trace'] if ph == 'fault' else '':>9} "
                    f"{'' if ph == 'recovery' else ('PASS' if all(v['ok'] for v in w['verdicts']) else 'FAIL')}"
                )
        return "\n".join(lines)


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.0f}" if v >= 10 else f"{v:.1f}"


class _Load:
    """The run's Locust, in a thread of its own: it offers the scenario's load until told to stop. A fault window
    lasts longer than its duration when bringing a service back takes a while (a container restarts in seconds): the
    load goes on until the last recovery phase has ended, then stops (bounded by ``slack_s``)."""

    def __init__(self, chaos: ChaosLoad, requests_log: Path):
        from harness.programs.load import open_model_env, run_locust

        sc = chaos.scenario
        self.load_s = int(sc.load_s + 0.999)
        self.slack_s = 15 * sum(w.family == "process" for w in sc.windows) + 30
        self.done = threading.Event()
        self.box: dict = {}
        sut, stack = chaos.sut, chaos.stack
        self.thread = threading.Thread(
            target=lambda: self.box.update(
                run=run_locust(
                    sut.api_url,
                    sc.users,
                    sc.spawn_rate,
                    self.load_s + self.slack_s,
                    chaos.run_dir,
                    extra_env={
                        "VERISIM_REQUEST_LOG": str(requests_log),
                        "VERISIM_JOURNAL": str(chaos.journal_path),
                        **open_model_env(sc.arrival, chaos.run_dir),
                    },
                    user_classes=sc.user_classes or None,
                    stop=self.done,
                    scrape=(stack.prometheus, {"system": sut.prometheus_scope["system"]}),
                )
            ),
            daemon=True,
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.done.set()
        self.thread.join(self.load_s + self.slack_s + 180)

    def result(self):
        """Locust's finished process (its exit code and output), or None when it never finished."""
        return self.box.get("run")


class ChaosLoad:
    def __init__(
        self,
        scenario: Scenario,
        stack,
        provider,
        progress: Callable[[str], None] = print,
        sabotage: str | None = None,
        api_sabotage: str | None = None,
        run_dir: Path | None = None,
        transport: str | None = None,
        abort: bool = True,
    ):
        """``transport``: the queue the system's jobs travel on (sqs, celery, seeds; default the scenario's, else
        VERISIM_TRANSPORT, else sqs). ``abort``: a breach of the scenario's ``[abort]`` targets held for its ``hold_s`` stops the run (False:
        ``--no-abort``, it runs to the end)."""
        self.scenario = scenario
        from harness.settings import current

        self.transport = transport or current().transport or scenario.transport
        self.stack = stack
        self.provider = provider
        self.say = progress
        self.sabotage = sabotage
        self.api_sabotage = api_sabotage
        self.run_dir = run_dir or report.new_run_dir()
        self.journal_path = self.run_dir / "journal.jsonl"  # what Locust's users were told: the ledger's set
        self.timeline = FaultTimeline(seed=7)
        self.proxies: dict[str, TcpProxy] = {}
        self.own_kafka: LocalKafka | None = None
        self.capped: dict = {}  # service -> the run's own instance on a capped disk (a disk.full window's)
        self.sut: SystemUnderTest | None = None
        self.phases: list[Phase] = []
        self.fault_windows: dict[str, FaultWindow] = {}
        self._proxy_hits: dict[str, tuple[str, int]] = {}
        self.watch = BreachWatch(scenario.abort.get("targets", {}), scenario.abort.get("hold_s", 0)) if abort else None
        self.stopped = threading.Event()  # set by an abort: the timeline ends at once
        self.not_run: list[str] = []  # windows an abort or an unhealthy steady state left out
        self.steady_checks: list[Verdict] = []
        self.aws_proxy: AwsFaultProxy | None = None
        self.role_env: dict[str, dict[str, str]] = {}  # "api" | "workers" -> its own settings (a partition's proxy)
        self.cpu: list[dict] = []  # the run's CPU by kind of process, a reading a second (harness.reports.cpu_kinds)
        self._cpu_sampler: subprocess.Popen | None = None

    # -- set-up ---------------------------------------------------------------------------------------------------
    def _capped_services(self) -> None:
        """A disk.full window fills the disk under a service's data: the run gets its own instance of that service,
        on a disk capped at start (the stack's own is shared and not capped), and everything — the system, the
        proxies, the other faults, the ledger — uses it."""
        from harness.faults.disk import DATA_CAP

        for svc in sorted({w.service for w in self.scenario.windows if w.fault == FaultName.DISK_FULL}):
            self.say(f"  {svc}: the run's own, its data on a disk capped at {DATA_CAP} (a disk.full window)")
            own = self.capped[svc] = self.provider.another(svc, self.run_dir / f"{svc}-capped", data_cap=DATA_CAP)
            self.stack = replace(self.stack, **{svc: own.endpoint()})

    def _proxy_env(self) -> dict[str, str]:
        needed = {w.service for w in self.scenario.windows if w.family == "tcp"}
        env: dict[str, str] = {}
        for svc in ("postgres", "redis", "localstack"):
            if svc in needed:
                p = self.proxies[svc] = TcpProxy("127.0.0.1", self._upstream_port(svc), svc).start()
                env.update(self._service_env(svc, p.port))
        for w in self.scenario.windows:
            if w.fault == FaultName.TCP_PARTITION and w.proxy_key not in self.proxies:
                # the partitioned clients reach the service through a proxy of their own, the others do not
                svc, clients = w.service, w.params["clients"]
                p = self.proxies[w.proxy_key] = TcpProxy("127.0.0.1", self._upstream_port(svc), w.proxy_key).start()
                self.role_env.setdefault(clients, {}).update(self._service_env(svc, p.port))
        if any(w.family == "aws" for w in self.scenario.windows):
            # AWS API errors: the system's SQS and S3 calls cross a proxy that speaks their protocols
            from harness.faults.aws import AwsFaultProxy

            upstream = env.get("AWS_ENDPOINT_URL") or self.stack.aws.endpoint_url
            self.aws_proxy = AwsFaultProxy(upstream, seed=7).start()
            env["AWS_ENDPOINT_URL"] = self.aws_proxy.url
        if "kafka" in needed:
            # Kafka clients connect wherever the broker's metadata points: a broker of the run's own advertises
            # the proxy, so every client (the system's and the ledger's) crosses it
            from harness.stack.endpoints import KafkaEndpoint
            from harness.stack.process import free_ports
            from harness.stack.services.kafka import LocalKafka

            (port,) = free_ports(1)
            p = self.proxies["kafka"] = TcpProxy("127.0.0.1", port, "kafka").start()
            self.own_kafka = LocalKafka(self.run_dir / "kafka", port, advertised_port=p.port)
            self.own_kafka.spawn()
            self.own_kafka.wait_ready()
            self.stack = replace(self.stack, kafka=KafkaEndpoint(f"127.0.0.1:{p.port}"))
            env["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{p.port}"
        return env

    def _upstream_port(self, svc: str) -> int:
        s = self.stack
        return {
            "postgres": s.postgres.port,
            "redis": s.redis.port,
            "localstack": urlparse(s.aws.endpoint_url).port or 4566,
        }[svc]

    def _service_env(self, svc: str, port: int) -> dict[str, str]:
        """The system's settings that point it at ``svc`` through the proxy on ``port``."""
        s = self.stack
        if svc == "postgres":
            return {
                "DATABASE_URL": s.postgres.dsn.replace(f":{s.postgres.port}/", f":{port}/"),
                "POSTGRES_PORT": str(port),
            }
        if svc == "redis":
            return {"REDIS_URL": f"redis://127.0.0.1:{port}/0"}
        return {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}

    def _start_system(self) -> None:
        from harness.drivers.system_under_test import SystemUnderTest

        sc = self.scenario
        self._capped_services()
        env = {**BASE_ENV, **sc.system_env, **self._proxy_env()}
        # the system's logs stay with the run's report (``<run>/system/logs``)
        self.sut = SystemUnderTest(
            self.stack,
            workdir=self.run_dir / "system",
            env=env,
            isolated=True,
            progress=self.say,
            transport=self.transport,
            role_env=self.role_env,
        )
        self.sut.start(
            sc.workers,
            concurrency=sc.worker_concurrency,
            grace=5,
            sabotage=self.sabotage,
            api_sabotage=self.api_sabotage,
        )

    # -- the faults -----------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _inject(self, w: Window, http: HttpFaults, proc: ProcessFaults) -> Iterator[FaultWindow]:
        target = Target(
            self.sut,
            http,
            proc,
            self.proxies,
            self.timeline,
            self.scenario.worker_concurrency,
            self._await_in_flight,
            self.sabotage,
            self.aws_proxy,
            self.capped,
        )
        with CATALOG[w.fault].inject(target, w.name, w.params) as fw:
            yield fw

    def _await_in_flight(self, worker: ManagedProcess, timeout: float = 10) -> int:
        """Up to ``timeout`` s until ``worker`` holds jobs, so a kill interrupts work. Returns what it held then (0: it
        never held any). Read from the worker's own ``/metrics`` (its in-hand gauge, every 10 ms) when it serves one:
        a Celery worker's inference task is in hand for tens of milliseconds, which a reading once a second rarely
        meets; else from its heartbeat (``worker:heartbeat:<pid>`` in Redis, every second)."""
        port = worker.env.get("WORKER_METRICS_PORT")
        read = self._in_hand_reader(int(port)) if port else self._heartbeat_reader(worker.pid)
        deadline = time.monotonic() + timeout
        with read as in_hand:
            while time.monotonic() < deadline:
                held = in_hand()
                if held > 0:
                    return held
                time.sleep(0.01 if port else 0.05)
        return 0

    @staticmethod
    @contextlib.contextmanager
    def _in_hand_reader(port: int) -> Iterator[Callable[[], int]]:
        """The worker's ``verisim_worker_inflight_jobs`` gauge, scraped at each call (0 while it does not answer)."""
        import httpx

        from harness.drivers import http

        with http.client(base_url=f"http://127.0.0.1:{port}", timeout=1) as client:

            def in_hand() -> int:
                try:
                    text = client.get("/metrics").text
                except httpx.HTTPError:
                    return 0
                for line in text.splitlines():
                    if line.startswith(IN_HAND_GAUGE + "{"):
                        return int(float(line.rsplit(" ", 1)[1]))
                return 0

            yield in_hand

    @contextlib.contextmanager
    def _heartbeat_reader(self, pid: int) -> Iterator[Callable[[], int]]:
        """The in-flight count of the worker's last heartbeat (0 while there is none or Redis does not answer)."""
        import redis

        r = redis.Redis.from_url(self.stack.redis.url, decode_responses=True, socket_timeout=2)

        def in_hand() -> int:
            try:
                return int(json.loads(r.get(f"worker:heartbeat:{pid}") or "{}").get("inflight", 0))
            except (redis.RedisError, ValueError):
                return 0

        try:
            yield in_hand
        finally:
            r.close()

    # -- the run --------------------------------------------------------------------------------------------------
    def run(self) -> Outcome:
        """Start the system, run the load with the scenario's timeline of faults, drain, judge."""
        from harness.programs.load import QueueSampler

        sc = self.scenario
        try:
            self._start_system()
            control = MockOpenAIControl(self.stack.openai)
            control.reset()
            if sc.openai:  # the run's baseline: e.g. the latency a real completion API has
                control.configure(**sc.openai)
            http = HttpFaults(control, self.timeline)
            own = {**self.capped, **({"kafka": self.own_kafka} if self.own_kafka else {})}
            proc = ProcessFaults(self.timeline, self.provider, own)
            requests_log = self.run_dir / "requests.jsonl"
            self.say(
                f"chaos-load '{sc.name}': {sc.users} users for at most {int(sc.load_s + 0.999)} s, {len(sc.windows)} fault "
                f"window(s) ({', '.join(w.name for w in sc.windows)}); system queue {self.sut.queue_name}"
            )
            load = _Load(self, requests_log)
            self._watch_done = threading.Event()
            # the machine's CPU by kind of process, once a second: what each phase spent it on (a window that did not
            # recover shows whether its fault, its backlog or something else held the cores)
            self._cpu_sampler = subprocess.Popen(
                [sys.executable, "-m", "harness.reports.cpu_kinds", "--timeline", str(self.run_dir / CPU_TIMELINE)]
            )
            with QueueSampler(self.stack, self.sut.queue_name, self.sut.dlq_name) as sampler:
                load.start()
                self._wait_for_first_request(requests_log, load.thread)
                if self.watch is not None and self.watch.targets:
                    threading.Thread(target=self._watch, args=(requests_log,), daemon=True).start()
                self._timeline(http, proc)
                self._watch_done.set()
                load_end = time.time()  # what the scenario asked for ends here
                load.stop()
                load_ended = time.time()
                self.say(f"  [{load_ended - self.phases[0].start:6.1f}s] load over; draining the backlog …")
                drained = self._drain(sc.drain_timeout_s)
                time.sleep(1.1)
            self._stop_cpu_sampler()
            self.cpu = cpu_kinds.read_timeline(self.run_dir / CPU_TIMELINE)
            run = load.result()
            (self.run_dir / "locust.log").write_text((run.stdout + run.stderr) if run else "locust did not finish")
            return self._judge(control, requests_log, sampler.samples, load_ended, drained, run, load_end)
        finally:
            self._stop_cpu_sampler()
            with contextlib.suppress(Exception):
                MockOpenAIControl(self.stack.openai).reset()
            if self.sut:
                self.sut.stop()
            for p in self.proxies.values():
                p.stop()
            if self.aws_proxy:
                self.aws_proxy.stop()
            if self.own_kafka:
                self.own_kafka.stop()
            for svc in self.capped.values():
                svc.stop()

    def _stop_cpu_sampler(self) -> None:
        if self._cpu_sampler is not None:
            self._cpu_sampler.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._cpu_sampler.wait(10)
            self._cpu_sampler = None

    def _timeline(self, http: HttpFaults, proc: ProcessFaults) -> None:
        """Warm-up, steady phase (the steady state checked, when the scenario states one: no fault is injected into
        an unhealthy system), then each window: its fault for its duration, then its recovery phase; then the steady
        state again. An abort ends it wherever it is."""
        sc = self.scenario
        try:
            self._phase("warmup", "warmup", time.time(), sc.warmup_s)
            self._phase("steady", "steady", self.phases[-1].end, sc.steady_s)
            if not self._steady_state("before faults", self.phases[-1]):
                self.not_run = [w.name for w in sc.windows]
                return
            self._windows(http, proc)
            if sc.steady_state:
                self._phase("after", "after", self.phases[-1].end, sc.steady_s)
                self._steady_state("after recovery", self.phases[-1])
        except _Stopped:
            done = {p.window for p in self.phases if p.kind == "recovery"}
            self.not_run = [w.name for w in sc.windows if w.name not in done]

    def _steady_state(self, when: str, phase: Phase) -> bool:
        """The scenario's steady-state hypothesis over ``phase`` (none stated: holds)."""
        targets = self.scenario.steady_state
        if not targets:
            return True
        verdicts = steady_state_verdicts(when, targets, self._span_measures(phase.start, phase.end))
        self.steady_checks += verdicts
        ok = all(v.ok for v in verdicts)
        self.say(
            f"  [{time.time() - self.phases[0].start:6.1f}s] steady state {when}: "
            + ("holds" if ok else "; ".join(v.line() for v in verdicts if not v.ok))
        )
        return ok

    def _windows(self, http: HttpFaults, proc: ProcessFaults) -> None:
        sc = self.scenario
        for w in sc.windows:
            start = time.time()
            self.say(
                f"  [{start - self.phases[0].start:6.1f}s] {w.name}: {w.fault} {w.params or ''} for {w.duration_s:g} s"
            )
            hits_before = self.proxies[w.proxy_key].hits.copy() if w.family == "tcp" else None
            with self._inject(w, http, proc) as fw:
                try:
                    # from when the fault took effect: one that first waits (a worker holding jobs, a worker
                    # starting up) still lasts its whole duration
                    self._sleep_until(max(start, fw.start) + w.duration_s)
                except _Stopped:  # the fault ends here; its window is judged on what it had
                    self.phases.append(Phase(w.name, "fault", start, time.time(), w.name))
                    self.fault_windows[w.name] = fw
                    fw.name = w.name
                    self.phases.append(Phase(f"{w.name}/recovery", "recovery", time.time(), time.time(), w.name))
                    raise
            end = time.time()
            fw.name = w.name  # the report labels each shaded window with the scenario's name for it
            self.fault_windows[w.name] = fw
            self.phases.append(Phase(w.name, "fault", start, end, w.name))
            if hits_before is not None:
                after = self.proxies[w.proxy_key].hits
                fw.evidence["proxy_hits"] = sum(after.values()) - sum(hits_before.values())
            self._recovery(w, end)

    def _recovery(self, w: Window, fault_end: float) -> None:
        """A window's recovery phase: it ends once the window's time to recover can be seen (every job accepted since
        the previous fault's end has finished, and a 5 s slice of jobs accepted after the fault finished within the
        tolerance of the steady phase's enqueue->done p95: ``time_to_recover``, as the verdict computes it), or after
        the window's ``recovery_s`` at the latest. Waiting out the whole ``recovery_s`` once the system is back proves
        nothing more; the next fault begins on a system seen to have recovered."""
        self.phases.append(Phase(f"{w.name}/recovery", "recovery", fault_end, fault_end + w.recovery_s, w.name))
        since = max((p.end for p in self.phases if p.kind == "fault" and p.end < fault_end), default=0.0)
        try:
            while time.time() < fault_end + w.recovery_s:
                self._sleep_until(min(fault_end + w.recovery_s, time.time() + 1.0))
                if self._recovered(fault_end, since):
                    break
        finally:
            self.phases[-1].end = time.time()

    def _recovered(self, fault_end: float, since: float) -> bool:
        """Whether the jobs seen so far already show the window's time to recover. The newest second is left out:
        a job accepted in it may not be in Postgres yet. False while a job of the steady phase is still open (its
        p95 is what the recovery is measured against), and while Postgres cannot be read (a Postgres restarting after
        its disk filled is not a recovered system)."""
        steady_phase = self.phases[1]
        try:
            jobs = self._jobs(since=min(since, steady_phase.start) - 1)
        except psycopg.Error:
            return False
        steady = self._phase_figures(steady_phase, [], jobs, (), [])
        if any(j["done"] is None for j in jobs if steady_phase.start <= j["enq"] < steady_phase.end):
            return False
        return (
            time_to_recover(
                jobs,
                fault_end,
                time.time() - 1.0,
                steady["done_p95_ms"],
                self.scenario.recovery_tolerance,
                since=since,
                kind_p95_ms=steady["done_p95_ms_by_kind"],
            )
            is not None
        )

    def _phase(self, name: str, kind: str, start: float, seconds: float, window: str | None = None) -> None:
        self.phases.append(Phase(name, kind, start, start + seconds, window))
        try:
            self._sleep_until(start + seconds)
        finally:
            self.phases[-1].end = time.time()

    def _sleep_until(self, t: float) -> None:
        while (left := t - time.time()) > 0:
            if self.stopped.wait(min(left, 0.5)):
                raise _Stopped

    # -- abort on breach ------------------------------------------------------------------------------------------
    def _watch(self, requests_log: Path) -> None:
        """Once a second after the warm-up, the abort targets over the last ``ABORT_SPAN_S`` seconds; a breach held
        for the scenario's ``hold_s`` stops the run."""
        assert self.watch is not None
        tail = _Tail(requests_log)
        while not self.stopped.is_set() and not self._watch_done.is_set():
            now = time.time()
            if self.phases and now >= self.phases[0].start + self.scenario.warmup_s:
                measured = self._span_measures(now - ABORT_SPAN_S, now, tail.read())
                if breach := self.watch.observe(now, measured):
                    self.say(
                        f"  [{now - self.phases[0].start:6.1f}s] ABORT: {breach['target']} measured "
                        f"{breach['measured']:g} (limit {breach['limit']:g}) for {self.watch.hold_s:g} s on end"
                    )
                    self.stopped.set()
                    return
            self._watch_done.wait(1.0)

    def _span_measures(self, start: float, end: float, requests: list[dict] | None = None) -> dict:
        """The steady-state and abort figures (``STEADY_TARGETS``) over ``start``..``end``, from the requests log and
        the jobs accepted in it (one still open counts its age)."""
        if requests is None:
            requests = _Tail(self.run_dir / "requests.jsonl").read()
        rs = [r for r in requests if start <= r["t"] + r["ms"] / 1000 < end and r["type"] != "WS"]
        jobs = self._jobs(since=start - 1)
        now = time.time()
        ages = [((j["done"] or now) - j["enq"]) * 1000 for j in jobs if start <= j["enq"] < end]
        return {
            "api_p95_ms": _r(percentile([r["ms"] for r in rs], 95)),
            "done_p95_ms": _r(percentile(ages, 95)),
            "server_errors": float(sum(1 for r in rs if not r["status"] or r["status"] >= 500)) if rs else None,
            "min_completed_per_s": round(
                sum(1 for j in jobs if j["done"] and start <= j["done"] < end) / max(end - start, 1e-6), 3
            ),
        }

    def _wait_for_first_request(self, path: Path, locust: threading.Thread, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not (path.exists() and path.stat().st_size):
            if not locust.is_alive() or time.monotonic() > deadline:
                log = self.run_dir / "locust.log"
                raise RuntimeError(f"Locust sent no request within {timeout:.0f}s (see {log})")
            time.sleep(0.1)

    def _drain(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        last_report = 0.0
        while True:
            left = self._query(
                f"SELECT count(*) FROM jobs WHERE queue = %s AND status IN {sql_in(OPEN)}", (self.sut.queue_name,)
            )[0][0]
            if left == 0:
                return True
            if time.monotonic() > deadline:
                self.say(f"  {left} job(s) still not terminal after {timeout:.0f}s:")
                t0 = self.phases[0].start
                for r in self._query(
                    "SELECT id, status, attempts, send_pending, extract(epoch FROM enqueued_at), "
                    f"extract(epoch FROM updated_at) FROM jobs WHERE queue = %s AND status IN {sql_in(OPEN)} "
                    "ORDER BY enqueued_at LIMIT 10",
                    (self.sut.queue_name,),
                ):
                    phase = next((p.name for p in self.phases if p.start <= float(r[4]) < p.end), "after the load")
                    self.say(
                        f"    {r[0]} {r[1]}, {r[2]} attempt(s), send_pending={r[3]}, accepted at "
                        f"{float(r[4]) - t0:.1f}s ({phase}), last touched {float(r[5]) - t0:.1f}s"
                    )
                return False
            if time.monotonic() - last_report > 10:
                self.say(f"  … {left} job(s) left")
                last_report = time.monotonic()
            time.sleep(0.5)

    def _query(self, sql: str, args=()) -> list[tuple]:
        with psycopg.connect(self.stack.postgres.dsn) as conn:
            return conn.execute(sql, args).fetchall()

    # -- verdicts -------------------------------------------------------------------------------------------------
    def _judge(
        self,
        control,
        requests_log: Path,
        depth: list[dict],
        load_ended: float,
        drained: bool,
        run=None,
        load_end: float | None = None,
    ) -> Outcome:
        """Every verdict of the run: the load generator's, each window's (from the journal, the stores and the
        evidence), the ledger's, the drain's; then the report."""
        requests = [json.loads(x) for x in requests_log.read_text().splitlines() if x.strip()]
        jobs = self._jobs()
        told = journals.read(self.journal_path, started=0.0)  # the queue is the run's own: every job on it counts
        led = self._settle_ledger(told, len(jobs), drained)
        told_at = [e.t for e in told.entries if e.event == "accepted" and e.job_id]
        steady = self._phase_figures(self.phases[1], requests, jobs, (), told_at)
        seen = {
            "mock": control.requests(),
            "warnings": [(r["t"], str(r.get("msg", ""))[:80]) for r in self.sut.log_records("WARNING")],
            "redeliveries": self._redeliveries(),
        }
        verdicts: list[Verdict] = generator_verdicts(run, requests, load_end or load_ended)
        if self.scenario.arrival:
            verdicts.append(arrival_verdict(open_model_figures(self.run_dir, load_end or load_ended)))
        verdicts += self.steady_checks
        if self.watch is not None and self.watch.targets:
            verdicts.append(abort_verdict(self.watch.breach, self.watch.hold_s, self.phases[0].start))
        windows = []
        for w in self.scenario.windows:
            if w.name in self.not_run:
                verdicts.append(Verdict(f"{w.name}: not run", "run", None, False))
                continue
            window, wv = self._judge_window(w, requests, jobs, told_at, steady, seen, load_ended)
            windows.append(window)
            verdicts += wv
        judges = self._second_judge(windows, verdicts)
        verdicts += self._ledger_verdicts(led)
        verdicts.append(Verdict("backlog drained (every accepted job terminal)", "== 1", float(drained), drained))
        figures = self._figures(requests, jobs, depth, load_ended, steady)
        if self.scenario.arrival:
            figures["arrivals"] = open_model_figures(self.run_dir, load_end or load_ended)
        verdicts.insert(2, self._offered_verdict(windows, figures))
        figures["resilience"] = self._score(verdicts)
        out = Outcome(
            self.scenario,
            self.run_dir,
            self.phases,
            windows,
            verdicts,
            led,
            figures,
            timeline=self.timeline.as_dicts(),
            judges=judges,
            breach=self.watch.breach if self.watch else None,
        )
        out.report_path = self._write_report(out)
        return out

    def _jobs(self, since: float | None = None) -> list[dict]:
        """Every job on the run's queue (accepted since ``since``, epoch s, when given), as the stores hold it (the
        journal says which were accepted)."""
        return [
            {
                "id": str(r[0]),
                "kind": r[1],
                "status": r[2],
                "attempts": r[3],
                "enq": float(r[4]),
                "done": None if r[5] is None else float(r[5]),
                "error_code": r[6],
            }
            for r in self._query(
                "SELECT id, kind, status, attempts, extract(epoch FROM enqueued_at), extract(epoch FROM finished_at), "
                "error_code FROM jobs WHERE queue = %s AND enqueued_at >= to_timestamp(%s)",
                (self.sut.queue_name, since or 0),
            )
        ]

    def _redeliveries(self) -> list[float]:
        """When each second (or later) attempt of a job began: its "running" event with attempts ≥ 2."""
        return [
            float(r[0])
            for r in self._query(
                "SELECT extract(epoch FROM o.created_at) FROM outbox o JOIN jobs j ON j.id = o.job_id WHERE j.queue = %s "
                "AND o.topic = %s AND o.payload->>'status' = %s AND (o.payload->>'attempts')::int >= 2",
                (self.sut.queue_name, self.sut.env.get("KAFKA_TOPIC_JOB_EVENTS", EVENTS_TOPIC), RUNNING),
            )
        ]

    def _settle_ledger(self, told, stored: int, drained: bool):
        self.say(
            f"  ledger over the client journal: {len(told.accepted_ids)} accepted job(s), {told.refusals} refused "
            f"submission(s); the stores hold {stored} job(s) on the run's queue …"
        )
        led = ledger.settle(  # an empty journal raises: a run that was told nothing proves nothing
            self.stack,
            journal=told,
            timeout=60 if drained else 5,
            dlq_name=self.sut.dlq_name,
            scope=[self.sut.queue_name],
            failures=self.scenario.failure_budget(),
            s3_lost_before=self._s3_lost_before(),
        )
        for line in ledger.content_lines(led):
            self.say(line)
        return led

    def _judge_window(
        self, w: Window, requests, jobs, told_at, steady: dict, seen: dict, load_ended: float
    ) -> tuple[dict, list[Verdict]]:
        """One window: its fault and recovery phases' figures, its time to recover, the evidence that the fault
        reached the system, and its verdicts against its targets and its failure budget."""
        fault = next(p for p in self.phases if p.kind == "fault" and p.window == w.name)
        rec = next(p for p in self.phases if p.kind == "recovery" and p.window == w.name)
        fw = self.fault_windows[w.name]
        f_fig = self._phase_figures(fault, requests, jobs, w.expect_refusals, told_at)
        r_fig = self._phase_figures(rec, requests, jobs, w.expect_refusals, told_at)
        nxt = next((p.start for p in self.phases if p.kind == "fault" and p.start > fault.start), load_ended)
        # this window's backlog: what was accepted since the previous fault ended (earlier jobs are the previous
        # window's to answer for, and a straggler of its counts against it alone)
        since = max((p.end for p in self.phases if p.kind == "fault" and p.end <= fault.start), default=0.0)
        recover = time_to_recover(
            jobs,
            fault.end,
            nxt,
            steady["done_p95_ms"],
            self.scenario.recovery_tolerance,
            since=since,
            kind_p95_ms=steady["done_p95_ms_by_kind"],
        )
        evidence = self._evidence(w, fw, fault, rec, seen["mock"], seen["warnings"], seen["redeliveries"], requests)
        evidence["last_of_backlog"] = self._last_of_backlog(jobs, fault.end, since, steady)
        # not recovered: what the recovery slices showed (the first 15: a last window's run on to the load's end), and
        # where the CPU went meanwhile against the steady phase
        if recover is None:
            evidence["recovery_slices"] = why_not_recovered(
                jobs,
                fault.end,
                nxt,
                steady["done_p95_ms"],
                self.scenario.recovery_tolerance,
                kind_p95_ms=steady["done_p95_ms_by_kind"],
            )[:15]
            evidence["cpu_per_s_by_kind"] = {
                "steady": steady["cpu_per_s_by_kind"],
                "recovery": r_fig["cpu_per_s_by_kind"],
            }
        fw.evidence.update(evidence)
        trace = evidence.get(CATALOG[w.fault].trace, 0)
        measured = {
            "recover_s": recover,
            "server_errors": f_fig["server_errors"] + r_fig["server_errors"],
            "api_p95_ms": f_fig["api_p95_ms"],
            "done_p95_ms": f_fig["done_p95_ms"],
            "min_completed": f_fig["completed"],
            "min_accepted": f_fig["accepted"],
            "failed_jobs": f_fig["failed"] + r_fig["failed"],
        }
        wv = window_verdicts(w.name, CATALOG[w.fault].trace, trace, w.targets, measured)
        wv.append(failure_budget_verdict(w, jobs, fault.start, rec.end))
        window = {
            "name": w.name,
            "fault": w.fault,
            "params": w.params,
            "start": fault.start,
            "end": fault.end,
            "recovery_end": rec.end,
            "evidence": evidence,
            "trace": trace,
            "recover_s": recover,
            "phases": {"fault": f_fig, "recovery": r_fig},
            "verdicts": [v.__dict__ for v in wv],
        }
        return window, wv

    def _offered_verdict(self, windows: list[dict], figures: dict) -> Verdict:
        """Each window that ran met the load the scenario asked for, over its fault phase."""
        users = self.scenario.users  # Locust's count: the arrivals' own user is one of them
        short = {}
        for w in windows:
            why = window_offered((w["start"], w["end"]), users, figures.get("api_history", []), figures.get("arrivals"))
            if why:
                short[w["name"]] = why
        return offered_load_verdict(short)

    def _score(self, verdicts: list[Verdict]) -> dict:
        """The run's resilience score (``harness.oracles.windows.resilience_score``), kept in the run history
        (kind ``chaos-load:<scenario>``) and compared with the previous run of the scenario beyond its noise band
        (slo.toml ``[noise_band_pct]``, "resilience score")."""
        from harness.reports import history

        res = resilience_score(verdicts)
        kind = f"chaos-load:{self.scenario.name}"
        before = history.previous(kind)
        prev = None if before is None else before.get("score")
        band = float(report.noise_bands().get("resilience score", 10))
        res["previous"] = prev
        res["worse"] = bool(res["score"] is not None and prev is not None and res["score"] < prev * (1 - band / 100))
        history.append(kind, {"score": res["score"], "weight": res["weight"], "lost": res["lost"][:10]})
        self.say(
            f"  resilience score: {res['score'] if res['score'] is not None else 'none (the run is invalid)'}"
            + ("" if prev is None else f" (previous {prev}{', worse beyond its noise band' if res['worse'] else ''})")
        )
        return res

    def _ledger_verdicts(self, led) -> list[Verdict]:
        """Each kind of ledger problem against what the scenario allows (none by default), and their total."""
        allowed = self.scenario.ledger
        out = []
        for kind in sorted(set(led.kinds) | set(allowed)):
            n = led.kinds.get(kind, 0)
            out.append(Verdict(f"ledger: {kind}", f"<= {allowed.get(kind, 0)}", n, n <= allowed.get(kind, 0)))
        total = sum(allowed.values())
        out.append(Verdict("ledger: problems", f"<= {total}", len(led.problems), len(led.problems) <= total))
        return out

    def _write_report(self, out: Outcome) -> Path:
        sc = self.scenario
        return report.write(
            self.run_dir,
            out.figures,
            out.verdicts,
            faults=[{**w, "parameters": w["params"], **{"start": w["start"], "end": w["end"]}} for w in out.windows],
            extra={
                "scenario": {"name": sc.name, "path": str(sc.path), "users": sc.users, "load_s": sc.load_s},
                "phases": [p.__dict__ for p in self.phases],
                "ledger": ledger.as_dict(out.ledger),
                "two_judges": two_judges.as_dicts(out.judges),
            },
        )

    def _second_judge(self, windows: list[dict], verdicts: list[Verdict]) -> list:
        """Prometheus' alerts over each window's targets that the system's metrics can judge, beside the window's
        verdicts (``harness.oracles.two_judges``); their agreement is one more verdict of the run."""
        if not self.stack.prometheus:
            return []
        targets = {w.name: w for w in self.scenario.windows}
        spans = [
            {
                **{k: d[k] for k in ("name", "start", "end", "recovery_end")},
                "targets": dict(targets[d["name"]].targets),
                "expect": targets[d["name"]].expect_refusals,
            }
            for d in windows
        ]
        readings = two_judges.read_windows(self.stack.prometheus, spans, self.sut.prometheus_scope)
        if not readings:
            return []
        rows = two_judges.compare({}, verdicts, readings)
        verdicts.append(two_judges.verdict(rows))
        for line in two_judges.table(rows).splitlines():
            self.say(f"  {line}")
        return rows

    def _s3_lost_before(self) -> float | None:
        """The local emulator keeps S3 in memory: a restart (or kill) of LocalStack loses every object written before
        it ends. The oracle counts those as not checked; what was written after must be there."""
        ends = [
            p.end
            for w in self.scenario.windows
            for p in self.phases
            if p.kind == "fault"
            and p.window == w.name
            and w.fault in ("service.restart", "service.kill")
            and w.service == "localstack"
        ]
        return max(ends) if ends else None

    def _last_of_backlog(self, jobs: list[dict], fault_end: float, since: float, steady: dict) -> dict | None:
        """The job of the window's backlog (accepted from ``since`` until the fault's end) that the fault held back
        and that finished last: what kept the window from recovering sooner."""
        before = [j for j in jobs if since <= j["enq"] < fault_end]
        if steady["done_p95_ms"] is not None:
            tol = self.scenario.recovery_tolerance
            before = held_back(before, steady["done_p95_ms"], tol, steady["done_p95_ms_by_kind"])
        before = [j for j in before if j["done"] is not None]
        if not before:
            return None
        last = max(before, key=lambda j: j["done"])
        why = self._query("SELECT error_code, left(error_message, 160) FROM jobs WHERE id = %s", (last["id"],))
        return {
            "job": last["id"],
            "kind": last["kind"],
            "attempts": last["attempts"],
            "status": last["status"],
            "done_after_fault_s": round(last["done"] - fault_end, 2),
            "last_error": " ".join(x for x in (why[0] if why else ()) if x) or None,
        }

    def _phase_figures(
        self, ph: Phase, requests: list[dict], jobs: list[dict], expected: tuple, told_at: list[float]
    ) -> dict:
        """``told_at``: when the clients were told each accepted job id (their journal): what was accepted comes from
        the clients, never from the stores being judged."""
        # a request belongs to the phase it was answered in: what the fault did shows in the answer
        rs = [r for r in requests if ph.start <= r["t"] + r["ms"] / 1000 < ph.end]
        posts = [r for r in rs if r["name"].startswith("POST ")]
        http_rs = [r for r in rs if r["type"] != "WS"]
        codes = Counter(str(r["status"]) for r in posts if r["status"] != 202)
        server_errors = sum(
            1
            for r in http_rs
            if (not r["status"] or r["status"] >= 500)  # 0/None: no answer
            and r["status"] not in expected
        )
        enq = [j for j in jobs if ph.start <= j["enq"] < ph.end]
        dones = [(j["done"] - j["enq"]) * 1000 for j in enq if j["done"] is not None]
        return {
            "requests": len(rs),
            "accepted_requests": sum(1 for r in posts if r["status"] == 202),
            "refused": sum(1 for r in posts if r["status"] is not None and r["status"] >= 400),
            "refused_by_status": dict(codes),
            "server_errors": server_errors,
            "api_p95_ms": _r(percentile([r["ms"] for r in http_rs], 95)),
            "accepted": sum(1 for t in told_at if ph.start <= t < ph.end),
            "stored": len(enq),
            "completed": sum(1 for j in jobs if j["done"] and ph.start <= j["done"] < ph.end),
            "failed": sum(1 for j in enq if j["status"] == FAILED),
            "done_p95_ms": _r(percentile(dones, 95)),
            "cpu_per_s_by_kind": cpu_kinds.per_second(self.cpu, ph.start, ph.end),
            "done_p95_ms_by_kind": {
                kind: _r(
                    percentile([(j["done"] - j["enq"]) * 1000 for j in enq if j["kind"] == kind and j["done"]], 95)
                )
                for kind in sorted({j["kind"] for j in enq})
            },
        }

    def _evidence(
        self,
        w: Window,
        fw: FaultWindow,
        fault: Phase,
        rec: Phase,
        mock: list[dict],
        warnings: list[tuple[float, str]],
        redeliveries: list[float],
        requests: list[dict],
    ) -> dict:
        lo, hi = fault.start, rec.end
        ev: dict = {k: v for k, v in fw.evidence.items()}
        ev["openai_faulted"] = sum(
            1
            for m in mock
            if lo <= m.get("received_at", 0) < fault.end
            and (m.get("reason") or (m.get("status") not in (None, 200)) or m.get("delay", 0) >= 0.5)
        )
        ev["redelivered_jobs"] = sum(1 for t in redeliveries if lo <= t < hi)
        # a worker fault interrupted work: the jobs its heartbeat showed in flight when it was hit, or jobs that ran
        # again later (a message received but not yet started comes back as a first attempt: no redelivery shows)
        ev["interrupted_jobs"] = (
            ev["redelivered_jobs"] + ev.get("jobs_in_flight_at_kill", 0) + ev.get("jobs_in_flight_at_pause", 0)
        )
        ev["refused_requests"] = sum(
            1 for r in requests if lo <= r["t"] + r["ms"] / 1000 < hi and r["status"] and r["status"] >= 400
        )
        msgs = Counter(m for t, m in warnings if lo <= t < hi)
        ev["system_warnings"] = dict(msgs.most_common(8))
        if w.service in SERVICE_TROUBLE:  # a backing service's fault (an aws.* window names sqs or s3 instead)
            words = SERVICE_TROUBLE[w.service]
            ev["service_trouble"] = sum(n for m, n in msgs.items() if any(x.lower() in m.lower() for x in words))
            if w.service == "postgres":
                ev["service_trouble"] += ev["refused_requests"]
        return ev

    def _figures(self, requests, jobs, depth, load_ended, steady) -> dict:
        from harness.programs.load import api_figures

        try:
            api, history = api_figures(self.run_dir)
        except FileNotFoundError:
            api, history = {}, []
        finished = sorted(j["done"] for j in jobs if j["done"] is not None)
        by_kind = {}
        for kind in sorted({j["kind"] for j in jobs}):
            ks = [(j["done"] - j["enq"]) * 1000 for j in jobs if j["kind"] == kind and j["done"]]
            by_kind[kind] = {
                "jobs": sum(1 for j in jobs if j["kind"] == kind),
                "wait_p50_ms": None,
                "wait_p95_ms": None,
                "done_p50_ms": _r(percentile(ks, 50)),
                "done_p95_ms": _r(percentile(ks, 95)),
            }
        first = min((j["enq"] for j in jobs), default=None)
        return {
            "users": self.scenario.users,
            "duration_s": self.scenario.load_s,
            "jobs": len(jobs),
            "by_status": dict(Counter(j["status"] for j in jobs)),
            "queue": by_kind,
            "api": api,
            "api_history": history,
            "queue_depth": depth,
            "finished_times": finished,
            "throughput_jobs_per_s": round(len(finished) / max(finished[-1] - first, 1e-6), 3) if finished else 0.0,
            "drain_s": round(max(0.0, finished[-1] - load_ended), 3) if finished else None,
            "steady": steady,
            "requests": len(requests),
        }


def _r(v):
    return None if v is None else round(v, 3)


ABORT_SPAN_S = 5.0  # the abort targets are measured over this many trailing seconds


class _Stopped(Exception):
    """An abort stopped the run's timeline."""


class _Tail:
    """A JSON-lines file read incrementally: every record so far, the new ones parsed once."""

    def __init__(self, path: Path):
        self.path, self.offset = path, 0
        self.records: list[dict] = []

    def read(self) -> list[dict]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return self.records
        complete, newline, _ = chunk.rpartition(b"\n")
        if newline:
            self.records += [json.loads(x) for x in complete.split(b"\n") if x.strip()]
            self.offset += len(complete) + 1
        return self.records


# -- command line -------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    from harness.programs import scenario as scenarios

    ap = argparse.ArgumentParser(
        prog="python -m harness.programs.chaos_load",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Scenario format: scenarios/README.md. Shipped: "
        + ", ".join(sorted(p.stem for p in scenarios.SCENARIOS.glob("*.toml"))),
    )
    ap.add_argument("--scenario", default="full", help="a shipped name (full, ci) or a path (default: full)")
    ap.add_argument("--users", type=int, default=None, help="Locust users (default: the scenario's, 20)")
    ap.add_argument(
        "--stack",
        choices=CHOICES,
        default="local",
        help="where the backing services run (default: local)",
    )
    ap.add_argument("--only", default="", metavar="WINDOW[,…]", help="run only these windows of the scenario")
    ap.add_argument(
        "--no-abort",
        action="store_true",
        help="run to the end even when the scenario's [abort] targets are breached (default: stop, exit 3)",
    )
    ap.add_argument(
        "--arrival",
        default=None,
        metavar="SHAPE",
        help="offer the submissions as an arrival rate instead of the scenario's (e.g. constant:9; "
        "harness/drivers/arrivals.py); --users then counts the readers beside them",
    )
    from harness.drivers.system_under_test import add_system_options, apply_system_options

    add_system_options(ap, "the workers / API", "the run")
    args = ap.parse_args(argv)
    apply_system_options(args)
    sc = scenarios.load(args.scenario)
    if args.only:
        sc = sc.only([n.strip() for n in args.only.split(",") if n.strip()])
    if args.users:
        sc = replace(sc, users=args.users)
    if args.arrival:
        from harness.drivers import arrivals

        try:
            sc = replace(sc, arrival=str(arrivals.parse(args.arrival)))
        except arrivals.ShapeError as e:
            ap.error(str(e))
    from harness.programs.load import _split_defects
    from harness.stack import choose_provider

    api_defects, worker_defects = _split_defects(args.sabotage)
    provider = choose_provider(args.stack, progress=print)
    try:
        stack = provider.start()
        out = ChaosLoad(
            sc, stack, provider, sabotage=worker_defects, api_sabotage=api_defects, abort=not args.no_abort
        ).run()
    finally:
        provider.stop()
    print()
    print(out.table())
    print()
    print("\n".join(v.line() for v in out.verdicts if not v.ok) or "every verdict passed")
    print(f"\n{out.ledger.summary()}")
    print(f"\nresilience score: {out.score if out.score is not None else 'none (the run is invalid)'}")
    print(f"report: {out.report_path}")
    if out.breach:
        return EXIT_ABORTED
    return 0 if out.ok else 1


EXIT_ABORTED = 3  # a breach of the scenario's [abort] targets stopped the run


if __name__ == "__main__":
    sys.exit(main())
