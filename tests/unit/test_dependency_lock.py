"""requirements.lock, which ``python3 dev.py setup`` installs from, pins every dependency pyproject.toml declares, at a
version that satisfies its range: a dependency added or re-ranged without ``python3 dev.py lock`` turns this red."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def lock_problems(pyproject: str, lock: str) -> list[str]:
    project = tomllib.loads(pyproject)["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    pins = {}
    for line in lock.splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    problems = []
    for spec in declared:
        req = Requirement(spec)
        pinned = pins.get(canonicalize_name(req.name))
        if pinned is None:
            problems.append(f"{req.name}: not in requirements.lock")
        elif not req.specifier.contains(pinned, prereleases=True):
            problems.append(f"{req.name}: locked at {pinned}, pyproject.toml asks for {req.specifier}")
    return problems


def test_the_lock_pins_every_declared_dependency_within_its_range():
    problems = lock_problems((ROOT / "pyproject.toml").read_text(), (ROOT / "requirements.lock").read_text())
    assert problems == [], "run `python3 dev.py lock`: " + "; ".join(problems)


def test_the_lock_check_sees_a_missing_and_a_stale_pin():
    pyproject = (
        '[project]\ndependencies = ["redis>=5", "boto3"]\n[project.optional-dependencies]\ndev = ["Ruff>=0.5"]\n'
    )
    assert lock_problems(pyproject, "# header\nredis==4.6.0\nruff==0.6.1\n") == [
        "redis: locked at 4.6.0, pyproject.toml asks for >=5",
        "boto3: not in requirements.lock",
    ]
