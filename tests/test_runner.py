"""The generic case runner with a job that is not preprocessing: every case committed exactly once,
in batches, largest first; time limits, dead workers and stop requests handled the same for any job.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field

from vitalflow.runtime.progress import Reporter, Tally
from vitalflow.runtime.runner import CaseResult, WorkerLimits, run_cases
from vitalflow.runtime.stop import StopRequest


@dataclass(frozen=True)
class Squares:
    """A job: the square of each case id; case ids in ``sleep`` sleep 5 s, in ``die`` kill their worker."""

    sleep: frozenset = frozenset()
    die: frozenset = frozenset()

    def size(self, case_id: int) -> int:
        return case_id

    def run_case(self, case_id: int) -> CaseResult:
        if case_id in self.die:
            os.kill(os.getpid(), signal.SIGKILL)
        if case_id in self.sleep:
            time.sleep(5)
        started = time.monotonic_ns()  # CLOCK_MONOTONIC: one clock for every process of the machine
        return CaseResult(case_id, False, windows=1, payload=(case_id * case_id, started), timings={"work": 0.001})

    def lost_case(self, case_id: int, reason: str) -> CaseResult:
        return CaseResult(case_id, True, payload=None, reason=reason)


@dataclass
class Collect:
    """A committer that keeps what it is given."""

    added: list = field(default_factory=list)
    batches: list = field(default_factory=list)
    aborted: bool = False

    def add(self, result: CaseResult) -> None:
        self.added.append(result)

    def commit(self, background) -> None:
        committed = sum(len(b) for b in self.batches)
        if len(self.added) > committed:
            self.batches.append(self.added[committed:])

    def abort(self) -> None:
        self.aborted = True


def _run(job, cases, committer, limits=WorkerLimits(), workers=2, commit_every=3, stop=None):
    tally = Tally(total=len(cases))
    stats = run_cases(job=job, cases=cases, committer=committer, workers=workers, commit_every=commit_every,
                      stop=stop or StopRequest(), tally=tally, reporter=Reporter(), limits=limits)
    return stats, tally


def test_every_case_is_committed_once_in_batches():
    committer = Collect()
    cases = list(range(1, 11))
    stats, tally = _run(Squares(), cases, committer)
    results = [r for b in committer.batches for r in b]
    assert sorted(r.case_id for r in results) == cases
    assert all(r.payload[0] == r.case_id ** 2 for r in results)
    assert [len(b) for b in committer.batches] == [3, 3, 3, 1]
    assert tally.done == 10 and tally.windows == 10 and tally.failed == 0
    assert abs(stats.timings["work"] - 0.01) < 1e-9
    assert stats.peak_worker_rss_mb > 0 and not committer.aborted


def test_one_worker_starts_the_largest_case_first():
    committer = Collect()
    _run(Squares(), [3, 9, 1, 5], committer, workers=1, commit_every=10)
    by_start = sorted(committer.added, key=lambda r: r.payload[1])  # results may arrive together
    assert [r.case_id for r in by_start] == [9, 5, 3, 1]


def test_a_case_past_its_time_limit_is_lost_and_the_others_go_on():
    committer = Collect()
    t = time.perf_counter()
    _run(Squares(sleep=frozenset({2})), [1, 2, 3], committer, limits=WorkerLimits(case_timeout_s=0.3))
    assert time.perf_counter() - t < 4  # not the 5 s the case would take
    lost = {r.case_id: r for r in committer.added if r.failed}
    assert list(lost) == [2] and "took longer than 0.3 s" in lost[2].reason
    assert sorted(r.case_id for r in committer.added) == [1, 2, 3]


def test_a_killed_worker_fails_its_case_names_the_signal_and_the_rest_run_again():
    committer = Collect()
    stats, tally = _run(Squares(die=frozenset({4})), [1, 2, 3, 4, 5, 6], committer, workers=1)
    by_case = {r.case_id: r for r in committer.added}
    assert sorted(by_case) == [1, 2, 3, 4, 5, 6]  # each exactly once
    assert by_case[4].failed and "killed by SIGKILL" in by_case[4].reason
    assert stats.worker_deaths and 4 in stats.worker_deaths[0]["cases_in_flight"]
    # a case in flight with the dead one may be failed with it (the pool cannot say which worker held
    # what); every other case succeeds
    assert all(not r.failed for c, r in by_case.items() if c not in stats.worker_deaths[0]["cases_in_flight"])


def test_a_stop_request_before_the_start_runs_nothing_and_commits():
    committer = Collect()
    stop = StopRequest()
    stop.requested = "SIGTERM"
    _, tally = _run(Squares(), [1, 2, 3], committer, stop=stop)
    assert committer.added == [] and tally.done == 0 and not committer.aborted


@dataclass(frozen=True)
class StartsAThread:
    """A job whose cases start a thread and allocate 64 MB (what reading from S3 does: fsspec starts
    its event loop thread in each worker)."""

    def size(self, case_id: int) -> int:
        return 1

    def run_case(self, case_id: int) -> CaseResult:
        import threading

        import numpy as np

        box = []
        t = threading.Thread(target=lambda: box.append(np.ones(8 * 2**20).sum()))
        t.start()
        t.join(30)
        return CaseResult(case_id, False, windows=1, payload=box[0] if box else None)

    def lost_case(self, case_id: int, reason: str) -> CaseResult:
        return CaseResult(case_id, True, payload=None, reason=reason)


def test_the_memory_limit_is_on_top_of_a_large_inherited_address_space():
    """A parent that maps more than ``worker_memory_mb`` (TensorFlow reserves GBs it never touches)
    must not leave its workers unable to start a thread or allocate: the limit is what a worker may
    add. Before the fix the workers of such a parent hung in ``Thread.start``."""
    import mmap

    reserved = mmap.mmap(-1, 6 * 2**30, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=0)  # PROT_NONE: reserved, never touched
    try:
        committer = Collect()
        stats, tally = _run(StartsAThread(), [1, 2, 3], committer, limits=WorkerLimits(worker_memory_mb=1024))
        done = {r.case_id: r for r in committer.added}
        assert sorted(done) == [1, 2, 3]
        assert all(not r.failed and r.payload == 8 * 2**20 for r in done.values()), [r.reason for r in done.values()]
    finally:
        reserved.close()
