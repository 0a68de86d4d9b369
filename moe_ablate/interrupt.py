"""Ctrl-C and SIGTERM (what a cluster scheduler sends before it kills a job), handled gracefully.

The first signal only sets a flag: the training loop stops at the next step boundary (a plain
Python check, no host sync), records the experiment as ``interrupted`` (and saves a checkpoint
when it checkpoints), the study writes consistent files and the command exits 130 (SIGINT) or
143 (SIGTERM). A second signal exits at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading

_requested: int | None = None


class Interrupted(Exception):
    """Raised by a study after it stopped cleanly on a signal; ``exit_code`` is 128 + the signal."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum
        self.exit_code = 128 + signum


def requested() -> int | None:
    """The signal that asked us to stop, or None."""
    return _requested


def _handler(signum, frame):
    global _requested
    if _requested is not None:  # the second signal: no more waiting
        raise SystemExit(128 + signum)
    _requested = signum


@contextlib.contextmanager
def graceful_signals():
    """Install the handlers for the duration (main thread only; elsewhere a no-op)."""
    global _requested
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _requested = None
    old = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _requested = None
