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


THEIR_TESTS_OF_MORE = """
def test_their_events(kafka_topics):
    kafka_topics.create()


def test_their_system(system_factory):
    system_factory()
"""


def their_pytest(folder, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--stack=local", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_another_project_gets_the_stack_fixture_from_the_installed_plugin(tmp_path):
    """Their tests need Postgres and Redis only: ``--stack-services`` starts those two, and a test of theirs whose
    fixture needs another service fails naming it."""
    (tmp_path / "test_theirs.py").write_text(THEIR_TEST)
    (tmp_path / "test_more.py").write_text(THEIR_TESTS_OF_MORE)
    r = their_pytest(tmp_path, "--stack-services=postgres,redis", "-rA", "test_theirs.py", "test_more.py")
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-2000:]
    assert "PASSED test_theirs.py::test_their_code_against_a_real_stack" in r.stdout, r.stdout[-3000:]
    assert "ERROR test_more.py::test_their_events" in r.stdout, r.stdout[-3000:]  # its fixture failed
    assert "this test needs kafka, which the session's stack did not start" in r.stdout, r.stdout[-3000:]
    assert "ERROR test_more.py::test_their_system" in r.stdout, r.stdout[-3000:]
    assert "this test needs kafka, localstack, mock_openai, which" in r.stdout, r.stdout[-3000:]
    started = [line for line in r.stdout.splitlines() if "stack up in" in line]
    assert started and "postgres" in started[0] and "redis" in started[0], r.stdout[-2000:]
    assert "localstack" not in started[0] and "kafka" not in started[0], started
    r = their_pytest(tmp_path, "--stack-services=postgres,mongodb", "test_theirs.py")
    assert r.returncode == 4 and "--stack-services: unknown mongodb" in r.stderr, r.stdout[-1000:] + r.stderr[-1000:]
