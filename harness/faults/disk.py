"""Disk full for a backing service (Jepsen's and Litmus' disk-fill): the filesystem its data lives on — capped when it
started (``data_cap``: ``harness.stack.capped_disk``) — is filled with a ballast file for the window, and the ballast
is deleted when the window ends. Writes that need new space fail (Postgres: SQLSTATE 53100, "could not extend file
…: No space left on device"); what is already on disk stays.

The evidence is the service's own word: the writes it logged as refused for want of space during the window (a
window where the disk filled but nothing tried to write leaves none, and fails).

A service may not survive a full disk: Postgres PANICs when its WAL needs a new segment and there is no room, and its
crash recovery, needing one too, shuts the server down. Once the disk is freed such a service is started again, as its
supervisor (systemd's ``Restart=``, a container's restart policy) would, and the window says so
(``exited_in_window``: the log's last lines; ``restarted_s``): the system is judged on how it lives through a database
that ran out of disk, crashed and came back, as it would be in production.

    with disk_full(postgres, timeline, "postgres_disk_full") as fw: ...    # fw.evidence["disk_full_errors"]
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from harness.faults.timeline import FaultTimeline, FaultWindow

DATA_CAP = "1G"  # a service that may get this fault starts on a disk this size (tmpfs: it costs only what is written)


@contextlib.contextmanager
def disk_full(service, timeline: FaultTimeline, name: str) -> Iterator[FaultWindow]:
    """``service``: a backing service started with a ``data_cap`` (``fill_disk``, ``free_disk``, ``disk_errors``)."""
    before = service.disk_errors()
    with timeline.window(name, "disk", target=service.name, cap=service.data_cap) as fw:
        fw.evidence["ballast_bytes"] = service.fill_disk()
        try:
            yield fw
        finally:
            service.free_disk()
            fw.evidence["disk_full_errors"] = service.disk_errors() - before
            if service.exited():
                fw.evidence["exited_in_window"] = service.log_tail(6)
                fw.evidence["restarted_s"] = round(service.start_again(), 2)
