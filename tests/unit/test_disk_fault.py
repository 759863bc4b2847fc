"""The disk-full fault plays the service's supervisor: a service that shut itself down while its disk was full (Postgres
when its WAL cannot grow) is started again once the disk is freed, and the window says so; one that lived through it
is left alone."""

from __future__ import annotations

from harness.faults.disk import disk_full
from harness.faults.timeline import FaultTimeline


class Service:
    """A capped-disk service as the fault sees it; ``dies``: whether it shuts down while the disk is full."""

    name, data_cap = "postgres", "1G"

    def __init__(self, dies: bool):
        self.dies, self.full, self.down, self.starts, self.errors = dies, False, False, 0, 0

    def fill_disk(self) -> int:
        self.full = True
        self.errors += 2
        self.down = self.dies
        return 123

    def free_disk(self) -> None:
        self.full = False

    def disk_errors(self) -> int:
        return self.errors

    def exited(self) -> bool:
        return self.down

    def log_tail(self, lines: int = 20) -> str:
        return 'FATAL:  could not write to file "pg_wal/xlogtemp.1": No space left on device'

    def start_again(self) -> float:
        assert not self.full, "started again before the disk was freed"
        self.down, self.starts = False, self.starts + 1
        return 0.5


def test_a_service_that_died_of_the_full_disk_is_started_again_once_it_is_freed():
    service = Service(dies=True)
    with disk_full(service, FaultTimeline(), "postgres_disk_full") as fw:
        pass
    assert service.starts == 1 and not service.down
    assert fw.evidence["restarted_s"] == 0.5 and "No space left" in fw.evidence["exited_in_window"]
    assert fw.evidence["disk_full_errors"] == 2


def test_a_service_that_lived_through_it_is_left_alone():
    service = Service(dies=False)
    with disk_full(service, FaultTimeline(), "postgres_disk_full") as fw:
        pass
    assert service.starts == 0 and "restarted_s" not in fw.evidence and "exited_in_window" not in fw.evidence
