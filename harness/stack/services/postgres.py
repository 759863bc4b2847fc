"""PostgreSQL: the job store's system of record.

Local: the machine's binaries (Debian's ``postgresql``); ``initdb`` once into a cached template, copied per session,
run as an unprivileged user (Postgres refuses root; docs/local-backends.md). Container: a testcontainers
``DockerContainer`` (the image's own env: user, password, database) on the offline image (Debian's postgresql-15)
or ``postgres:16``, ready when our probe answers (``container_runtime.probe_wait``).

``data_cap`` (e.g. ``"1G"``) puts its data on a filesystem of that size (``harness.stack.capped_disk``: a tmpfs
mounted on this host, bound into the container on containers), which ``fill_disk`` fills for the disk-full fault.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from harness.cache import cache_dir, cache_lock
from harness.settings import current
from harness.stack import capped_disk, probes
from harness.stack.container_runtime import ContainerService
from harness.stack.endpoints import PostgresEndpoint
from harness.stack.local_runtime import LocalService
from harness.stack.process import ManagedProcess, ServiceStartError
from harness.stack.service import BackingService

USER = PASSWORD = DATABASE = "verisim"
# what a container is started with; the image's build makes its cluster for these (harness.docker.build)
CONTAINER_SETTINGS = {
    "POSTGRES_USER": USER,
    "POSTGRES_PASSWORD": PASSWORD,
    "POSTGRES_DB": DATABASE,
    "POSTGRES_INITDB_ARGS": "--no-sync",
}
# fsync off (only an OS crash loses data) but synchronous_commit ON: with it off a killed postmaster loses commits it
# already acknowledged — the postgres_kill chaos test caught exactly that
SERVER_FLAGS = ["-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=300"]
INSTALL_HINT = "apt-get install -y postgresql   (or set VERISIM_PG_BIN to a directory holding initdb and postgres)"


class Postgres(BackingService, service="postgres", check=probes.postgres):
    data_cap: str | None = None

    def endpoint(self) -> PostgresEndpoint:
        return PostgresEndpoint("127.0.0.1", self.port, USER, PASSWORD, DATABASE)

    # -- the disk-full fault (a service started with ``data_cap``) -------------------------------------------------
    def fill_disk(self) -> int:
        """Fill the filesystem its data lives on; returns the ballast's bytes."""
        raise NotImplementedError

    def free_disk(self) -> None:
        """Delete the ballast."""
        raise NotImplementedError

    def log_text(self) -> str:
        """All it has logged so far."""
        raise NotImplementedError

    def disk_errors(self) -> int:
        """How many times it has logged a write that found no space (ENOSPC) so far."""
        return self.log_text().count(capped_disk.NO_SPACE)

    def _require_cap(self) -> None:
        if not self.data_cap:
            raise RuntimeError("this Postgres has no capped data disk: start it with data_cap (e.g. '1G')")


# -- a local process --------------------------------------------------------------------------------------------------
def find_pg_bin() -> Path:
    explicit = current().pg_bin
    candidates = [str(explicit)] if explicit else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "postgres").exists():
            return Path(c)
    raise ServiceStartError("postgres", f"no PostgreSQL server binaries found. Install them with: {INSTALL_HINT}")


def server_identity() -> tuple[int | None, int | None]:
    """Postgres refuses root: run as ``nobody`` then (or ``$VERISIM_PG_USER``)."""
    if os.geteuid() != 0:
        return None, None
    pw = pwd.getpwnam(current().pg_user)
    return pw.pw_uid, pw.pw_gid


def _run_as(argv, uid, gid, **kwargs):
    extra = {"user": uid, "group": gid, "extra_groups": []} if uid is not None else {}
    return subprocess.run(argv, capture_output=True, text=True, **extra, **kwargs)


def _chown_tree(path: Path, uid: int | None, gid: int | None) -> None:
    if uid is None or gid is None:
        return
    for root, _dirs, files in os.walk(path):
        os.chown(root, uid, gid)
        for f in files:
            os.lchown(os.path.join(root, f), uid, gid)


class LocalPostgres(Postgres, LocalService):
    def __init__(self, workdir: Path, port: int, extra_args: list[str] | None = None, data_cap: str | None = None):
        super().__init__(workdir, port)
        self.extra_args = extra_args or []
        self.data_cap = data_cap
        self.bin = find_pg_bin()
        self.uid, self.gid = server_identity()
        self.rundir: Path | None = None

    @property
    def version(self) -> str:
        return self.bin.parent.name

    @property
    def template(self) -> Path:
        return cache_dir() / f"postgres-{self.version}-template"

    def prepare(self) -> None:
        with cache_lock("postgres-template"):
            if (self.template / "PG_VERSION").exists():
                return
            self._build_template()

    def _build_template(self) -> None:
        # initdb must write as the unprivileged user, into a directory that user can reach
        build = Path(tempfile.mkdtemp(prefix="verisim-pg-initdb-"))
        os.chmod(build, 0o755)
        data = build / "data"
        data.mkdir(mode=0o700)
        _chown_tree(build, self.uid, self.gid)
        initdb = [str(self.bin / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8"]
        r = _run_as([*initdb, "--locale=C.UTF-8", "--no-sync"], self.uid, self.gid, cwd=build)
        if r.returncode != 0:
            shutil.rmtree(build, ignore_errors=True)
            raise ServiceStartError("postgres", f"initdb failed (exit {r.returncode}): {r.stderr.strip()[-2000:]}")
        r = _run_as(
            [str(self.bin / "postgres"), "--single", "-D", str(data), "-c", "fsync=off", "postgres"],
            self.uid,
            self.gid,
            cwd=build,
            input=f"CREATE DATABASE {DATABASE};\n",
        )
        if r.returncode != 0:
            shutil.rmtree(build, ignore_errors=True)
            raise ServiceStartError("postgres", f"creating the database failed: {r.stderr.strip()[-2000:]}")
        tmp_target = self.template.with_suffix(".tmp")
        shutil.rmtree(tmp_target, ignore_errors=True)
        shutil.copytree(data, tmp_target, symlinks=True)
        os.replace(tmp_target, self.template)
        shutil.rmtree(build, ignore_errors=True)

    def spawn(self) -> None:
        if self.rundir is None:  # a restart keeps its data directory
            # /tmp, not the session dir: the unprivileged server user must be able to reach it
            self.rundir = Path(tempfile.mkdtemp(prefix="verisim-pg-"))
            if self.data_cap:
                capped_disk.mount(self.name, self.rundir, self.data_cap)
            os.chmod(self.rundir, 0o755)
            shutil.copytree(self.template, self.rundir / "data", symlinks=True)
            os.chmod(self.rundir / "data", 0o700)
            _chown_tree(self.rundir, self.uid, self.gid)
        argv = [
            str(self.bin / "postgres"),
            *("-D", str(self.rundir / "data"), "-h", "127.0.0.1", "-p", str(self.port), "-k", str(self.rundir)),
            *SERVER_FLAGS,
            *("-c", "log_min_messages=warning"),
            *self.extra_args,
        ]
        self.process = ManagedProcess(
            self.name,
            argv,
            self.log_path,
            user=self.uid,
            group=self.gid,
            cwd=self.rundir,
            stop_signal=2,  # SIGINT = fast shutdown
        ).start()

    def stop(self) -> None:
        super().stop()
        if self.rundir:
            if self.data_cap:
                capped_disk.unmount(self.rundir)
            shutil.rmtree(self.rundir, ignore_errors=True)
            self.rundir = None

    def fill_disk(self) -> int:
        self._require_cap()
        assert self.rundir is not None, "not started"
        return capped_disk.fill(self.rundir)

    def free_disk(self) -> None:
        if self.rundir is not None:
            capped_disk.free(self.rundir)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


# -- a container ------------------------------------------------------------------------------------------------------
IMAGES = ("verisim/postgres:15-bookworm", "postgres:16")  # (offline, upstream)


class PostgresContainer(Postgres, ContainerService, port_inside=5432, images=IMAGES):
    DISK = "/var/lib/postgresql"  # PGDATA's parent in both images: where the capped disk goes, the ballast beside data

    def __init__(self, *args, data_cap: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.data_cap = data_cap
        self.disk: Path | None = None  # the capped tmpfs on this host, bound into the container

    def _capped_disk(self) -> Path:
        """A tmpfs of ``data_cap`` on this host (as the local runtime's), bound into the container: unlike Docker's
        own tmpfs mount, it outlives the container's stop and start (a service.restart keeps Postgres' data)."""
        if self.disk is None:
            self.disk = Path(tempfile.mkdtemp(prefix="verisim-pg-disk-"))
            assert self.data_cap is not None
            capped_disk.mount(self.name, self.disk, self.data_cap)
        return self.disk

    def fill_disk(self) -> int:
        self._require_cap()
        return capped_disk.fill(self._capped_disk())

    def free_disk(self) -> None:
        if self.disk is not None:
            capped_disk.free(self.disk)

    def stop(self) -> None:
        super().stop()
        if self.disk is not None:
            capped_disk.unmount(self.disk)
            shutil.rmtree(self.disk, ignore_errors=True)
            self.disk = None

    def log_text(self) -> str:
        try:
            return self._wrapped().logs().decode(errors="replace")
        except Exception:  # noqa: BLE001 - gone: what it logged was saved when it stopped
            return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def make(self):
        from testcontainers.core.container import DockerContainer

        c = (
            DockerContainer(self.image)
            .with_envs(**CONTAINER_SETTINGS)
            .with_command(["postgres", *SERVER_FLAGS, *self.extra_args])
        )
        if self.data_cap:
            c.with_volume_mapping(str(self._capped_disk()), self.DISK, "rw")
        return c
