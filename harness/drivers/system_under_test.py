"""Start the system under test (operation server + worker processes) against a stack, as real processes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from harness.drivers import http
from harness.drivers.prometheus import PrometheusClient
from harness.settings import current
from harness.stack.endpoints import Stack
from harness.stack.isolation import short_uid
from harness.stack.process import ManagedProcess, ServiceStartError, free_ports, process_table, stop_all

# the job kinds' transports (INFERENCE_TRANSPORT, SCORE_TRANSPORT) of each choice; "seeds": the original designs
# the backing services the API and workers talk to (Prometheus only watches them)
SYSTEM_NEEDS = ("postgres", "redis", "kafka", "localstack", "mock_openai")

TRANSPORTS = {
    "sqs": {"INFERENCE_TRANSPORT": "sqs", "SCORE_TRANSPORT": "sqs"},
    "celery": {"INFERENCE_TRANSPORT": "celery", "SCORE_TRANSPORT": "celery"},
    "seeds": {
        "INFERENCE_TRANSPORT": "celery",
        "SCORE_TRANSPORT": "sqs",
    },  # 000: scores on SQS; 001: inference on Celery
}


class SystemUnderTest:
    """``start()`` (the API and its workers, launched together), or ``start_api()`` and ``start_worker()`` (as many as
    you like); ``stop()``; every process logs to ``workdir``.

    ``env`` overrides settings (e.g. ``SQS_VISIBILITY_TIMEOUT``); ``isolated=True`` gives this instance queue names
    of its own, so killing its workers never disturbs another instance on the same stack. ``transport``: which queue
    carries the jobs (see ``TRANSPORTS``; default ``VERISIM_TRANSPORT`` or ``sqs``).
    """

    def __init__(
        self,
        stack: Stack,
        workdir: Path | None = None,
        env: dict[str, str] | None = None,
        isolated: bool = False,
        progress: Callable[[str], None] = lambda _: None,
        transport: str | None = None,
        role_env: dict[str, dict[str, str]] | None = None,
    ):
        missing = [name for name in SYSTEM_NEEDS if stack.endpoint(name) is None]
        if missing:
            raise ValueError(
                f"the system under test needs {', '.join(missing)}, which this stack did not start "
                "(--stack-services / VERISIM_STACK_SERVICES)"
            )
        self.stack = stack
        self._own_workdir = workdir is None  # a temporary one goes with stop(); a given one is the caller's to keep
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="verisim-system-"))
        self.progress = progress
        self.env = {**os.environ, **stack.to_env(), "LOG_LEVEL": "INFO", "SQS_WAIT_SECONDS": "1"}
        if isolated:
            uid = short_uid()
            self.env.update(SQS_QUEUE_NAME=f"sut-{uid}-jobs", SQS_DLQ_NAME=f"sut-{uid}-jobs-dlq")
        self.transport = transport or current().transport or "sqs"
        if self.transport not in TRANSPORTS:
            raise ValueError(f"unknown transport {self.transport!r}: one of {', '.join(TRANSPORTS)}")
        self.env.update(TRANSPORTS[self.transport])
        self.env.update(env or {})
        # "api" | "workers" -> settings for those processes alone (a partition gives one side a path of its own)
        self.role_env = role_env or {}
        self.api: ManagedProcess | None = None
        self.api_url: str | None = None
        self.workers: list[ManagedProcess] = []
        self.flower: ManagedProcess | None = None
        self.flower_url: str | None = None
        self._started_workers = 0
        self._relaunch: dict[str, tuple[Callable[[], ManagedProcess], str | None]] = {}
        self._scraped: list[str] = []  # the Prometheus target files this instance wrote

    @property
    def queue_name(self) -> str:
        return self.env["SQS_QUEUE_NAME"]

    @property
    def dlq_name(self) -> str:
        return self.env.get("SQS_DLQ_NAME") or f"{self.queue_name}-dlq"

    def start(
        self,
        workers: int = 2,
        concurrency: int = 4,
        grace: float = 10,
        timeout: float = 60,
        sabotage: str | None = None,
        api_sabotage: str | None = None,
    ) -> str:
        """The API and ``workers`` workers of each kind its transport needs (``worker_transports``), all launched
        before any is waited for: their start-ups overlap. ``sabotage``/``api_sabotage`` as in ``start_worker`` and
        ``start_api``. Returns the API's URL."""
        self._launch_api(None, api_sabotage)
        started = [
            self._launch_worker(concurrency, grace, sabotage, kind)
            for kind in self.worker_transports()
            for _ in range(workers)
        ]
        self._wait_api(timeout, None, api_sabotage)
        self._wait_workers(started, timeout)
        return self.api_url

    def start_api(self, port: int | None = None, timeout: float = 60, sabotage: str | None = None) -> str:
        """``sabotage``: defects of ``harness.sabotage`` to plant in this API process (the sabotage tests)."""
        self._launch_api(port, sabotage)
        return self._wait_api(timeout, port, sabotage)

    def _launch_api(self, port: int | None, sabotage: str | None) -> None:
        port = port or free_ports(1)[0]
        self.api = ManagedProcess(
            "api",
            [*_entry("system.api", sabotage), "--host", "127.0.0.1", "--port", str(port)],
            self.workdir / "logs" / "api.log",
            env={**self.env, **self.role_env.get("api", {})},
            stop_grace=10,
            forkable=True,  # forked from the template that has FastAPI and the AWS SDK imported
        ).start()
        self.api_url = f"http://127.0.0.1:{port}"

    def _wait_api(self, timeout: float, port: int | None = None, sabotage: str | None = None) -> str:
        """Until the API answers ready. A port of our choosing (``free_ports``) can be taken by another process before
        the API binds it (tests run three at a time): then the API is started again on another, twice at most."""
        assert self.api is not None

        def probe():
            http.get(f"{self.api_url}/readyz", timeout=3).raise_for_status()

        for attempt in range(3):
            try:
                seconds = self.api.wait_ready(probe, timeout)
                break
            except ServiceStartError:
                taken = "address already in use" in self.api.log_path.read_text(errors="replace")
                if port is not None or attempt == 2 or not taken:
                    raise
                self.progress(f"  api          port {self.api_url.rsplit(':', 1)[1]} was taken meanwhile: another")
                self.api.log_path.rename(self.api.log_path.with_suffix(f".port-taken-{attempt}.log"))
                self._launch_api(None, sabotage)
        self.progress(f"  api          ready in {seconds:5.2f}s at {self.api_url}")
        self._scrape("api", self.api_url.removeprefix("http://"))
        return self.api_url

    def _scrape(self, component: str, host: str) -> None:
        """The stack's Prometheus scrapes ``host``'s ``/metrics`` until this system stops."""
        if self.stack.prometheus:
            self._scraped.append(f"{component}-{host.replace(':', '-')}")
            labels = {"component": component, **self.prometheus_scope}
            PrometheusClient(self.stack.prometheus).scrape(self._scraped[-1], [host], labels)

    @property
    def prometheus_scope(self) -> dict[str, str]:
        """The labels that pick this system's series out of the stack's Prometheus (``harness.oracles.two_judges``)."""
        return {"system": self.queue_name, "queue": self.queue_name}

    def worker_transports(self) -> list[str]:
        """The transports this system's jobs travel on: a worker of each is needed."""
        return sorted(set(TRANSPORTS[self.transport].values()))

    @staticmethod
    def transport_of(worker: ManagedProcess) -> str:
        """The transport a worker takes its jobs from (its ``--transport``): a system on the seeds' layout runs
        workers of both kinds, and a lost worker is replaced by one of its own kind."""
        return worker.argv[worker.argv.index("--transport") + 1]

    def start_worker(
        self,
        concurrency: int = 4,
        grace: float = 10,
        timeout: float = 60,
        sabotage: str | None = None,
        transport: str | None = None,
        env: dict[str, str] | None = None,
        forkable: bool = True,
    ) -> ManagedProcess:
        """``sabotage``: defects of ``harness.sabotage`` to plant in this worker process (the sabotage tests).
        ``transport``: the worker's kind (default: this system's transport; "seeds" needs one of each). ``env``:
        settings for this worker alone; ``forkable`` False: a process of its own from the start (what an
        ``LD_PRELOAD`` needs: a fork of the template would not load it)."""
        return self.start_workers(1, concurrency, grace, timeout, sabotage, transport, env, forkable)[0]

    def start_workers(
        self,
        count: int,
        concurrency: int = 4,
        grace: float = 10,
        timeout: float = 60,
        sabotage: str | None = None,
        transport: str | None = None,
        env: dict[str, str] | None = None,
        forkable: bool = True,
    ) -> list[ManagedProcess]:
        """``count`` workers (as ``start_worker``), launched together and then waited for: their warm-ups overlap."""
        kind = transport or ("celery" if self.transport == "celery" else "sqs")
        started = [self._launch_worker(concurrency, grace, sabotage, kind, env, forkable) for _ in range(count)]
        return self._wait_workers(started, timeout)

    def _launch_worker(
        self,
        concurrency: int,
        grace: float,
        sabotage: str | None,
        kind: str,
        own_env: dict[str, str] | None = None,
        forkable: bool = True,
    ) -> ManagedProcess:
        args = ["--transport", kind, "--concurrency", str(concurrency), "--grace", str(grace)]
        n = self._started_workers  # never reused: a replacement gets a log of its own
        self._started_workers += 1
        env = {**self.env, **self.role_env.get("workers", {}), **(own_env or {})}
        scraped = None
        if self.stack.prometheus:  # its own /metrics, scraped from its start (a scrape before it answers reads down)
            port = free_ports(1)[0]
            env = {**env, "WORKER_METRICS_PORT": str(port)}
            self._scrape("worker", f"127.0.0.1:{port}")
            scraped = self._scraped[-1]
        proc = ManagedProcess(
            f"worker-{n}",
            [*_entry("system.worker", sabotage), *args],
            self.workdir / "logs" / f"worker-{n}.log",
            env=env,
            stop_grace=grace + 5,
            forkable=forkable,  # forked from the template that has torch and the OpenAI SDK imported
        ).start()
        self.workers.append(proc)
        # how to start it again on another metrics port (_wait_workers), and the scrape target to forget then
        self._relaunch[proc.name] = (
            lambda: self._launch_worker(concurrency, grace, sabotage, kind, own_env, forkable),
            scraped,
        )
        return proc

    def _wait_workers(self, started: list[ManagedProcess], timeout: float) -> list[ManagedProcess]:
        """Until each worker says it is ready. The port of its /metrics is one of our choosing (``free_ports``), which
        another process can take before the worker binds it (tests run three at a time): then the worker is started
        again on another, twice at most, and Prometheus forgets the taken port (it would scrape whoever holds it)."""
        ready = []
        for proc in started:
            for attempt in range(3):

                def probe(log=proc.log_path):
                    if '"msg": "worker ready"' not in log.read_text(errors="replace"):
                        raise RuntimeError("no 'worker ready' line yet")

                try:
                    seconds = proc.wait_ready(probe, timeout)
                    break
                except ServiceStartError:
                    relaunch, scraped = self._relaunch[proc.name]
                    taken = "Address already in use" in proc.log_path.read_text(errors="replace")
                    if attempt == 2 or not taken or scraped is None:
                        raise
                    self.progress(f"  {proc.name:<12} its metrics port was taken meanwhile: another")
                    PrometheusClient(self.stack.prometheus).forget(scraped)
                    self._scraped.remove(scraped)
                    self.workers.remove(proc)
                    proc = relaunch()
            self.progress(f"  {proc.name:<12} ready in {seconds:5.2f}s")
            ready.append(proc)
        return ready

    def send_message(self, message: dict) -> None:
        """Put a job message on the queue its kind travels on, as an at-least-once queue may deliver it again."""
        if TRANSPORTS[self.transport][f"{message['kind'].upper()}_TRANSPORT"] == "celery":
            from system.config import Settings
            from system.transports.celery import CeleryTransport

            settings = Settings(
                redis_url=self.env["REDIS_URL"],
                celery_broker_url=self.env.get("CELERY_BROKER_URL"),
                sqs_queue_name=self.queue_name,
                sqs_dlq_name=self.dlq_name,
            )
            CeleryTransport(settings).send([message])
            return
        sqs = self.stack.aws.client("sqs")
        sqs.send_message(
            QueueUrl=sqs.get_queue_url(QueueName=self.queue_name)["QueueUrl"], MessageBody=json.dumps(message)
        )

    def start_flower(self, port: int | None = None, timeout: float = 60) -> str:
        """Flower on the Celery broker (Celery transports only): workers, tasks and queues. Returns its URL."""
        port = port or free_ports(1)[0]
        broker = self.env.get("CELERY_BROKER_URL") or self.env["REDIS_URL"]
        self.flower = ManagedProcess(
            "flower",
            [sys.executable, "-m", "celery", "--broker", broker, "flower", "--address=127.0.0.1", f"--port={port}"],
            self.workdir / "logs" / "flower.log",
            env={**self.env, "FLOWER_UNAUTHENTICATED_API": "true"},
            stop_grace=5,
        ).start()
        self.flower_url = f"http://127.0.0.1:{port}"

        celery_workers = any(self.transport_of(w) == "celery" for w in self.workers)

        def probe():
            http.get(f"{self.flower_url}/healthcheck", timeout=3).raise_for_status()
            # Flower's task list is built from the workers' events, which are not kept: it is ready once its event
            # receiver has heard from a running Celery worker (a heartbeat comes every 2 s), or a task sent earlier
            # would never be listed (seen in CI: its health check answers before the receiver has connected)
            if celery_workers:
                seen = http.get(f"{self.flower_url}/workers", params={"json": 1}, timeout=3).json()["data"]
                if not any(w.get("status") for w in seen):
                    raise RuntimeError("Flower has heard no worker's events yet")

        seconds = self.flower.wait_ready(probe, timeout)
        self.progress(f"  flower       ready in {seconds:5.2f}s at {self.flower_url}")
        return self.flower_url

    def kill_worker(self, proc: ManagedProcess) -> None:
        """SIGKILL: the worker dies mid-whatever, as on an OOM kill or a lost node."""
        os.kill(proc.pid, signal.SIGKILL)
        proc.proc.wait(10)

    def terminate_worker(self, proc: ManagedProcess, timeout: float = 30) -> int:
        """SIGTERM, as an orchestrator scaling down: returns the exit code."""
        proc.proc.send_signal(signal.SIGTERM)
        return proc.proc.wait(timeout)

    def client(self, timeout: float = 30) -> httpx.Client:
        return http.client(base_url=self.api_url, timeout=timeout)

    def stop(self) -> None:
        """Every process this instance started, signalled together (their shutdowns overlap)."""
        if self.stack.prometheus:
            client = PrometheusClient(self.stack.prometheus)
            for name in self._scraped:
                client.forget(name)
        stop_all([*self.workers, self.api, self.flower])
        if self._own_workdir and not self.leftovers():
            shutil.rmtree(self.workdir, ignore_errors=True)

    def leftovers(self) -> list[int]:
        table = process_table()  # one read of /proc for all of them
        return [pid for p in [*self.workers, self.api, self.flower] if p for pid in p.leftovers(table)]

    def log_records(self, min_level: str = "WARNING") -> list[dict]:
        """Every JSON log record at ``min_level`` or worse from every process this instance ever started (a killed
        and replaced worker's too), oldest first, each with ``t`` (epoch seconds) added."""
        from datetime import datetime

        levels = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        skip = {f'"level": "{lv}"' for lv in levels[: levels.index(min_level)]}
        out = []
        for path in sorted((self.workdir / "logs").glob("*.log")):
            for line in path.read_text(errors="replace").splitlines():
                if any(s in line for s in skip):  # cheap: most lines are INFO
                    continue
                try:
                    rec = json.loads(line)
                    rec["t"] = datetime.fromisoformat(rec["ts"].replace("Z", "+00:00")).timestamp()
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue  # not a record of ours (a traceback line, a library's print)
                rec["process"] = path.stem
                out.append(rec)
        return sorted(out, key=lambda r: r["t"])

    def log_count(self, text: str) -> int:
        """Lines carrying ``text`` in the logs of every process this instance ever started: evidence a fault
        reached it."""
        return sum(p.read_text(errors="replace").count(text) for p in (self.workdir / "logs").glob("*.log"))

    def logs(self) -> str:
        out = []
        for p in [self.api, *self.workers]:
            if p:
                out.append(f"--- {p.name} ({p.log_path}) ---\n{p.log_tail(60)}")
        return "\n".join(out)


@contextlib.contextmanager
def running_system(
    stack: Stack,
    workdir: Path,
    env: dict[str, str] | None = None,
    workers: int = 2,
    concurrency: int = 4,
    grace: float = 5,
    transport: str | None = None,
) -> Iterator[SystemUnderTest]:
    """An API and ``workers`` worker processes (of each kind its transport needs) with a queue of their own, for the
    block; stopped after it (a module-scoped fixture's system:
    ``with running_system(stack, tmp_path_factory.mktemp("x")) as sut: yield sut``)."""
    sut = SystemUnderTest(stack, workdir=workdir, env=env, isolated=True, transport=transport)
    try:
        sut.start(workers, concurrency=concurrency, grace=grace)
        yield sut
    finally:
        sut.stop()


def add_system_options(ap, planted_in: str, verdict: str) -> None:
    """``--transport`` and ``--sabotage``, as the commands that start the system take them (``apply_system_options``
    after parsing). ``planted_in``: where a defect goes; ``verdict``: what must then fail."""
    ap.add_argument(
        "--transport",
        choices=sorted(TRANSPORTS),
        default=None,
        help="the queue the system's jobs travel on (seeds: score jobs on SQS, inference jobs on Celery; default "
        "VERISIM_TRANSPORT, else the scenario's where it names one, else sqs)",
    )
    ap.add_argument(
        "--sabotage",
        default="",
        metavar="DEFECT[,…]",
        help=f"plant defects of harness.sabotage in {planted_in}: {verdict} must fail",
    )


def apply_system_options(args) -> None:
    if args.transport:
        os.environ["VERISIM_TRANSPORT"] = args.transport  # every SystemUnderTest this run starts


def _entry(module: str, sabotage: str | None) -> list[str]:
    if sabotage:
        return [sys.executable, "-m", "harness.sabotage", sabotage, module]
    return [sys.executable, "-m", module]
