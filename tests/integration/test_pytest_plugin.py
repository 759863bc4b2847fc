"""Verisim as a pytest plugin: in a folder of another project (no conftest, no pyproject), the installed package's
``pytest11`` entry point alone gives ``--stack`` and the ``stack`` fixture, and a real stack answers."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

THEIR_TEST = """
import psycopg
import redis


def test_their_code_against_a_real_stack(stack):
    with psycopg.connect(stack.postgres.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert redis.Redis.from_url(stack.redis.url).ping()
"""


def test_another_project_gets_the_stack_fixture_from_the_installed_plugin(tmp_path):
    (tmp_path / "test_theirs.py").write_text(THEIR_TEST)
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--stack=local", "test_theirs.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "1 passed" in r.stdout, r.stdout[-2000:]
