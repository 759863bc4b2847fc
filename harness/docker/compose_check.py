"""Bring the whole system up with docker-compose.yml, push a bounded mix of jobs through it, check every one completes,
take it down again. Prints and saves (``reports/compose-check.json``) what it measured.

    python -m harness.docker.compose_check                 offline images (built first if missing), 3 workers
    python -m harness.docker.compose_check --upstream      registry images, `up --build` (a machine with a registry)
    python -m harness.docker.compose_check --keep          leave it running afterwards (API on 127.0.0.1:8000)

Uses `docker compose` (v2) when the CLI has it, else Debian's `docker-compose` (v1). Ports 5432, 6379, 4566, 8089 and
8000 on 127.0.0.1 must be free (docker-compose.yml publishes them, as the original design did).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from harness.oracles.contract import TERMINAL
from harness.reports.report import reports_path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "verisim-check"
PORTS = (5432, 6379, 4566, 8089, 8000)
API = "http://127.0.0.1:8000"


def compose_command() -> list[str]:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    install_compose()
    return ["docker-compose"]


def install_compose() -> None:
    """Debian's Docker Compose (v1, `docker-compose`), as root with apt-get; otherwise say how."""
    hint = "no Docker Compose: install the v2 plugin, or Debian's v1 with `apt-get install -y docker-compose`"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit(hint)
    print("installing Docker Compose (Debian's docker-compose) with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "docker-compose"], check=True, env=env
    )
    if not shutil.which("docker-compose"):
        raise SystemExit(hint)


def busy_ports() -> list[int]:
    busy = []
    for port in PORTS:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                busy.append(port)
    return busy


def run(compose: list[str], env_file: list[str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([*compose, "-p", PROJECT, *env_file, *args], cwd=ROOT, check=check)


def wait_ready(timeout: float) -> float:
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        try:
            r = httpx.get(f"{API}/readyz", timeout=2)
            if r.status_code == 200:
                return time.monotonic() - t0
            last = r.text
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise SystemExit(f"the API was not ready within {timeout:.0f}s (last: {last})")


def submit(scores: int, series: int) -> list[str]:
    from system.patterns import PATTERNS, split
    from system.simulators.scores import musicxml

    ids = []
    xml = musicxml()
    with httpx.Client(base_url=API, timeout=30) as client:
        for i in range(scores):
            r = client.post("/api/v1/scores", files={"file": ("chorale.musicxml", xml)}, data={"title": f"Chorale {i}"})
            r.raise_for_status()
            ids.append(r.json()["job_id"])
        batch = []
        for i in range(series):
            values, actual = split(PATTERNS[i % 5], 48, 3, seed=i)
            batch.append({"pattern": PATTERNS[i % 5], "values": values, "actual": actual, "horizon": 3})
        if batch:
            r = client.post("/api/v1/inference", json={"series": batch})
            r.raise_for_status()
            ids += r.json()["job_ids"]
    return ids


def wait_terminal(ids: list[str], timeout: float) -> dict[str, str]:
    t0 = time.monotonic()
    states: dict[str, str] = {}
    with httpx.Client(base_url=API, timeout=10) as client:
        while time.monotonic() - t0 < timeout:
            for job_id in ids:
                if states.get(job_id) not in TERMINAL:
                    states[job_id] = client.get(f"/api/v1/jobs/{job_id}").json()["status"]
            done = sum(s in TERMINAL for s in states.values())
            print(f"\r  {done}/{len(ids)} jobs ended", end="", flush=True)
            if done == len(ids):
                print()
                return states
            time.sleep(0.5)
    print()
    return states


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.docker.compose_check", description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", action="store_true", help="registry images and `up --build` instead of offline ones")
    ap.add_argument("--workers", type=int, default=3, help="worker containers (--scale worker=N; default 3)")
    ap.add_argument("--scores", type=int, default=10, help="score uploads (default 10)")
    ap.add_argument("--series", type=int, default=20, help="inference series, one batch (default 20)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds for all jobs to end (default 300)")
    ap.add_argument("--keep", action="store_true", help="leave the system running afterwards")
    args = ap.parse_args(argv)

    compose = compose_command()
    busy = busy_ports()
    if busy:
        raise SystemExit(f"ports {busy} on 127.0.0.1 are taken; docker-compose.yml publishes {list(PORTS)}")
    env_file: list[str] = []
    up = ["up", "-d", "--scale", f"worker={args.workers}"]
    if args.upstream:
        up.insert(2, "--build")
    else:
        from harness.docker.build import Builder

        Builder().build(["system", "mock_openai", "postgres", "redis", "kafka", "localstack"])
        env_file = ["--env-file", "compose.offline.env"]
    result: dict = {"compose": " ".join(compose), "workers": args.workers, "offline": not args.upstream}
    t0 = time.monotonic()
    try:
        run(compose, env_file, *up)
        result["up_s"] = round(time.monotonic() - t0, 2)
        result["api_ready_s"] = round(wait_ready(180) + result["up_s"], 2)
        print(f"up in {result['up_s']}s, API ready after {result['api_ready_s']}s")
        t1 = time.monotonic()
        ids = submit(args.scores, args.series)
        states = wait_terminal(ids, args.timeout)
        result["jobs_s"] = round(time.monotonic() - t1, 2)
        counts: dict[str, int] = {}
        for s in states.values():
            counts[s] = counts.get(s, 0) + 1
        result.update(jobs=len(ids), states=counts)
    finally:
        if not args.keep:
            t2 = time.monotonic()
            run(compose, env_file, "down", "-v", check=False)
            result["down_s"] = round(time.monotonic() - t2, 2)
    out = reports_path("compose-check.json")
    out.write_text(json.dumps(result, indent=2))
    ok = result.get("states") == {"completed": len(ids)}
    print(f"{'OK' if ok else 'FAILED'}: {json.dumps(result)} (saved to {out})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
