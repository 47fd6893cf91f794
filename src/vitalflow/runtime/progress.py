"""Progress people can read: a bar on a terminal, one log line per interval elsewhere.

The run hands every finished case to a reporter; the CLI chooses which one. Reporters never stop
a run: they only print.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger("vitalflow.progress")


@dataclass
class Tally:
    total: int
    done: int = 0  # cases with an outcome (including those committed by earlier runs)
    windows: int = 0
    failed: int = 0
    started: float = field(default_factory=time.monotonic)
    done_at_start: int = 0

    def add(self, windows: int, failed: bool) -> None:
        self.done += 1
        self.windows += windows
        self.failed += int(failed)

    @property
    def idle(self) -> bool:
        """Nothing to do: every case had its outcome before this run (a rerun of a complete output)."""
        return self.total == self.done_at_start

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return (self.done - self.done_at_start) / elapsed if elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        rate = self.rate
        return (self.total - self.done) / rate if rate > 0 else None

    def as_dict(self) -> dict:
        eta = self.eta_s
        return {"done": self.done, "total": self.total, "windows": self.windows, "failed": self.failed,
                "cases_per_s": round(self.rate, 3), "eta_s": None if eta is None else round(eta)}


class Reporter:
    """Silent (``--quiet``); the base of the others. Every reporter stays silent when the run has
    nothing to do (``tally.idle``, decided before :meth:`start`)."""

    def start(self, tally: Tally) -> None:
        self.tally = tally

    def update(self) -> None:
        pass

    def close(self) -> None:
        pass


class LogReporter(Reporter):
    """One line per ``interval_s`` (and at the end) for CloudWatch, CI and other non-terminals."""

    def __init__(self, interval_s: float = 30.0):
        self.interval_s = interval_s
        self._last = 0.0

    def start(self, tally: Tally) -> None:
        super().start(tally)
        self._last = time.monotonic()
        if not tally.idle:
            self._emit()

    def update(self) -> None:
        if not self.tally.idle and time.monotonic() - self._last >= self.interval_s:
            self._last = time.monotonic()
            self._emit()

    def close(self) -> None:
        if not self.tally.idle:
            self._emit()

    def _emit(self) -> None:
        d = self.tally.as_dict()
        eta = "?" if d["eta_s"] is None else time.strftime("%H:%M:%S", time.gmtime(d["eta_s"]))
        log.info(
            "progress: %d/%d cases (%.1f%%), %d windows, %.2f cases/s, ETA %s, %d failed",
            d["done"], d["total"], 100.0 * d["done"] / max(d["total"], 1), d["windows"], d["cases_per_s"], eta,
            d["failed"], extra={"progress": d},
        )


class BarReporter(Reporter):
    """A rich progress bar: cases done/total, windows, cases/s, ETA, failures."""

    def __init__(self, console=None):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]cases"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[windows]} windows"), TextColumn("{task.fields[rate]} cases/s"),
            TextColumn("ETA"), TimeRemainingColumn(), TextColumn("[red]{task.fields[failed]} failed"),
            console=console, transient=False,
        )
        self._task = None

    def start(self, tally: Tally) -> None:
        super().start(tally)
        if tally.idle:
            return
        self._progress.start()
        self._task = self._progress.add_task("cases", total=tally.total, completed=tally.done,
                                             windows=tally.windows, rate="0.00", failed=tally.failed)

    def update(self) -> None:
        if self._task is None:
            return
        t = self.tally
        self._progress.update(self._task, completed=t.done, windows=t.windows, rate=f"{t.rate:.2f}", failed=t.failed)

    def close(self) -> None:
        if self._task is None:
            return
        self.update()
        self._progress.stop()
