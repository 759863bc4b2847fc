"""The client journal: what each load source was told by the API, written as it was told.

The ledger's set of accepted jobs comes from here, never from the stores it judges: an id the API answered 2xx for
that no store holds is *lost*, a job in a store that no client submitted is *unsubmitted*, and a stored input whose
digest differs from the one the client computed before sending is *input_differs*.

Each entry is one JSON line::

    {"t": 1764661234.5, "source": "locust", "event": "accepted", "job_id": "…", "kind": "inference", "digest": "…"}
    {"t": 1764661234.6, "source": "locust", "event": "refused", "kind": "score", "token": "…", "status": 503}

A ``Journal`` keeps its entries in memory and, given a path, appends each line to that file with one ``write`` on a
descriptor opened with ``O_APPEND`` — several processes (a Locust master and its workers, a test and its helpers) can
share one file without interleaving lines. ``read`` loads one or more such files back.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def series_digest(series: dict[str, Any]) -> str:
    """The digest of one inference series as a client sends it; the API's defaults applied (no ``actual``: none;
    no ``horizon``: 1), so the digest of the stored ``params`` is the same when the system kept what it was sent."""
    canonical = {
        "pattern": series.get("pattern"),
        "values": [float(v) for v in series.get("values") or []],
        "actual": [float(v) for v in series.get("actual") or []],
        "horizon": int(series.get("horizon") or 1),
    }
    return "series:" + hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()[:32]


def file_digest(data: bytes) -> str:
    """The digest of an uploaded file's bytes."""
    return "file:" + hashlib.sha256(data).hexdigest()[:32]


@dataclass
class Entry:
    event: str  # accepted | refused
    kind: str
    t: float
    source: str
    job_id: str | None = None
    digest: str | None = None
    token: str | None = None
    status: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Journal:
    """What one or more clients were told. ``path``: also append every entry there (shared between processes)."""

    path: Path | None = None
    source: str = "client"
    entries: list[Entry] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None
        if self.path is not None:  # opened now, not at the first entry: see open_file
            self.open_file()

    def open_file(self) -> None:
        """Open the journal's file. Done when the journal is made: in a Locust process that is at import, before any
        socket exists. Opened lazily, among sockets that gevent's libev watches, its descriptor could take the number
        of one just closed, and libev aborts the process (``I/O watcher with invalid fd found in epoll_ctl``: seen
        twice, each time 2 s into a 20-user run)."""
        if self._fd is None and self.path is not None:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    # -- writing ---------------------------------------------------------------------------------------------------
    def accepted(self, job_ids: Sequence[str], kind: str, digests: Sequence[str | None]) -> None:
        """The API answered 2xx with ``job_ids``, one per input, in the order sent (``digests``: of those inputs)."""
        if len(job_ids) != len(digests):
            raise ValueError(f"{len(job_ids)} job ids for {len(digests)} inputs: the API's answer does not match")
        now = time.time()
        self._add([Entry("accepted", kind, now, self.source, str(j), d) for j, d in zip(job_ids, digests, strict=True)])

    def refused(self, kind: str, token: str | None, status: int | None) -> None:
        """The API refused a submission (``status`` None: no answer at all); ``token`` lets the ledger look for it."""
        self._add([Entry("refused", kind, time.time(), self.source, token=token, status=status)])

    def _add(self, entries: list[Entry]) -> None:
        with self._lock:
            self.entries += entries
            if self.path is not None:
                self.open_file()
                assert self._fd is not None
                os.write(self._fd, "".join(json.dumps(e.as_dict()) + "\n" for e in entries).encode())

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    # -- reading ---------------------------------------------------------------------------------------------------
    @property
    def accepted_ids(self) -> list[str]:
        """Every accepted job id, once, in the order the clients were told."""
        return list(dict.fromkeys(e.job_id for e in self.entries if e.event == "accepted" and e.job_id))

    @property
    def digests(self) -> dict[str, str]:
        return {e.job_id: e.digest for e in self.entries if e.event == "accepted" and e.job_id and e.digest}

    @property
    def kinds(self) -> dict[str, str]:
        return {e.job_id: e.kind for e in self.entries if e.event == "accepted" and e.job_id}

    @property
    def refused_tokens(self) -> list[str]:
        return [e.token for e in self.entries if e.event == "refused" and e.token]

    @property
    def refusals(self) -> int:
        return sum(1 for e in self.entries if e.event == "refused")

    def since(self, t: float) -> Journal:
        """The entries written at or after ``t`` (one phase of a run)."""
        return Journal(source=self.source, entries=[e for e in self.entries if e.t >= t], started=t)

    def merged(self, *others: Journal) -> Journal:
        entries = [e for j in (self, *others) for e in j.entries]
        return Journal(source=self.source, entries=entries, started=min(j.started for j in (self, *others)))

    def summary(self) -> dict[str, Any]:
        by_source: dict[str, int] = {}
        for e in self.entries:
            if e.event == "accepted":
                by_source[e.source] = by_source.get(e.source, 0) + 1
        return {"accepted": len(self.accepted_ids), "refused": self.refusals, "by_source": by_source}


def read(paths: Path | str | Iterable[Path | str], started: float | None = None) -> Journal:
    """One journal from the files at ``paths`` (missing files read as empty: a client that was told nothing).
    ``started``: when its clients began (default: its first entry) — a job accepted on the run's queue since then
    that the journal lacks is *unsubmitted*."""
    if isinstance(paths, str | Path):
        paths = [paths]
    entries = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            continue
        for line in p.read_text().splitlines():
            if line.strip():
                d = json.loads(line)
                sent = d.pop("input", None)  # a client outside the harness (the data simulator) writes its input
                if sent is not None and "digest" not in d:
                    d["digest"] = series_digest(sent) if d.get("kind") == "inference" else None
                entries.append(Entry(**d))
    entries.sort(key=lambda e: e.t)
    first = entries[0].t if entries else time.time()
    return Journal(source="files", entries=entries, started=started if started is not None else first)
