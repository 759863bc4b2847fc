"""The suite's settings (``harness.settings``): every ``VERISIM_*`` variable is declared there once, read through it
(no ``os.environ.get("VERISIM_…")`` anywhere else), validated with a message naming the variable, and listed by
``python -m harness.settings``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from harness import settings

ROOT = Path(__file__).resolve().parents[2]
READ = re.compile(r"""(environ\.get\(|getenv\(|environ\[)\s*f?["'](VERISIM_\w*)""")
WRITE_AFTER = re.compile(r"""[^"']*["']\]\s*=[^=]""")  # environ["VERISIM_…"] = …: set for a child process
NAMED = re.compile(r"\bVERISIM_([A-Z][A-Z0-9_]*)")
# dev.py tells nox that setup ran; harness/faults/clock.py tells a skewed worker's sitecustomize its offset (read at
# interpreter start-up, before anything could import the settings): neither is a setting
INTERNAL = {"SETUP_DONE", "CLOCK_SKEW_S"}


def sources(root: Path) -> list[Path]:
    found = [p for d in ("harness", "tests", "system") for p in (root / d).rglob("*.py")]
    return sorted(found + [p for p in (root / "locustfile.py", root / "conftest.py") if p.exists()])


def stray_reads(root: Path) -> list[str]:
    """``file: VARIABLE`` for each VERISIM_ variable read from the environment outside harness/settings.py."""
    out = []
    for path in sources(root):
        if path.relative_to(root) == Path("harness/settings.py") or path == Path(__file__):
            continue
        text = path.read_text()
        for m in READ.finditer(text):
            written = m.group(1) == "environ[" and WRITE_AFTER.match(text, m.end())
            if not written and m.group(2)[8:] not in INTERNAL:
                out.append(f"{path.relative_to(root)}: {m.group(2)}")
    return out


def test_no_verisim_variable_is_read_outside_the_settings():
    assert stray_reads(ROOT) == []


def test_the_stray_read_check_sees_a_planted_read(tmp_path):
    (tmp_path / "harness").mkdir()
    (tmp_path / "harness" / "x.py").write_text('import os\nUSERS = os.environ.get("VERISIM_LOAD_USERS", "3")\n')
    assert stray_reads(tmp_path) == ["harness/x.py: VERISIM_LOAD_USERS"]


def test_every_verisim_variable_the_project_names_is_declared():
    fields = {name.upper() for name in settings.VerisimSettings.model_fields}
    texts = [p.read_text() for p in sources(ROOT)] + [(ROOT / "README.md").read_text()]
    named = {m for t in texts for m in NAMED.findall(t)}
    unknown = {n for n in named if n not in fields and n not in INTERNAL and not n.startswith("IMAGE_")}
    assert unknown == set(), f"VERISIM_ variables named but not declared in harness/settings.py: {sorted(unknown)}"


def test_values_come_from_the_environment_at_the_call_and_are_validated(monkeypatch):
    monkeypatch.setenv("VERISIM_LOAD_USERS", "25")
    monkeypatch.setenv("VERISIM_IMAGE_KAFKA", "my/kafka:1")
    now = settings.current()
    assert now.load_users == 25 and now.stack == "auto" and now.image_override("kafka") == "my/kafka:1"
    monkeypatch.setenv("VERISIM_LOAD_USERS", "ten")
    with pytest.raises(ValidationError, match="load_users"):
        settings.current()


def test_python_m_harness_settings_lists_each_variable_with_its_value():
    out = subprocess.run(
        [sys.executable, "-m", "harness.settings"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "VERISIM_STACK": "local"},
    ).stdout
    assert "VERISIM_STACK = local  (default auto)" in out
    for name in settings.VerisimSettings.model_fields:
        assert f"VERISIM_{name.upper()} = " in out
