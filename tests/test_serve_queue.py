"""The durable job queue on a real SQLite file: idempotent submit, claim order, leases and
heartbeats, attempts, exactly-once finishing under any interleaving (Hypothesis) and under real
processes racing for the same jobs."""

from __future__ import annotations

import multiprocessing
import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitalflow.serve.queue import FINAL, JobQueue


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def queue(tmp_path, clock):
    return JobQueue(tmp_path / "jobs.db", lease_s=10, max_attempts=3, clock=clock)


def test_database_is_wal_with_busy_timeout(queue):
    import sqlite3

    db = sqlite3.connect(queue.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_submit_is_idempotent_by_job_id(queue):
    job, created = queue.submit("a", {"jobId": "a", "s3Key": "1.vital"})
    again, created_again = queue.submit("a", {"jobId": "a", "s3Key": "other.vital"})
    assert created and not created_again
    assert again.request == job.request == {"jobId": "a", "s3Key": "1.vital"}
    assert job.status == "Queued" and job.attempts == 0
    assert queue.counts()["Queued"] == 1


def test_claims_take_the_oldest_job_first(queue, clock):
    for i in range(5):
        queue.submit(f"j{i}", {})
        clock.t += 1
    got = [queue.claim("w").job.job_id for _ in range(5)]
    assert got == [f"j{i}" for i in range(5)]
    assert queue.claim("w") is None


def test_an_expired_lease_is_taken_again_and_only_the_holder_finishes(queue, clock):
    queue.submit("a", {})
    first = queue.claim("w1")
    assert first.kind == "run" and first.job.status == "InProgress" and first.job.attempts == 1
    assert queue.claim("w2") is None  # leased
    clock.t += 9
    assert queue.heartbeat("a", "w1")  # extends to t + 10
    clock.t += 9
    assert queue.claim("w2") is None
    clock.t += 2
    second = queue.claim("w2")  # w1 stopped heartbeating: the lease expired
    assert second.job.job_id == "a" and second.job.attempts == 2 and second.job.lease_owner == "w2"
    assert not queue.heartbeat("a", "w1")  # w1 learns it lost the job
    assert not queue.complete("a", "w1", {"by": "w1"})
    assert queue.complete("a", "w2", {"by": "w2"})
    assert not queue.complete("a", "w2", {"by": "again"})
    assert not queue.fail("a", "w2", "late")
    job = queue.get("a")
    assert (job.status, job.result, job.completions, job.error) == ("Completed", {"by": "w2"}, 1, None)


def test_a_job_taken_too_often_fails_with_the_reason(queue, clock):
    queue.submit("a", {})
    for attempt in range(1, 4):
        claim = queue.claim(f"w{attempt}")
        assert claim.kind == "run" and claim.job.attempts == attempt
        clock.t += 11
    claim = queue.claim("w4")
    assert claim.kind == "notify" and claim.job.status == "Failed"
    assert "taken 3 times" in claim.job.error and "max_attempts 3" in claim.job.error
    assert queue.notified("a", "w4")
    assert queue.claim("w5") is None
    assert queue.get("a").completions == 1


def test_a_finished_job_not_notified_is_handed_out_to_notify(queue, clock):
    queue.submit("a", {})
    queue.claim("w1")
    assert queue.complete("a", "w1", {"ok": True})
    assert queue.claim("w2") is None  # w1 holds the lease while it notifies
    clock.t += 11  # ... and died before saying it did
    claim = queue.claim("w2")
    assert claim.kind == "notify" and claim.job.status == "Completed"
    assert not queue.notified("a", "w1") and queue.notified("a", "w2")
    assert queue.claim("w3") is None
    job = queue.get("a")
    assert job.notified and job.completions == 1 and job.lease_owner is None


def test_cancel(queue):
    queue.submit("queued", {})
    queue.submit("running", {})
    queue.submit("done", {})
    assert queue.cancel("queued").status == "Cancelled"
    claim = queue.claim("w")
    assert claim.job.job_id == "running"
    assert queue.cancel("running").status == "Cancelled"
    assert not queue.heartbeat("running", "w") and not queue.complete("running", "w", {})
    queue.claim("w")
    assert queue.complete("done", "w", {})
    assert queue.cancel("done").status == "Completed"  # a finished job stays as it is
    assert queue.cancel("nope") is None
    assert queue.get("queued").status == "Cancelled"


def test_list_is_recent_first_and_paged(queue, clock):
    for i in range(7):
        queue.submit(f"j{i}", {})
    assert [j.job_id for j in queue.list(3)] == ["j6", "j5", "j4"]
    assert [j.job_id for j in queue.list(3, 6)] == ["j0"]
    queue.claim("w")
    assert [j.job_id for j in queue.list(status="InProgress")] == ["j0"]


def test_release_owners_of_a_dead_server(queue, clock):
    queue.submit("a", {})
    queue.submit("b", {})
    queue.claim("host:111:w0.1")
    queue.claim("host:222:w0.1")
    assert queue.release_owners("host:", lambda owner: owner.startswith("host:222:")) == 1
    assert queue.claim("w").job.job_id == "a"  # at once, not after the lease
    assert queue.claim("w") is None


def test_state_survives_reopening(tmp_path, clock):
    q = JobQueue(tmp_path / "jobs.db", clock=clock)
    q.submit("a", {"x": 1})
    q.claim("w")
    q.complete("a", "w", {"rows": 3})
    again = JobQueue(tmp_path / "jobs.db", clock=clock)
    assert again.get("a").result == {"rows": 3} and again.get("a").status == "Completed"


# -- every interleaving: a job is finished at most once, by the worker holding it -------------
OPS = st.lists(st.tuples(st.sampled_from(["claim", "heartbeat", "complete", "fail", "notified", "tick", "cancel"]),
                         st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=60)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_any_interleaving_finishes_each_job_at_most_once(tmp_path_factory, ops):
    clock = Clock()
    q = JobQueue(tmp_path_factory.mktemp("hyp") / "jobs.db", lease_s=10, max_attempts=3, clock=clock)
    jobs = ["a", "b", "c"]
    for j in jobs:
        q.submit(j, {})
    holding: dict[str, str] = {}  # worker -> job it believes it runs
    finished: dict[str, tuple] = {}  # job -> (status, result, error) when it became final
    accepted: dict[str, int] = {j: 0 for j in jobs}
    for op, w, j in ops:
        worker, job_id = f"w{w}", jobs[j]
        if op == "claim":
            claim = q.claim(worker)
            if claim is not None and claim.kind == "run":
                holding[worker] = claim.job.job_id
        elif op == "heartbeat" and worker in holding:
            q.heartbeat(holding[worker], worker)
        elif op in ("complete", "fail") and worker in holding:
            target = holding.pop(worker)
            ok = (q.complete(target, worker, {"by": worker}) if op == "complete" else q.fail(target, worker, worker))
            accepted[target] += ok
        elif op == "notified":
            q.notified(job_id, worker)
        elif op == "tick":
            clock.t += 6
        elif op == "cancel":
            q.cancel(job_id)
        for jid in jobs:
            job = q.get(jid)
            assert job.completions <= 1 and accepted[jid] <= 1
            if jid in finished:  # final states never change
                assert (job.status, job.result, job.error) == finished[jid]
            elif job.status in FINAL:
                finished[jid] = (job.status, job.result, job.error)
            assert 0 <= job.attempts <= 3
            if job.status == "Completed":
                assert job.result is not None and accepted[jid] == 1


# -- real processes racing ---------------------------------------------------------------------
def _race_worker(path: str, worker: str, seed: int, deadline: float, out) -> None:
    rng = random.Random(seed)
    q = JobQueue(path, lease_s=0.3, max_attempts=50)
    won = []
    while time.time() < deadline:
        claim = q.claim(worker)
        if claim is None:
            if q.counts()["Queued"] == 0 and q.counts()["InProgress"] == 0:
                break
            time.sleep(0.01)
            continue
        if claim.kind == "notify":
            q.notified(claim.job.job_id, worker)
            continue
        time.sleep(rng.choice([0.0, 0.001, 0.005, 0.35]))  # sometimes longer than the lease
        if q.complete(claim.job.job_id, worker, {"by": worker}):
            won.append(claim.job.job_id)
            q.notified(claim.job.job_id, worker)
    out.put((worker, won))


def test_processes_racing_finish_every_job_exactly_once(tmp_path):
    path = str(tmp_path / "jobs.db")
    q = JobQueue(path)
    n = 120
    for i in range(n):
        q.submit(f"j{i:03d}", {"i": i})
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    deadline = time.time() + 90
    procs = [ctx.Process(target=_race_worker, args=(path, f"w{k}", k, deadline, out)) for k in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(10)
    won = [j for _, jobs in results for j in jobs]
    assert sorted(won) == [f"j{i:03d}" for i in range(n)]  # each exactly once, none lost
    jobs = q.list(limit=n)
    assert all(j.status == "Completed" and j.completions == 1 for j in jobs)
    assert sum(j.attempts > 1 for j in jobs) > 0  # the race did happen: some leases expired
    for j in jobs:
        assert j.result == {"by": dict((jid, w) for w, js in results for jid in js)[j.job_id]}
