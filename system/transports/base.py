"""The protocol every transport implements, and what a worker program on it is given.

A transport carries job messages (``system.jobs.shapes.job_message``) from whoever accepted the job to a worker, and
settles each delivery as the worker's ``system.jobs.lifecycle.Disposition`` says (ack, retry after a delay, dead
letter). The job store, the outbox and the status cache do not care which transport ran a job; the worker's job
processing (``system.worker.processor.JobProcessor``) knows none of them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from system.config import Settings


class Transport(Protocol):
    """The sending side, held by the API and by every worker (whose sweeps re-send)."""

    name: str
    # True when a worker renews its delivery's lease while the job runs, so a lost worker's deliveries come back
    # within the lease (SQS: the visibility timeout, extended every few seconds). False when they come back only
    # after a timeout that must outlast the longest job (Celery on Redis): then the workers keep leases of their own
    # in Postgres and re-send a lost worker's running jobs (``JobStore.reclaim_lost``)
    leases_renewed: bool

    def send(self, messages: list[dict[str, Any]]) -> list[str]:
        """Publish the messages; returns the job ids the broker refused (raises when it refuses them all: the caller
        defers them to the workers' re-send sweep)."""
        ...

    def depth(self) -> dict[str, int]:
        """Messages by state: ``visible`` (waiting), ``in_flight``, ``delayed``, ``dlq`` (given up on)."""
        ...

    def created(self) -> str | None:
        """A stamp that changes when the broker's queue was made anew (its messages lost), or None where the broker
        cannot tell (the stale-job sweep still finds the jobs whose messages were lost)."""
        ...


@runtime_checkable
class FindsStranded(Protocol):
    """What a transport whose deliveries are not leased (``leases_renewed`` False) can add: which queued jobs' messages
    a lost worker had taken from the broker and can no longer run. A transport without it leaves those jobs to the
    stale-job sweep (later)."""

    def stranded(self, job_ids: list[str], held_longer_than: float) -> list[str]:
        """Of these queued jobs, those whose message no live worker can be holding (held longer than
        ``held_longer_than`` seconds, or taken and never recorded)."""
        ...


class WorkerProgram(Protocol):
    """The receiving side: what ``python -m system.worker --transport <name>`` runs in one process. It receives
    deliveries, hands them to a ``JobProcessor`` (``process_many``), settles each as it is told, and on SIGTERM stops
    receiving, lets running jobs finish within ``grace`` seconds and hands the rest back."""

    def __call__(self, settings: Settings, concurrency: int | None, grace: float, name: str | None) -> int: ...
