"""Build Verisim's container images with no registry: a Debian base from mmdebstrap, then ``docker build`` on it.

    python -m harness.docker.build              build what is missing or out of date (the default set)
    python -m harness.docker.build --list       say what exists and what would be built
    python -m harness.docker.build --force      rebuild everything asked for
    python -m harness.docker.build system       also the system's own image (API + worker, for docker-compose)

Each image carries a label ``verisim.build-hash`` (its Dockerfile, context files, build arguments and parent image);
an image whose label matches is not rebuilt, so a second run takes seconds. Builds use ``--network host`` (apt from
deb.debian.org, pip from PyPI with the host's CA bundle) and run in parallel where they don't depend on each other.
Per-image logs: ``~/.cache/verisim/image-builds/<name>.log``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from harness.cache import cache_dir, cache_lock
from harness.docker.inputs import LOCALSTACK_PINS, find_tansu
from harness.settings import current

ROOT = Path(__file__).resolve().parents[2]
IMAGES_DIR = Path(__file__).resolve().parent / "images"
HASH_LABEL = "verisim.build-hash"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
MIRROR = current().debian_mirror
SECURITY_MIRROR = current().debian_security_mirror

BASE_TAG = "verisim/debian:bookworm"
PYTHON_TAG = "verisim/python:3.11-bookworm"


@dataclass
class ImageSpec:
    name: str
    tag: str
    parent: str | None  # the name of another spec this one builds FROM
    dockerfile: Path | None = None  # None: the base (mmdebstrap + docker import)
    files: list[tuple[Path, str]] = field(default_factory=list)  # (source, path inside the context)
    build_args: dict[str, str] = field(default_factory=dict)
    stage: Callable[[Path], None] | None = None  # extra staging (binaries found on the host)
    default: bool = True  # built by a plain `nox -s images`


def _tree(src: Path, dest: str) -> list[tuple[Path, str]]:
    return [
        (p, f"{dest}/{p.relative_to(src)}")
        for p in sorted(src.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    ]


def _stage_tansu(ctx: Path) -> None:
    shutil.copy2(find_tansu(), ctx / "tansu")
    os.chmod(ctx / "tansu", 0o755)


def _localstack_pins() -> str:
    return " ".join(LOCALSTACK_PINS)  # word-split by the Dockerfile's RUN under `set -f` (no globbing)


def _system_files() -> list[tuple[Path, str]]:
    files = [(ROOT / "pyproject.toml", "pyproject.toml"), (ROOT / "README.md", "README.md")]
    files += _tree(ROOT / "system", "system")
    return files


def specs() -> dict[str, ImageSpec]:
    d = IMAGES_DIR
    all_specs = [
        ImageSpec("base", BASE_TAG, None),
        ImageSpec("python", PYTHON_TAG, "base", d / "python" / "Dockerfile"),
        ImageSpec(
            "postgres",
            "verisim/postgres:15-bookworm",
            "base",
            d / "postgres" / "Dockerfile",
            _tree(d / "postgres", "."),
            build_args=_postgres_template_args(),
        ),
        ImageSpec("redis", "verisim/redis:7-bookworm", "base", d / "redis" / "Dockerfile", _tree(d / "redis", ".")),
        ImageSpec("prometheus", "verisim/prometheus:bookworm", "base", d / "prometheus" / "Dockerfile"),
        ImageSpec(
            "kafka",
            "verisim/tansu:0.6.0",
            "base",
            d / "tansu" / "Dockerfile",
            _tree(d / "tansu", "."),
            stage=_stage_tansu,
        ),
        ImageSpec(
            "localstack",
            "verisim/localstack:4.13.1",
            "python",
            d / "localstack" / "Dockerfile",
            _tree(d / "localstack", "."),
            build_args={"LOCALSTACK_PINS": _localstack_pins()},
        ),
        ImageSpec(
            "mock_openai",
            "verisim/mock-openai:dev",
            "python",
            ROOT / "system" / "mock_openai" / "Dockerfile",
            [
                (ROOT / "system" / "__init__.py", "system/__init__.py"),
                *_tree(ROOT / "system" / "mock_openai", "system/mock_openai"),
            ],
        ),
        ImageSpec(
            "system",
            "verisim/system:dev",
            "python",
            ROOT / "Dockerfile",
            _system_files(),
            stage=lambda ctx: _stage_wheels(ctx, ["torch-2.13.0*.whl"]),
            default=False,
        ),
    ]
    return {s.name: s for s in all_specs}


def _stage_wheels(ctx: Path, patterns: list[str]) -> None:
    """Wheels that live on this machine's disk and not on PyPI in the form we want (the CPU build of torch)."""
    wheels = ctx / ".docker" / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for folder in filter(None, os.environ.get("PIP_FIND_LINKS", "/opt/wheels").split()):
        for pattern in patterns:
            for whl in Path(folder).glob(pattern):
                shutil.copy2(whl, wheels / whl.name)


def docker(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, **kwargs)


def _postgres_template_args() -> dict[str, str]:
    """The settings the suite's Postgres containers ask for: the image makes its cluster for exactly these."""
    from harness.stack.services import postgres

    return postgres.CONTAINER_SETTINGS


def image_label(tag: str) -> str | None:
    r = docker("image", "inspect", "--format", f'{{{{index .Config.Labels "{HASH_LABEL}"}}}}', tag)
    return r.stdout.strip() if r.returncode == 0 else None


def image_id(tag: str) -> str:
    r = docker("image", "inspect", "--format", "{{.Id}}", tag)
    return r.stdout.strip()


def _base_recipe() -> list[str]:
    hooks = "/usr/share/mmdebstrap/hooks/merged-usr"
    clean_cfg = (
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb '
        '/var/cache/apt/*.bin || true"; };\nAPT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
        '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\nDir::Cache::pkgcache "";\n'
        'Dir::Cache::srcpkgcache "";\n'
    )
    # apt's own cleanup is skipped and the docker-clean config is written last: mmdebstrap drives apt from the
    # host, so a Post-Invoke inside the target would run on the host (docs/docker-without-a-registry.md)
    return [
        "mmdebstrap",
        "--variant=minbase",
        f"--hook-dir={hooks}",
        '--aptopt=APT::Install-Recommends "false"',
        '--aptopt=Acquire::Languages "none"',
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/info/*",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        "--skip=cleanup/apt",
        '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb',
        f"--customize-hook=printf '%s' '{clean_cfg}' > \"$1/etc/apt/apt.conf.d/docker-clean\"",
        "bookworm",
        "-",
        f"deb {MIRROR} bookworm main",
        f"deb {MIRROR} bookworm-updates main",
        f"deb {SECURITY_MIRROR} bookworm-security main",
    ]


def build_hash(spec: ImageSpec, all_specs: dict[str, ImageSpec]) -> str:
    h = hashlib.sha256(spec.tag.encode())
    if spec.dockerfile is None:
        h.update(json.dumps(_base_recipe()).encode())
    else:
        h.update(spec.dockerfile.read_bytes())
        for src, dest in spec.files:
            h.update(dest.encode())
            h.update(src.read_bytes())
        h.update(json.dumps(spec.build_args, sort_keys=True).encode())
    if spec.parent:
        h.update(image_id(all_specs[spec.parent].tag).encode())
    return h.hexdigest()[:16]


class Builder:
    def __init__(self, progress: Callable[[str], None] = print, force: bool = False):
        self.progress = progress
        self.force = force
        self.logs = cache_dir() / "image-builds"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.all = specs()
        self.results: dict[str, dict] = {}
        self._lock = threading.Lock()

    def wanted(self, names: list[str]) -> list[ImageSpec]:
        """The named images (default set when empty) and every parent they need, parents first."""
        unknown = [n for n in names if n not in self.all]
        if unknown:
            raise SystemExit(f"unknown image(s): {', '.join(unknown)}; known: {', '.join(self.all)}")
        todo = names or [n for n, s in self.all.items() if s.default]
        order: list[str] = []

        def visit(n: str) -> None:
            if self.all[n].parent:
                visit(self.all[n].parent)
            if n not in order:
                order.append(n)

        for n in todo:
            visit(n)
        return [self.all[n] for n in order]

    def up_to_date(self, spec: ImageSpec) -> tuple[bool, str]:
        want = build_hash(spec, self.all)
        have = image_label(spec.tag)
        return (have == want and not self.force), want

    def build_one(self, spec: ImageSpec) -> dict:
        current, want = self.up_to_date(spec)
        if current:
            return {"image": spec.tag, "built": False, "seconds": 0.0}
        log = self.logs / f"{spec.name}.log"
        started = time.monotonic()
        self.progress(f"  building {spec.tag} …")
        if spec.dockerfile is None:
            ok = self._build_base(want, log)
        else:
            ok = self._docker_build(spec, want, log)
        seconds = round(time.monotonic() - started, 1)
        if not ok:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
            raise RuntimeError(f"building {spec.tag} failed after {seconds}s; log {log}:\n{tail}")
        self.progress(f"  built {spec.tag} in {seconds:.1f}s")
        return {"image": spec.tag, "built": True, "seconds": seconds}

    def _build_base(self, want: str, log: Path) -> bool:
        if not shutil.which("mmdebstrap"):
            raise RuntimeError("mmdebstrap is not installed: apt-get install -y mmdebstrap (it builds the base image)")
        with open(log, "w") as fh:
            mm = subprocess.Popen(_base_recipe(), stdout=subprocess.PIPE, stderr=fh)
            imp = subprocess.run(
                [
                    "docker",
                    "import",
                    "-c",
                    'CMD ["bash"]',
                    "-c",
                    "ENV LANG=C.UTF-8",
                    "-c",
                    f"LABEL {HASH_LABEL}={want}",
                    "-",
                    BASE_TAG,
                ],
                stdin=mm.stdout,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
            mm.stdout.close()
            return mm.wait() == 0 and imp.returncode == 0

    def _docker_build(self, spec: ImageSpec, want: str, log: Path) -> bool:
        with tempfile.TemporaryDirectory(prefix=f"verisim-build-{spec.name}-") as tmp:
            ctx = Path(tmp)
            for src, dest in spec.files:
                target = ctx / dest
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)
            (ctx / ".docker").mkdir(exist_ok=True)
            if HOST_CA_BUNDLE.exists():  # egress here is TLS-intercepted: pip inside the build needs this bundle
                shutil.copy2(HOST_CA_BUNDLE, ctx / ".docker" / "ca.crt")
            if spec.stage:
                spec.stage(ctx)
            shutil.copy2(spec.dockerfile, ctx / "Dockerfile")
            args = ["build", "--force-rm", "--network", "host", "-t", spec.tag, "--label", f"{HASH_LABEL}={want}"]
            if spec.parent:
                args += ["--build-arg", f"BASE={self.all[spec.parent].tag}"]
            for k, v in spec.build_args.items():
                args += ["--build-arg", f"{k}={v}"]
            with open(log, "w") as fh:
                r = subprocess.run(
                    ["docker", *args, str(ctx)],
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "DOCKER_BUILDKIT": "0"},
                )
            return r.returncode == 0

    def build(self, names: list[str]) -> dict[str, dict]:
        """Build in waves: an image starts as soon as its parent is done; siblings build in parallel."""
        todo = self.wanted(names)
        started = time.monotonic()
        done: dict[str, threading.Event] = {s.name: threading.Event() for s in todo}
        errors: list[BaseException] = []

        def run(spec: ImageSpec) -> None:
            try:
                if spec.parent in done:
                    done[spec.parent].wait()
                    if errors:
                        return
                result = self.build_one(spec)
                with self._lock:
                    self.results[spec.name] = result
            except BaseException as exc:  # noqa: BLE001 - reported below, siblings stop waiting
                errors.append(exc)
            finally:
                done[spec.name].set()

        with cache_lock("image-build", self.progress), ThreadPoolExecutor(max_workers=len(todo)) as pool:
            list(pool.map(run, todo))
        if errors:
            raise errors[0]
        total = round(time.monotonic() - started, 1)
        built = [r for r in self.results.values() if r["built"]]
        self.progress(f"images: {len(built)} built, {len(self.results) - len(built)} up to date, {total:.1f}s")
        record = {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "total_s": total, "images": self.results}
        with open(cache_dir() / "image-builds" / "history.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        return self.results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.docker.build",
        description=__doc__.splitlines()[0],
        epilog="images: " + ", ".join(f"{n} ({s.tag})" for n, s in specs().items()),
    )
    parser.add_argument("images", nargs="*", help="which images (default: everything the containers stack needs)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the build hash matches")
    parser.add_argument("--list", action="store_true", help="show what exists and what is out of date; build nothing")
    args = parser.parse_args(argv)
    from harness.docker.daemon import ensure_daemon

    try:
        print(f"docker: {ensure_daemon()}")
        builder = Builder(force=args.force)
        if args.list:
            for spec in builder.wanted(args.images):
                current, want = builder.up_to_date(spec)
                print(f"  {spec.name:<12} {spec.tag:<32} {'up to date' if current else 'to build'} ({want})")
            return 0
        builder.build(args.images)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
