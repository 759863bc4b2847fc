"""Stack building blocks that need no backing service: ports, process lifecycle, provider choice, endpoints."""

from __future__ import annotations

import sys
import time

import pytest

from harness.docker import daemon
from harness.polling import poll_until
from harness.stack import Stack, StackUnavailable, choose_provider
from harness.stack.endpoints import AwsEndpoint, PostgresEndpoint
from harness.stack.process import ManagedProcess, ServiceStartError, alive, free_ports


def test_free_ports_are_distinct_and_bindable():
    import socket

    ports = free_ports(20)
    assert len(set(ports)) == 20
    for p in ports[:3]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))


def test_process_that_exits_fails_at_once_with_its_log(tmp_path):
    p = ManagedProcess(
        "crasher", [sys.executable, "-c", "print('boom: bad config'); raise SystemExit(3)"], tmp_path / "crasher.log"
    ).start()
    started = time.monotonic()
    with pytest.raises(ServiceStartError) as info:
        p.wait_ready(lambda: (_ for _ in ()).throw(ConnectionError()), timeout=30)
    assert time.monotonic() - started < 5
    assert "exited with code 3" in str(info.value) and "boom: bad config" in str(info.value)


# a parent that ignores SIGTERM and has a child in its own new session
STUBBORN = (
    "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True);"
    "print('up', flush=True); time.sleep(60)"
)


def test_wait_is_bounded_and_stop_kills_the_whole_family(tmp_path):
    # stop must still clean both up
    p = ManagedProcess("stubborn", [sys.executable, "-c", STUBBORN], tmp_path / "s.log", stop_grace=0.5).start()
    with pytest.raises(ServiceStartError, match="not ready after 1s"):
        p.wait_ready(lambda: (_ for _ in ()).throw(TimeoutError("nope")), timeout=0.6)
    pids = poll_until(lambda: len(p.members()) == 2 and p.members(), 5, interval=0.05)
    assert pids and len(pids) == 2
    p.stop()
    assert p.leftovers() == [] and alive(pids) == []


def test_kill_ends_the_whole_family_at_once_without_the_grace(tmp_path):
    """What a local service whose data goes with it gets on ``stop`` (``LocalService.killed_on_stop``: LocalStack)."""
    p = ManagedProcess("doomed", [sys.executable, "-c", STUBBORN], tmp_path / "k.log", stop_grace=30).start()
    pids = poll_until(lambda: len(p.members()) == 2 and p.members(), 5, interval=0.05)
    assert pids and len(pids) == 2
    started = time.monotonic()
    p.kill()
    assert p.leftovers() == [] and alive(pids) == []
    assert time.monotonic() - started < 5, "kill waited for the stop grace"


def test_spawning_off_the_main_thread_is_refused(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    p = ManagedProcess("x", ["true"], tmp_path / "x.log")
    with ThreadPoolExecutor(1) as pool, pytest.raises(RuntimeError, match="main thread"):
        pool.submit(p.start).result()


def test_containers_without_a_daemon_fails_at_once_and_says_how(monkeypatch):
    monkeypatch.setattr(daemon, "daemon_answers", lambda timeout=5.0: (False, "Cannot connect to the Docker daemon"))
    with pytest.raises(StackUnavailable, match="needs a Docker daemon") as info:
        choose_provider("containers", progress=lambda _: None)
    assert "dockerd" in str(info.value) and "--stack=local" in str(info.value)
    assert "dev.py docker" in str(info.value)


def test_containers_with_an_unreachable_daemon_fails_fast_for_real(monkeypatch, tmp_path):
    """No monkeypatched answer: the docker CLI really dials a socket nobody serves."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-daemon.sock")
    t0 = time.monotonic()
    with pytest.raises(StackUnavailable, match="needs a Docker daemon") as info:
        choose_provider("containers", progress=lambda _: None)
    assert time.monotonic() - t0 < 10
    assert "no-daemon.sock" in str(info.value) or "Cannot connect" in str(info.value)
    said = []
    assert choose_provider("auto", progress=said.append).name == "local"
    assert "containers not used" in said[0]


def test_auto_falls_back_to_local_and_says_so(monkeypatch):
    monkeypatch.setattr(daemon, "daemon_answers", lambda timeout=5.0: (False, "no daemon"))
    said = []
    chosen = choose_provider("auto", progress=said.append)
    assert chosen.name == "local"
    assert said and "local" in said[0] and "no daemon" in said[0]


def test_auto_falls_back_to_local_when_images_are_missing(monkeypatch):
    from harness.stack import providers

    monkeypatch.setattr(daemon, "daemon_answers", lambda timeout=5.0: (True, "Docker 20.10"))
    monkeypatch.setattr(providers, "missing_images", lambda: ["verisim/redis:7-bookworm"])
    said = []
    assert choose_provider("auto", progress=said.append).name == "local"
    assert "images not built" in said[0] and "nox -s images" in said[0]
    with pytest.raises(StackUnavailable, match="verisim/redis:7-bookworm"):
        choose_provider("containers", progress=said.append)


def test_image_choice_offline_upstream_and_explicit(monkeypatch):
    from harness.stack import container_runtime
    from harness.stack.services.kafka import KafkaContainer
    from harness.stack.services.postgres import PostgresContainer

    monkeypatch.setattr(container_runtime, "image_exists", lambda image: False)
    monkeypatch.setenv("VERISIM_IMAGES", "auto")
    assert PostgresContainer.chosen_image() == "postgres:16"  # no offline build: the registry image
    monkeypatch.setattr(container_runtime, "image_exists", lambda image: True)
    assert PostgresContainer.chosen_image() == "verisim/postgres:15-bookworm"
    monkeypatch.setenv("VERISIM_IMAGES", "upstream")
    assert KafkaContainer.chosen_image() == "confluentinc/cp-kafka:7.6.0"
    monkeypatch.setenv("VERISIM_IMAGE_KAFKA", "my/kafka:1")
    assert KafkaContainer.chosen_image() == "my/kafka:1"


def test_container_owner_tag_tells_a_live_process_from_a_dead_one():
    import subprocess

    from harness.stack import container_runtime as runtime

    assert runtime.owner_alive(runtime.owner_tag())
    p = subprocess.Popen(["true"])
    p.wait()
    assert not runtime.owner_alive(f"{p.pid}:{runtime._started_at(1)}")
    assert not runtime.owner_alive(f"1:{runtime._started_at(1)}0")  # pid 1 lives, but started at another time
    assert not runtime.owner_alive("")


def test_every_service_has_both_recipes_with_one_probe_and_endpoint():
    """One module per service: its local and container classes share what the service is (probe, endpoint)."""
    from harness.stack.provider import SERVICES
    from harness.stack.services import RECIPES

    assert tuple(RECIPES) == SERVICES
    for name, (local, container) in RECIPES.items():
        assert local.name == container.name == name
        shared = set(local.__mro__) & set(container.__mro__)
        role = next(c for c in local.__mro__ if c in shared)  # the service's own class, above both runtimes
        assert role.__module__ == local.__module__ == container.__module__ == f"harness.stack.services.{name}"
        assert "check" in role.__dict__ and "endpoint" in role.__dict__


def test_env_selects_the_provider(monkeypatch):
    monkeypatch.setenv("VERISIM_STACK", "local")
    said = []
    assert choose_provider(None, progress=said.append).name == "local"
    monkeypatch.setenv("VERISIM_STACK", "kubernetes")
    with pytest.raises(StackUnavailable, match="unknown stack provider"):
        choose_provider(None)


def test_docker_detection_is_a_real_daemon_call():
    ok, why = daemon.daemon_answers(timeout=10)
    assert isinstance(ok, bool) and why  # never just "the binary exists"
    if not ok:
        assert "Docker" in why or "docker" in why


def test_stack_env_uses_the_systems_variable_names():
    s = Stack(
        provider="local",
        postgres=PostgresEndpoint("127.0.0.1", 5433, "u", "p", "d"),
        aws=AwsEndpoint("http://127.0.0.1:4566"),
    )
    env = s.to_env()
    assert env["POSTGRES_PORT"] == "5433" and env["DATABASE_URL"] == "postgresql://u:p@127.0.0.1:5433/d"
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    assert env["SQS_QUEUE_NAME"] == "verisim-jobs" and env["S3_BUCKET_NAME"] == "verisim-artifacts"
    assert PostgresEndpoint("h", 1, "u", "p", "d").dsn_for(search_path="t_1").endswith("options=-csearch_path%3Dt_1")
