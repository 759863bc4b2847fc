"""The containers provider's own promises: a killed session's containers are gone once the next session starts
(cleanup by label, no Ryuk), a container that fails to start reports its log, a restart keeps the host port.

These start their own containers, so they run with ``--stack=containers`` (CI does; see ``nox -s ci``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from harness.stack.process import ServiceStartError

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(autouse=True)
def _only_on_the_containers_stack(request):
    if (request.config.getoption("--stack") or "") != "containers":
        pytest.skip("starts its own containers: runs with --stack=containers (nox -s containers, CI)")


def _containers(label_value: str) -> list[str]:
    r = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label=verisim.stack={label_value}", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return r.stdout.split()


def test_a_killed_session_leaves_no_containers_once_the_next_one_starts(tmp_path):
    from harness.stack.providers import ContainersProvider

    # a session that is SIGKILLed after its stack is up: no teardown, no atexit, no Ryuk
    script = textwrap.dedent("""
        import os, signal
        from harness.stack.providers import ContainersProvider
        p = ContainersProvider(progress=lambda _: None)
        p.start(["redis"])
        print(p.session, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == -9, r.stderr
    killed_session = r.stdout.strip()
    assert _containers(killed_session), "the killed session's container should still be there before cleanup"

    said: list[str] = []
    provider = ContainersProvider(workdir=tmp_path, progress=said.append)
    try:
        stack = provider.start(["redis"])
        assert _containers(killed_session) == []
        assert any("left by a session that did not stop" in line for line in said), said
        import redis

        assert redis.Redis.from_url(stack.redis.url).ping()
        assert _containers(provider.session)  # the live session's own container is untouched
    finally:
        provider.stop()
    assert provider.leftovers() == {} and _containers(provider.session) == []


def test_a_container_that_fails_to_start_reports_its_log_and_is_removed(tmp_path):
    from harness.stack.providers import ContainersProvider

    provider = ContainersProvider(
        workdir=tmp_path, progress=lambda _: None, overrides={"redis": {"extra_args": ["--no-such-option", "yes"]}}
    )
    started = time.monotonic()
    with pytest.raises(ServiceStartError) as info:
        provider.start(["redis"])
    # noticed by the wait testcontainers runs in start() (our probe, which watches the container's state): at once,
    # not after the ready timeout
    assert "the container exited" in info.value.reason, info.value.reason
    assert time.monotonic() - started < provider.services["redis"].ready_timeout / 2
    assert "no-such-option" in str(info.value)  # redis' own complaint, from the container's log
    assert provider.leftovers() == {} and _containers(provider.session) == []


def test_a_restarted_container_comes_back_on_the_same_port_with_its_data(tmp_path):
    import psycopg

    from harness.stack.providers import ContainersProvider

    provider = ContainersProvider(workdir=tmp_path, progress=lambda _: None)
    try:
        stack = provider.start(["postgres"])
        with psycopg.connect(stack.postgres.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (v int)")
            conn.execute("INSERT INTO kept VALUES (42)")
        pg = provider.service("postgres")
        pg.halt()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(stack.postgres.dsn, connect_timeout=2)
        assert pg.start_again() > 0
        with psycopg.connect(stack.postgres.dsn) as conn:
            assert conn.execute("SELECT v FROM kept").fetchone() == (42,)
    finally:
        provider.stop()
    assert provider.leftovers() == {}


def test_the_stack_cli_runs_containers_and_writes_their_endpoints(tmp_path):
    """``python -m harness.stack up --stack containers --json F``: the endpoints in F answer; SIGTERM removes the
    containers it started."""
    import json
    import signal

    import redis

    from harness.polling import wait_for
    from harness.stack.__main__ import command

    before = set(_containers_all())
    out = tmp_path / "stack.json"
    proc = subprocess.Popen(
        command("containers", ["redis"], str(out)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(lambda: out.exists() or proc.poll() is not None, 120, what="the stack CLI's JSON")
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.2)  # the file is complete
        info = json.loads(out.read_text())
        assert redis.Redis.from_url(info["env"]["REDIS_URL"]).ping()
        assert info["env"]["REDIS_URL"].endswith(f":{info['stack']['redis']['port']}/0")
        started = set(_containers_all()) - before
        assert len(started) == 1 and next(iter(started)).endswith("-redis"), started
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "no process left behind" in output, output
    assert set(_containers_all()) - before == set()


def _containers_all() -> list[str]:
    r = subprocess.run(
        ["docker", "ps", "-a", "--filter", "label=verisim.stack", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return r.stdout.split()


# -- the offline images start warm: what a start would otherwise build is made at image build ------------------------
def _run_container(image: str, port: int, env: dict[str, str], *args: str) -> str:
    """A container of ``image`` with ``env``, its port published on ``port``, labelled as a dead session's (the next
    session's cleanup removes it if this test is killed)."""
    flags = [x for k, v in env.items() for x in ("-e", f"{k}={v}")]
    return subprocess.run(
        ["docker", "run", "-d", "--rm", "--label", "verisim.stack=image-test", "-p", f"127.0.0.1:{port}:5432"]
        + flags
        + [image, *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _connects(port: int, user: str, password: str, database: str, timeout: float = 60) -> bool:
    """Whether these credentials are let in (waits for the server to answer at all)."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(
                host="127.0.0.1", port=port, user=user, password=password, dbname=database, connect_timeout=2
            ) as conn:
                return conn.execute("SELECT current_user, current_database()").fetchone() == (user, database)
        except psycopg.OperationalError as exc:
            if "password authentication failed" in str(exc):
                return False
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.parametrize("settings", ["the suite's", "other"])
def test_the_postgres_image_copies_its_cluster_only_for_the_settings_it_was_made_for(settings):
    """The image holds a cluster made at build for the settings the suite's containers ask for: such a container
    copies it (no initdb, no temporary server at start) and lets in only that password; a container asking for other
    settings is initialised for them, as the official image's contract says."""
    from harness.stack.process import free_ports
    from harness.stack.services import postgres

    env = dict(postgres.CONTAINER_SETTINGS)
    if settings == "other":
        env.update(POSTGRES_USER="someone", POSTGRES_PASSWORD="else", POSTGRES_DB="elsewhere")
    (port,) = free_ports(1)
    cid = _run_container(postgres.IMAGES[0], port, env, "postgres", *postgres.SERVER_FLAGS)
    try:
        user, password, database = env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"]
        assert _connects(port, user, password, database)
        assert not _connects(port, user, password + "-wrong", database)
        log = subprocess.run(["docker", "logs", cid], capture_output=True, text=True).stdout
        copied, initialised = "cluster copied from the image" in log, "init process complete" in log
        assert (copied, initialised) == ((True, False) if settings == "the suite's" else (False, True)), log[-2000:]
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)


def test_the_localstack_image_holds_the_service_catalog_its_localstack_looks_for():
    """Built at image build under the name the installed LocalStack and botocore ask for: with a name that drifted
    (a new pin), every container would build it again at start, slowly and silently."""
    from harness.stack.services.localstack import IMAGES

    look = (
        "import os; from localstack import config; from localstack.aws.spec import _get_catalog_filename as name; "
        "print(os.path.getsize(os.path.join(config.dirs.static_libs, name())))"
    )
    r = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "python", IMAGES[0], "-c", look],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert int(r.stdout.split()[-1]) > 100_000, r.stdout
