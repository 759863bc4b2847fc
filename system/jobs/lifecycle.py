"""The job's vocabulary, declared once: its statuses (``queued`` → ``running`` → one terminal status), its kinds, and
what becomes of a delivered message (``Disposition``). A status only moves forward (its ``rank``): a late writer —
the API's ``queued`` landing after a fast worker's ``completed``, a stale redelivery — never overwrites a newer
state. The SQL constraint, the Redis script's ranks and the SQL lists below are made from (or tested against) these
enums."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
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

    @property
    def succeeded(self) -> bool:
        return self in (Status.COMPLETED, Status.COMPLETED_WITH_WARNINGS)


FINAL_RANK = 2
_RANKS = {Status.QUEUED: 0, Status.RUNNING: 1}
_RANKS.update(dict.fromkeys((Status.COMPLETED, Status.COMPLETED_WITH_WARNINGS, Status.FAILED), FINAL_RANK))

TERMINAL: tuple[str, ...] = tuple(s.value for s in Status if s.terminal)
OPEN: tuple[str, ...] = tuple(s.value for s in Status if not s.terminal)  # a worker may still take the job
SUCCEEDED: tuple[str, ...] = tuple(s.value for s in Status if s.succeeded)
ALL: tuple[str, ...] = tuple(s.value for s in Status)


class Kind(StrEnum):
    INFERENCE = "inference"  # a time series through the LSTM and the moving average
    SCORE = "score"  # a sheet-music upload through reading, analysis, translation and audio


class Action(StrEnum):
    """What a transport does with a delivered message."""

    ACK = "ack"  # done with: delete / acknowledge it
    RETRY = "retry"  # deliver it again after a delay
    DEAD_LETTER = "dead_letter"  # give up on it: the job, if there is one, is failed with its reason


@dataclass(frozen=True)
class Disposition:
    """What becomes of a delivered message once its job is dealt with; each transport maps it onto its own calls."""

    action: Action
    delay: int = 0


ACK = Disposition(Action.ACK)
DEAD_LETTER = Disposition(Action.DEAD_LETTER)


def sql_list(values: tuple[str, ...]) -> str:
    """``('a','b')`` for an SQL ``IN``: the enums' values only (never user input)."""
    return "(" + ",".join(f"'{v}'" for v in values) + ")"


def lua_ranks() -> str:
    """The ranks as a Lua table literal, for scripts that run inside Redis."""
    return "{" + ", ".join(f"{s.value}={s.rank}" for s in Status) + "}"


def new_job_id() -> uuid.UUID:
    """Every job's id is minted here (random: ids say nothing about order or origin)."""
    return uuid.uuid4()
