"""Named fault operations usable from any test, each recorded on a fault timeline (``FaultTimeline``).

- ``HttpFaults``: delay, jitter, error rate, 429 + Retry-After, malformed JSON, connection drop (through the mock OpenAI service)
- ``ProcessFaults``: kill / pause a worker; stop+start, restart or pause a backing service
"""

from harness.faults.http import HttpFaults
from harness.faults.mock_openai import MockOpenAIControl
from harness.faults.process import ProcessFaults
from harness.faults.timeline import FaultTimeline, FaultWindow

__all__ = ["FaultTimeline", "FaultWindow", "HttpFaults", "MockOpenAIControl", "ProcessFaults"]
