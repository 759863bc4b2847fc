"""The type check's teeth: CI runs mypy with the settings in pyproject.toml; a planted defect of the kind it is there
to catch — an attribute a class does not have, read in a function without annotations (mypy's defaults skip those
bodies) — must turn it red, naming the attribute."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PLANTED = """
class LocalService:
    def __init__(self):
        self.process = None


class ContainerService:
    def __init__(self):
        self.container = None


def describe(services):
    return [ContainerService().process for _ in services]
"""


def mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess:
    f = tmp_path / "planted.py"
    f.write_text(source)
    config = ["--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path / ".mypy_cache")]
    return subprocess.run(
        [sys.executable, "-m", "mypy", *config, str(f)], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )


def test_the_type_check_names_a_missing_attribute_in_an_unannotated_function(tmp_path):
    out = mypy(tmp_path, PLANTED)
    assert out.returncode == 1, out.stdout + out.stderr
    assert '"ContainerService" has no attribute "process"' in out.stdout, out.stdout


def test_the_same_code_without_the_defect_passes(tmp_path):
    out = mypy(tmp_path, PLANTED.replace("ContainerService().process", "LocalService().process"))
    assert out.returncode == 0, out.stdout + out.stderr
