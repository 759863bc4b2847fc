"""The API fuzzer's oracle: every generated request and what its answer broke (tests/integration/test_api_fuzz.py).

Rules for every answer: no 5xx; no hang or dropped connection; a refusal (4xx) is a status the route documents in its
OpenAPI document and carries a message (``detail``, or OpenAI's ``error.message`` for the mock OpenAI service).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from harness.oracles.journal import Journal, series_digest


def _sent_series_digests(response, n: int) -> list[str | None]:
    """The digests of the series an accepted inference request carried (None each where the body does not read back
    as that many series: the input check is then skipped for those jobs, not failed)."""
    try:
        sent = json.loads(response.request.content)
        series = sent["series"] if isinstance(sent, dict) and "series" in sent else [sent]
        if len(series) == n:
            return [series_digest(s) for s in series]
    except (ValueError, TypeError, KeyError, AttributeError, RuntimeError):  # RuntimeError: no request recorded
        pass
    return [None] * n


class Tally:
    """Every fuzzed request: counts per endpoint and status, accepted job ids, and what broke a rule."""

    def __init__(self):
        self.by_endpoint: Counter = Counter()
        self.by_status: dict[str, Counter] = defaultdict(Counter)
        self.accepted: list[str] = []
        self.broken: list[str] = []
        self.ran: set[str] = set()  # which generators ran (the total is judged only when all of them did)
        self.journal = Journal(source="fuzz")  # what the API told the fuzzer: the ledger's accepted set

    @property
    def total(self) -> int:
        return sum(self.by_endpoint.values())

    def record(self, endpoint: str, response, documented: set[int], what: str) -> None:
        self.by_endpoint[endpoint] += 1
        before = len(self.broken)
        self._judge(endpoint, response, documented, what)
        # raised inside the Hypothesis test, so Hypothesis shrinks the request to a minimal one
        if len(self.broken) > before:
            raise AssertionError(self.broken[-1])

    def _judge(self, endpoint: str, response, documented: set[int], what: str) -> None:
        if response is None:
            self.broken.append(f"{endpoint}: no answer (10 s, or the connection dropped) to {what}")
            return
        code = response.status_code
        self.by_status[endpoint][code] += 1
        if code >= 500:
            self.broken.append(f"{endpoint}: {code} to {what}: {response.text[:200]}")
        elif code >= 400:
            if code not in documented:
                self.broken.append(f"{endpoint}: undocumented {code} to {what}")
            try:  # the API's {"detail": …}; the mock OpenAI service answers as OpenAI does, {"error": {"message"}}
                body = response.json()
                detail = body.get("detail") or (body.get("error") or {}).get("message")
            except (ValueError, AttributeError):
                detail = None
            if not detail:
                self.broken.append(f"{endpoint}: {code} without a detail message to {what}: {response.text[:120]}")
        elif code == 202:
            body = response.json()
            ids = body.get("job_ids") or ([body["job_id"]] if "job_id" in body else [])
            self.accepted += ids
            kind = "score" if "job_id" in body else "inference"
            self.journal.accepted(
                ids, kind, _sent_series_digests(response, len(ids)) if kind == "inference" else [None] * len(ids)
            )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                {
                    "total": self.total,
                    "by_endpoint": dict(self.by_endpoint),
                    "by_status": {k: dict(v) for k, v in self.by_status.items()},
                    "accepted_jobs": len(self.accepted),
                },
                indent=2,
            )
        )
