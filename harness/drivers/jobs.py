"""Submissions for tests that judge the system: a bounded stream of jobs, each accepted id and each refused
submission remembered, waited for (bounded), then the ledger over all of them.

Each submission carries a token — ``metadata.submission`` for a series, the file's name for a score — so the ledger
can show that a submission the API refused never became a job.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import psycopg

from harness.drivers import http
from harness.faults import FaultTimeline
from harness.oracles import ledger
from harness.oracles.contract import COMPLETED_WITH_WARNINGS, FAILED, SUCCEEDED, TERMINAL
from harness.oracles.journal import Journal, file_digest, series_digest
from harness.polling import wait_for


class Jobs:
    """Submit a bounded stream of jobs and wait for them: the accepted ids are what the ledger checks."""

    def __init__(
        self, sut, stack, name: str = "", timeline: FaultTimeline | None = None, matrix: list[dict] | None = None
    ):
        self.sut, self.stack, self.name, self.timeline = sut, stack, name, timeline
        self.matrix = matrix  # where assert_ledger records this test's row of the fault matrix, if anywhere
        self.accepted: list[str] = []
        self.rejected = 0
        self.refused_tokens: list[str] = []  # each refused submission's token: the ledger checks none of them ran
        self.last_status: int | None = None  # of the latest submission (None: no answer at all)
        self.last_detail = ""  # what the API said when it refused the latest submission
        self.deferred = 0  # accepted while the queue did not take the message (sent later by the pending sweep)
        self.journal = Journal(source=name or "jobs")  # what the API told this client: the ledger's accepted set
        self.failures: dict[str, int] = {}  # the failure budget: error_code -> jobs allowed to fail so (default none)

    def expect_failures(self, code: str, n: int = 1) -> None:
        """Allow ``n`` more jobs to fail with ``code`` (``"*"``: any reason): what the test's fault is meant to do."""
        self.failures[code] = self.failures.get(code, 0) + n

    def inference(self, n: int = 5, seed: int = 0) -> list[str]:
        from system.patterns import PATTERNS, split

        token = uuid.uuid4().hex
        series = []
        for i in range(n):
            values, actual = split(PATTERNS[i % 5], 48, 3, seed=seed + i)
            series.append(
                {
                    "pattern": PATTERNS[i % 5],
                    "values": values,
                    "actual": actual,
                    "horizon": 3,
                    "metadata": {"submission": token},
                }
            )
        return self._post(
            "/api/v1/inference",
            token,
            "inference",
            [series_digest(s) for s in series],
            json={"series": series},
            key="job_ids",
        )

    def score(self, title: str = "Chorale") -> list[str]:
        from system.simulators.scores import musicxml

        token = uuid.uuid4().hex  # the file's name: the API keeps its stem with the job
        content = musicxml()
        return self._post(
            "/api/v1/scores",
            token,
            "score",
            [file_digest(content)],
            files={"file": (f"{token}.musicxml", content)},
            data={"title": title},
            key="job_id",
        )

    def _post(self, path, token, kind, digests, key, **kw) -> list[str]:
        try:
            r = http.post(self.sut.api_url + path, timeout=30, **kw)
        except httpx.HTTPError:
            r = None
        self.last_status = r.status_code if r is not None else None
        self.last_detail = _detail(r)
        if r is None or r.status_code != 202:
            self.rejected += 1
            self.refused_tokens.append(token)
            self.journal.refused(kind, token, self.last_status)
            return []
        deferred = r.json().get("deferred")
        self.deferred += len(deferred) if isinstance(deferred, list) else int(bool(deferred))
        ids = r.json()[key]
        ids = ids if isinstance(ids, list) else [ids]
        self.journal.accepted(ids, kind, digests)
        self.accepted += ids
        return ids

    def rows(self, ids=None) -> dict[str, tuple]:
        ids = ids or self.accepted
        with psycopg.connect(self.stack.postgres.dsn) as conn:
            return {
                str(r[0]): r[1:]
                for r in conn.execute(
                    "SELECT id, status, attempts, error_code, result FROM jobs WHERE id = ANY(%s::uuid[])", (ids,)
                )
            }

    def wait(self, timeout: float = 90) -> dict[str, tuple]:
        """Until every accepted job is terminal (bounded); returns their rows. Polled every 0.1 s over one
        connection (a count, not the rows), opened again when the previous one broke (a restarted Postgres)."""
        terminal = list(TERMINAL)
        conn: list[psycopg.Connection] = []

        def all_terminal() -> bool:
            query = "SELECT count(*) FILTER (WHERE status = ANY(%s)), count(*) FROM jobs WHERE id = ANY(%s::uuid[])"
            for attempt in (1, 2):
                try:
                    if not conn or conn[0].closed:
                        conn[:] = [psycopg.connect(self.stack.postgres.dsn, autocommit=True)]
                    ended, stored = conn[0].execute(query, (terminal, self.accepted)).fetchone()
                    return ended == stored == len(self.accepted)
                except psycopg.OperationalError:
                    if conn:
                        conn.pop().close()
                    if attempt == 2:
                        raise
            return False

        try:
            wait_for(all_terminal, timeout, interval=0.1, what=f"{len(self.accepted)} jobs terminal")
        except TimeoutError as exc:
            rows = self.rows()
            missing = [i for i in self.accepted if i not in rows]
            states: dict[str, int] = {}
            for r in rows.values():
                states[r[0]] = states.get(r[0], 0) + 1
            stuck = [i for i, r in rows.items() if r[0] not in TERMINAL][:3]
            trail = []
            for p in [self.sut.api, *self.sut.workers]:
                if p is None or not Path(p.log_path).exists():
                    continue
                for line in Path(p.log_path).read_text(errors="replace").splitlines():
                    if any(i in line for i in stuck):
                        trail.append(f"{p.name}: {line[:400]}")
            raise AssertionError(
                f"{exc}: states {states}; accepted (202) but not in Postgres: {len(missing)} "
                f"{missing[:5]}; not terminal: {stuck}\n" + "\n".join(trail[-40:])
            ) from None
        finally:
            for c in conn:
                c.close()
        return self.rows()

    def verdict(self, timeout: float = 30) -> ledger.LedgerReport:
        """The ledger over this client's journal (every accepted job, every refused submission), the contents of every
        job, every other job on the system's queue (none may exist) and the DLQ, once settled (bounded)."""
        return ledger.settle(
            self.stack,
            journal=self.journal,
            timeout=timeout,
            dlq_name=self.sut.dlq_name,
            scope=[self.sut.queue_name],
            failures=self.failures,
        )

    def assert_ledger(self, timeout: float = 30) -> None:
        report = self.verdict(timeout)
        self._record(report, agreed_at=report.checked_at if report.ok else None)
        assert report.ok, report.summary()

    def _record(self, report, agreed_at: float | None = None) -> None:
        """One row of the fault matrix: jobs sent / completed / failed with a reason / lost / duplicated / recovery
        (last job finished, after the fault window closed) / agree (the ledger's first check that found Postgres,
        Redis and Kafka agreeing began this long after the window closed; checks run every 0.5 s plus a Kafka read,
        and only once the jobs have ended, so it is coarse)."""
        with psycopg.connect(self.stack.postgres.dsn) as conn:
            last = conn.execute(
                "SELECT extract(epoch FROM max(finished_at)) FROM jobs WHERE id = ANY(%s::uuid[])", (self.accepted,)
            ).fetchone()[0]
        fault_end = max((w.end or 0 for w in (self.timeline.windows if self.timeline else [])), default=None)
        if self.matrix is None:
            return
        self.matrix.append(
            {
                "test": self.name,
                "faults": sorted({w.name for w in self.timeline.windows}) if self.timeline else [],
                "sent": len(self.accepted) + self.rejected,
                "accepted": len(self.accepted),
                "rejected": self.rejected,
                "completed": sum(report.by_status.get(s, 0) for s in SUCCEEDED),
                "with_warnings": report.by_status.get(COMPLETED_WITH_WARNINGS, 0),
                "failed": report.by_status.get(FAILED, 0),
                "lost": report.kinds["lost"] + report.kinds["not_terminal"],
                "duplicated": report.kinds["result_duplicate"] + report.kinds["events_duplicate"],
                "deferred": self.deferred,
                "recovery_s": round(max(0.0, float(last) - fault_end), 2) if last and fault_end else None,
                "agree_s": round(max(0.0, agreed_at - fault_end), 2) if agreed_at and fault_end else None,
            }
        )


def _detail(r: httpx.Response | None) -> str:
    """A refusal's ``detail`` (its text when it is not the API's JSON; "" for an acceptance or no answer)."""
    if r is None or r.status_code == 202:
        return ""
    try:
        return str(r.json().get("detail", ""))
    except ValueError:
        return r.text[:500]
