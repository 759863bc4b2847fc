"""Chaos-under-load scenarios: the file format (``scenarios/*.toml``, documented in ``scenarios/README.md``) and
the targets a window may set; the faults its windows choose from are ``harness.faults.catalog``.

A scenario is one Locust run on a timeline: a warm-up, a steady phase (the baseline every window is judged
against), then its fault windows, each followed by a recovery phase. ``load(path)`` reads and checks a file; every
mistake is reported with the window and key it is in.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from harness.faults.catalog import CATALOG, FaultName
from harness.oracles.windows import RECOVERY_SLICE_S, STEADY_TARGETS, TARGETS

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"


@dataclass
class Window:
    name: str
    fault: FaultName
    params: dict
    duration_s: float
    recovery_s: float
    expect_refusals: tuple[int, ...] = ()  # status codes the API may answer while this fault lasts (e.g. 503)
    targets: dict[str, float] = field(default_factory=dict)
    # the window's failure budget: error_code -> how many jobs accepted in the window or its recovery may fail so
    # (default: none may fail; a failed job outside it turns the window red with its id and reason)
    expect_failures: dict[str, int] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return CATALOG[self.fault].family

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def proxy_key(self) -> str | None:
        """The TCP proxy this window's fault acts on: the service's, or (a partition) its clients' own to it."""
        clients = self.params.get("clients")
        return f"{self.service}@{clients}" if clients else self.service


@dataclass
class Scenario:
    name: str
    path: Path | None
    description: str
    users: int
    spawn_rate: float
    warmup_s: float
    steady_s: float
    workers: int
    worker_concurrency: int
    recovery_tolerance: float  # "back under the steady value" allows this factor of it (p95 of a short phase is noisy)
    drain_timeout_s: float
    system_env: dict[str, str]
    windows: list[Window]
    ledger: dict[str, int]  # problem kind -> how many are allowed (default 0 for every kind)
    user_classes: list[str] = field(default_factory=list)
    openai: dict = field(default_factory=dict)  # mock OpenAI knobs for the whole run (e.g. a realistic latency)
    # the open model: submissions offered at this rate (a shape's text, harness.drivers.arrivals) instead of by
    # submitting users; ``users`` then counts the dashboard readers and feed watchers beside the arrivals
    arrival: str | None = None
    steady_state: dict[str, float] = field(default_factory=dict)  # targets the system must meet before the first
    # fault and after the last recovery (harness.oracles.windows.STEADY_TARGETS); empty: not checked
    abort: dict = field(default_factory=dict)  # {"hold_s": s, "targets": {...}}: a breach held that long stops the run
    # the queues the jobs travel on (sqs, celery, or seeds: score jobs on SQS, inference jobs on Celery); None: the
    # run's own choice (--transport, VERISIM_TRANSPORT, else sqs). A transport asked for on the command line wins
    transport: str | None = None

    def failure_budget(self) -> dict[str, int]:
        """The run's failure budget: every window's ``expect_failures`` added up (none outside the windows)."""
        out: dict[str, int] = {}
        for w in self.windows:
            for code, n in w.expect_failures.items():
                out[code] = out.get(code, 0) + n
        return out

    @property
    def load_s(self) -> float:
        after = self.steady_s if self.steady_state else 0.0  # the steady state again, after the last recovery
        return self.warmup_s + self.steady_s + sum(w.duration_s + w.recovery_s for w in self.windows) + after

    def only(self, names: list[str]) -> Scenario:
        """The same scenario with only the named windows (a test selected by ``-k``)."""
        unknown = sorted(set(names) - {w.name for w in self.windows})
        if unknown:
            raise ScenarioError(f"{self.path}: no window named {', '.join(unknown)}")
        from dataclasses import replace

        return replace(self, windows=[w for w in self.windows if w.name in names])


class ScenarioError(ValueError):
    pass


def resolve(name_or_path: str | Path) -> Path:
    """``ci`` -> scenarios/ci.toml; a path is taken as it is."""
    p = Path(name_or_path)
    if p.suffix != ".toml" and not p.exists():
        p = SCENARIOS / f"{p}.toml"
    if not p.exists():
        shipped = ", ".join(sorted(x.stem for x in SCENARIOS.glob("*.toml")))
        raise ScenarioError(f"no scenario {name_or_path!r} (shipped: {shipped})")
    return p


def load(name_or_path: str | Path) -> Scenario:
    path = resolve(name_or_path)
    with open(path, "rb") as fh:
        doc = tomllib.load(fh)
    return parse(doc, path)


def parse(doc: dict, path: Path | None = None) -> Scenario:
    where = str(path or "scenario")
    run = doc.get("run", {})
    known_run = {
        "users",
        "spawn_rate",
        "warmup_s",
        "steady_s",
        "workers",
        "worker_concurrency",
        "recovery_tolerance",
        "drain_timeout_s",
        "user_classes",
        "arrival",
        "transport",
    }
    _no_unknown(run, known_run, f"{where} [run]")
    from harness.drivers.system_under_test import TRANSPORTS

    if run.get("transport") is not None and run["transport"] not in TRANSPORTS:
        raise ScenarioError(
            f"{where} [run] transport: {run['transport']!r} is not one of {', '.join(sorted(TRANSPORTS))}"
        )
    defaults = doc.get("defaults", {})
    _no_unknown(defaults, {"recovery_s", "targets", "expect_refusals"}, f"{where} [defaults]")
    _check_targets(defaults.get("targets", {}), f"{where} [defaults.targets]")
    windows = []
    for i, w in enumerate(doc.get("window", [])):
        label = f"{where} window {w.get('name') or i + 1}"
        _no_unknown(
            w,
            {"name", "fault", "params", "duration_s", "recovery_s", "expect_refusals", "expect_failures", "targets"},
            label,
        )
        for key in ("name", "fault", "duration_s"):
            if key not in w:
                raise ScenarioError(f"{label}: missing `{key}`")
        if w["fault"] not in CATALOG:
            raise ScenarioError(f"{label}: unknown fault {w['fault']!r}; choose from {', '.join(CATALOG)}")
        fault = CATALOG[FaultName(w["fault"])]
        params = dict(w.get("params", {}))
        _no_unknown(params, set(fault.params), f"{label} params")
        for key in fault.required:
            if key not in params:
                raise ScenarioError(f"{label}: {w['fault']} needs params.{key}")
        for key, kind in fault.params.items():
            if key in params and isinstance(kind, tuple) and params[key] not in kind:
                raise ScenarioError(f"{label}: params.{key} = {params[key]!r}; choose from {', '.join(kind)}")
        targets = {**defaults.get("targets", {}), **w.get("targets", {})}
        _check_targets(w.get("targets", {}), f"{label} targets")
        recovery_s = float(w.get("recovery_s", defaults.get("recovery_s", 15)))
        target = float(targets.get("recover_s", 0))
        if "recover_s" in targets and recovery_s < target + RECOVERY_SLICE_S:
            # a recovery is seen in the arrivals of a slice that starts then: one at the target needs a slice more
            raise ScenarioError(
                f"{label}: recovery_s = {recovery_s:g} leaves no room to see a recovery within its recover_s target "
                f"({target:g} s): the arrivals of a {RECOVERY_SLICE_S:g} s slice starting then show it, so give it "
                f"recovery_s >= {target + RECOVERY_SLICE_S:g} (the phase ends as soon as recovery is seen)"
            )
        windows.append(
            Window(
                w["name"],
                FaultName(w["fault"]),
                params,
                float(w["duration_s"]),
                recovery_s,
                tuple(w.get("expect_refusals", defaults.get("expect_refusals", ()))),
                targets,
                {str(k): int(v) for k, v in w.get("expect_failures", {}).items()},
            )
        )
    names = [w.name for w in windows]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ScenarioError(f"{where}: window names must be unique; repeated: {', '.join(dup)}")
    if not windows:
        raise ScenarioError(f"{where}: no [[window]]")
    from harness.oracles.ledger import PROBLEMS

    ledger = doc.get("ledger", {})
    _no_unknown(ledger, set(PROBLEMS), f"{where} [ledger]")
    arrival = None
    if "arrival" in run:
        from harness.drivers import arrivals

        try:
            arrival = str(arrivals.parse(run["arrival"]))
        except arrivals.ShapeError as e:
            raise ScenarioError(f"{where} [run] arrival: {e}") from None
    steady_state = doc.get("steady_state", {})
    _no_unknown(steady_state, set(STEADY_TARGETS), f"{where} [steady_state]")
    abort = doc.get("abort", {})
    _no_unknown(abort, {"hold_s", "targets"}, f"{where} [abort]")
    _no_unknown(abort.get("targets", {}), set(STEADY_TARGETS), f"{where} [abort.targets]")
    return Scenario(
        name=doc.get("name") or (path.stem if path else "scenario"),
        path=path,
        description=doc.get("description", ""),
        users=int(run.get("users", 20)),
        spawn_rate=float(run.get("spawn_rate", 10)),
        warmup_s=float(run.get("warmup_s", 10)),
        steady_s=float(run.get("steady_s", 20)),
        workers=int(run.get("workers", 2)),
        worker_concurrency=int(run.get("worker_concurrency", 4)),
        recovery_tolerance=float(run.get("recovery_tolerance", 1.5)),
        drain_timeout_s=float(run.get("drain_timeout_s", 180)),
        system_env={k: str(v) for k, v in doc.get("system", {}).items()},
        windows=windows,
        ledger={k: int(v) for k, v in ledger.items()},
        user_classes=list(run.get("user_classes", [])),
        openai=dict(doc.get("openai", {})),
        arrival=arrival,
        steady_state={k: float(v) for k, v in steady_state.items()},
        abort={"hold_s": float(abort.get("hold_s", 10)), "targets": dict(abort.get("targets", {}))} if abort else {},
        transport=run.get("transport"),
    )


def _no_unknown(table: dict, known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def _check_targets(targets: dict, where: str) -> None:
    _no_unknown(targets, set(TARGETS), where)
