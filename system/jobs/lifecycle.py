"""The job lifecycle: ``queued`` → ``running`` → one terminal status. A status only moves forward (its ``rank``):
a late writer — the API's ``queued`` landing after a fast worker's ``completed``, a stale redelivery — never
overwrites a newer state."""

from __future__ import annotations

import uuid
from enum import StrEnum


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    COMPLETED_WITH_WARNINGS = "completed_with_warnings"
    FAILED = "failed"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    @property
    def terminal(self) -> bool:
        return self.rank == FINAL_RANK


FINAL_RANK = 2
_RANKS = {Status.QUEUED: 0, Status.RUNNING: 1}
_RANKS.update(dict.fromkeys((Status.COMPLETED, Status.COMPLETED_WITH_WARNINGS, Status.FAILED), FINAL_RANK))

TERMINAL: tuple[str, ...] = tuple(s.value for s in Status if s.terminal)
ALL: tuple[str, ...] = tuple(s.value for s in Status)


def lua_ranks() -> str:
    """The ranks as a Lua table literal, for scripts that run inside Redis."""
    return "{" + ", ".join(f"{s.value}={s.rank}" for s in Status) + "}"


def new_job_id() -> uuid.UUID:
    """Every job's id is minted here (random: ids say nothing about order or origin)."""
    return uuid.uuid4()
