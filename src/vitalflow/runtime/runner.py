"""The case runner: any per-case job over worker processes, committed in batches, stoppable.

A job says what one case is (`CaseJob.run_case`, in a worker) and how finished cases are made
durable (`Committer`, in the main process). The runner owns everything else, the same for every
job: the worker pool, at most ``2 x workers`` cases in flight (memory depends on that, never on the
number of cases), largest cases first, a commit every ``commit_every`` finished cases, the per-case
time limit and the workers' memory limit, workers that die (their cases fail or run again), a
graceful stop on SIGTERM/SIGINT (cases in flight may finish for ``stop_grace_s``, then are
abandoned; what finished is committed), progress, and the peak memory of the workers.
"""

from __future__ import annotations

import logging
import resource
import signal
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from vitalflow.runtime.pool import WorkerPool
from vitalflow.runtime.progress import Reporter, Tally
from vitalflow.runtime.stop import StopRequest

log = logging.getLogger("vitalflow")


class CaseTimeout(BaseException):
    """Raised in a worker by the runner's alarm when a case exceeds its time limit. A BaseException,
    so that no ``except Exception`` on the way turns it into another error; a job may catch it to
    say at which stage the case was."""


@dataclass
class CaseResult:
    """What a worker returns for one case."""

    case_id: int
    failed: bool
    windows: int = 0  # what the case produced, for progress
    payload: Any = None  # the job's own result (for preprocessing: the outcome and the block)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage; "peak_rss_mb" is a max
    reason: str | None = None  # one line, when failed


class CaseJob(Protocol):
    """The worker side of a job. The object is handed to each worker once, when it starts."""

    def run_case(self, case_id: int) -> CaseResult:
        """Process one case; problems become a failed result, never an exception."""

    def lost_case(self, case_id: int, reason: str) -> CaseResult:
        """The failed result of a case lost with its worker or past its time limit."""

    def size(self, case_id: int) -> int:
        """How big the case is (its file's bytes): larger cases start first."""


class Committer(Protocol):
    """The main-process side of a job: makes finished cases durable, in batches."""

    def add(self, result: CaseResult) -> None:
        """Keep a finished case for the next commit."""

    def commit(self, background: Callable[..., Future] | None) -> None:
        """Make the cases added since the last commit durable. ``background(fn, *args)`` runs
        follow-up work in the workers between cases (None when the run is stopping); the runner
        waits for it before it returns (a stopped run cancels it)."""

    def abort(self) -> None:
        """Drop what was added but not committed (the run is failing)."""


@dataclass(frozen=True)
class WorkerLimits:
    case_timeout_s: float | None = None  # per case, in its worker (None: no limit)
    worker_memory_mb: int | None = None  # address space each worker may add to what it inherits (None: no limit)


@dataclass
class RunStats:
    timings: dict[str, float] = field(default_factory=dict)  # summed over cases
    peak_worker_rss_mb: float = 0.0  # sampled from /proc while cases run, so it includes workers that die
    worker_deaths: list[dict] = field(default_factory=list)  # how workers died, and the cases in flight


# --- in each worker -------------------------------------------------------------------------------
_job: CaseJob | None = None
_limits = WorkerLimits()


def inherited_address_space() -> int:
    """This process's virtual address space in bytes (``/proc/self/statm``; 0 where unknown)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


def _init_worker(job: CaseJob, limits: WorkerLimits) -> None:
    """A worker's job, its memory limit (an allocation past it raises MemoryError in the case, not
    the kernel's OOM killer) and the per-case alarm."""
    global _job, _limits
    _job, _limits = job, limits
    if limits.worker_memory_mb:
        try:
            hard = resource.getrlimit(resource.RLIMIT_AS)[1]
            # on top of the address space the worker inherits: a parent that loaded TensorFlow
            # (a notebook, the app, the tests) maps GBs it never touches, and a fixed limit below
            # that would make every later mmap fail in the worker (even starting a thread)
            soft = inherited_address_space() + limits.worker_memory_mb * 2**20
            resource.setrlimit(resource.RLIMIT_AS, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))
        except (ValueError, OSError):  # a hard limit below ours: keep the system's
            log.info("could not limit worker memory to %d MB", limits.worker_memory_mb)
    if limits.case_timeout_s:
        signal.signal(signal.SIGALRM, _alarm)


def _alarm(signum, frame):
    raise CaseTimeout


def _run_case(case_id: int) -> CaseResult:
    timeout = _limits.case_timeout_s
    if timeout:
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        return _job.run_case(case_id)
    except CaseTimeout:  # the job did not say at which stage
        return _job.lost_case(case_id, f"case {case_id}: took longer than {timeout:g} s")
    finally:
        if timeout:
            signal.setitimer(signal.ITIMER_REAL, 0)


# --- in the main process --------------------------------------------------------------------------
def run_cases(
    *,
    job: CaseJob,
    cases: list[int],
    committer: Committer,
    workers: int,
    commit_every: int,
    stop: StopRequest,
    tally: Tally,
    reporter: Reporter,
    limits: WorkerLimits = WorkerLimits(),
    stop_grace_s: float = 20.0,
) -> RunStats:
    """Run ``job`` on ``cases`` and commit every ``commit_every`` finished cases (and at the end).

    Returns after every case finished, or after a stop request once the cases in flight finished
    (or were abandoned after ``stop_grace_s``; they run again on resume). On an exception the
    uncommitted cases are dropped (`Committer.abort`) and the workers killed.
    """
    stats = RunStats(timings={})
    if not cases:
        committer.commit(None)
        return stats

    def pool() -> WorkerPool:
        return WorkerPool(max(1, min(workers, len(cases))), _init_worker, (job, limits))

    pending = deque(sorted(cases, key=lambda c: -job.size(c)))  # largest first: workers finish together
    inflight: dict[Future, int] = {}
    limit = 2 * workers
    batch = 0
    deadline = None
    pool_ = pool()
    followups: list[Future] = []

    def background(fn, *args) -> Future:
        future = pool_.submit(fn, *args)
        followups.append(future)
        return future

    try:
        while pending or inflight:
            if stop.requested and deadline is None:
                deadline = time.monotonic() + stop_grace_s
                pending.clear()
            while pending and len(inflight) < limit:
                case_id = pending.popleft()
                inflight[pool_.submit(_run_case, case_id)] = case_id
            finished, _ = wait(list(inflight), timeout=0.5, return_when=FIRST_COMPLETED)
            stats.peak_worker_rss_mb = max(stats.peak_worker_rss_mb, pool_.peak_rss_mb())
            died: list[str] | None = None
            for future in finished:
                case_id = inflight.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool:  # a worker was killed (OOM?): every case in flight is lost
                    if died is None:
                        died = pool_.deaths()
                        stats.worker_deaths.append({"cases_in_flight": sorted([case_id, *inflight.values()]),
                                                    "workers": died})
                    how = "; ".join(died) or "killed, or out of memory"
                    result = job.lost_case(case_id, f"case {case_id}: the worker process died ({how}) "
                                                    "while this case was in flight")
                _add_timings(stats, result.timings)
                if result.failed:  # listed by the caller at the end; as it happens with --verbose
                    log.info("case %s failed: %s", case_id, result.reason)
                committer.add(result)
                tally.add(result.windows, result.failed)
                batch += 1
                if batch >= commit_every:
                    committer.commit(None if stop.requested else background)
                    batch = 0
            if died is not None:
                pool_.kill()
                pool_ = pool()
                for case_id in inflight.values():  # lost with the pool: run them again
                    pending.appendleft(case_id)
                inflight.clear()
            if deadline is not None and time.monotonic() > deadline and inflight:
                log.warning("abandoning %d case(s) still in flight; they will run on resume", len(inflight))
                pool_.kill()
                inflight.clear()
            reporter.update()
        committer.commit(None if stop.requested else background)
    except BaseException:
        committer.abort()
        pool_.kill()
        raise
    if stop.requested:  # a stopped run is partial: its follow-up work must not delay the stop
        for future in followups:
            future.cancel()
        pool_.kill()
    else:
        wait(followups)  # done, or failed with a pool that broke: the committer decides
        pool_.close()
    return stats


def _add_timings(stats: RunStats, timings: dict[str, float]) -> None:
    for k, v in timings.items():
        if k == "peak_rss_mb":
            stats.peak_worker_rss_mb = max(stats.peak_worker_rss_mb, v)
        else:
            stats.timings[k] = stats.timings.get(k, 0.0) + v
