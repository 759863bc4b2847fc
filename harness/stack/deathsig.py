"""A child process dies with its parent: ``PR_SET_PDEATHSIG=SIGKILL``, set in the child itself (between fork and exec
for ``subprocess``, first thing in a forked service). The signal fires when the *thread* that forked it dies."""

from __future__ import annotations

import ctypes
import signal

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent() -> None:
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
