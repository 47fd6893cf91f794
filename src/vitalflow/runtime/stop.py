"""Graceful stop: the first SIGTERM or SIGINT asks the run to stop; a second one exits at once.

Exiting at once is safe: every file and ledger record is published atomically, so the ledger is
consistent at any instant, and the next run removes unpublished leftovers.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

log = logging.getLogger("vitalflow")
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Install as a context manager around a run; ``requested`` names the first signal."""

    def __init__(self, then: str = "finishing the cases in flight, then committing and stopping") -> None:
        self.then = then  # what the run does when asked to stop (logged)
        self.requested: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is not threading.main_thread():
            return self  # only the main thread may handle signals; a library caller keeps its own
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.requested is not None:
            log.error("second signal (%s): exiting now; the ledger is consistent, rerun to resume", name)
            os._exit(128 + signum)
        self.requested = name
        log.warning("%s received: %s (send it again to exit at once)", name, self.then)
