"""The durable job queue: one embedded SQLite database (WAL), one row per job.

A job goes ``Queued -> InProgress -> Completed | Failed`` (or ``Cancelled`` from either of the
first two). A worker *claims* a job: in one write transaction it takes the oldest ``Queued`` job,
or the oldest ``InProgress`` job whose lease expired (its worker died or hung), becomes the lease
holder for ``lease_s`` seconds and increments ``attempts``. While it works it *heartbeats*, which
extends the lease. Only the current lease holder can finish the job (``complete`` or ``fail``):
a worker that lost its lease (it stalled past the lease, another worker took the job) or whose
job was cancelled finds its ``complete`` refused, so a job is finished exactly once. A job taken
``max_attempts`` times without finishing fails with the reason instead of being taken again.

Finishing is followed by the job's notification (webhook, SNS). The row says whether it was sent
(``notified``); the finishing worker keeps the lease while it sends, and a job finished but not
notified whose lease expired (its worker died in between) is claimed again as a ``notify`` task:
notifications are delivered at least once (a receiver dedupes by jobId), results exactly once.

Every call opens its own short connection: the queue is safe to use from any thread and any
process (the HTTP server's threads, the worker processes); ``busy_timeout`` makes concurrent
writers wait for each other instead of failing.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

Status = Literal["Queued", "InProgress", "Completed", "Failed", "Cancelled"]
STATUSES: tuple[str, ...] = ("Queued", "InProgress", "Completed", "Failed", "Cancelled")
FINAL = ("Completed", "Failed", "Cancelled")
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL UNIQUE,
    request TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_expires REAL,
    heartbeat_at REAL,
    submitted_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    result TEXT,
    error TEXT,
    completions INTEGER NOT NULL DEFAULT 0,
    notified INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq);
"""


_CLAIMABLE = ("SELECT * FROM jobs WHERE status = 'Queued' OR (status = 'InProgress' AND lease_expires < ?) OR "
              "(status IN ('Completed', 'Failed') AND notified = 0 AND lease_expires < ?) ORDER BY seq LIMIT 1")


@dataclass(frozen=True)
class ServiceJob:
    """One row of the queue."""

    job_id: str
    request: dict[str, Any]
    status: str
    attempts: int
    lease_owner: str | None
    lease_expires: float | None
    heartbeat_at: float | None
    submitted_at: float
    started_at: float | None
    finished_at: float | None
    result: dict[str, Any] | None
    error: str | None
    completions: int  # times the job was finished (the exactly-once witness: 0 or 1)
    notified: bool

    @property
    def processing_time_s(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at if self.finished_at is not None else time.time()
        return max(0.0, end - self.started_at)


@dataclass(frozen=True)
class Claim:
    """What ``claim`` hands a worker: ``run`` the job, or only ``notify`` for a job finished
    by a worker that died before it notified (the job's status is final then)."""

    job: ServiceJob
    kind: Literal["run", "notify"]


class JobQueue:
    def __init__(self, path: str | Path, lease_s: float = 30.0, max_attempts: int = 3,
                 clock: Callable[[], float] = time.time, busy_timeout_ms: int = 30_000):
        self.path = Path(path)
        self.lease_s, self.max_attempts, self.clock = float(lease_s), int(max_attempts), clock
        self.busy_timeout_ms = int(busy_timeout_ms)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # -- connections -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at each checkpoint, never corrupt
            db.row_factory = sqlite3.Row
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (``BEGIN IMMEDIATE``): no two writers interleave."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @staticmethod
    def _job(row: sqlite3.Row | None) -> ServiceJob | None:
        if row is None:
            return None
        return ServiceJob(job_id=row["job_id"], request=json.loads(row["request"]), status=row["status"],
                   attempts=row["attempts"], lease_owner=row["lease_owner"], lease_expires=row["lease_expires"],
                   heartbeat_at=row["heartbeat_at"], submitted_at=row["submitted_at"], started_at=row["started_at"],
                   finished_at=row["finished_at"], result=json.loads(row["result"]) if row["result"] else None,
                   error=row["error"], completions=row["completions"], notified=bool(row["notified"]))

    # -- the API -----------------------------------------------------------------------------
    def submit(self, job_id: str, request: dict[str, Any]) -> tuple[ServiceJob, bool]:
        """Queue a job: (the job, True) or, for a jobId already known, (the existing job, False)."""
        with self._write() as db:
            cur = db.execute("INSERT OR IGNORE INTO jobs (job_id, request, status, submitted_at) VALUES (?, ?, ?, ?)",
                             (job_id, json.dumps(request, sort_keys=True), "Queued", self.clock()))
            created = cur.rowcount == 1
            row = db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return self._job(row), created

    def claim(self, worker_id: str) -> Claim | None:
        """The oldest job to run (Queued, or InProgress with an expired lease) or to notify, leased
        to ``worker_id``; None when there is nothing to do. A job already taken ``max_attempts``
        times is failed with the reason (and handed out to be notified)."""
        now = self.clock()
        with self._connect() as db:  # idle workers poll: look first, write only when there is work
            if db.execute(_CLAIMABLE.replace("*", "seq", 1), (now, now)).fetchone() is None:
                return None
        with self._write() as db:
            row = db.execute(_CLAIMABLE, (now, now)).fetchone()
            if row is None:
                return None
            lease = (worker_id, now + self.lease_s, now)
            if row["status"] in ("Completed", "Failed"):
                db.execute("UPDATE jobs SET lease_owner = ?, lease_expires = ?, heartbeat_at = ? WHERE seq = ?",
                           (*lease, row["seq"]))
                kind = "notify"
            elif row["attempts"] >= self.max_attempts:
                reason = (f"the job was taken {row['attempts']} times (max_attempts {self.max_attempts}) and its "
                          f"worker stopped each time without finishing it (killed, out of memory?)")
                db.execute("UPDATE jobs SET status = 'Failed', error = ?, finished_at = ?, completions = completions + 1, "
                           "lease_owner = ?, lease_expires = ?, heartbeat_at = ? WHERE seq = ?",
                           (reason, now, *lease, row["seq"]))
                kind = "notify"
            else:
                db.execute("UPDATE jobs SET status = 'InProgress', attempts = attempts + 1, lease_owner = ?, "
                           "lease_expires = ?, heartbeat_at = ?, started_at = ? WHERE seq = ?",
                           (*lease, now, row["seq"]))
                kind = "run"
            job = self._job(db.execute("SELECT * FROM jobs WHERE seq = ?", (row["seq"],)).fetchone())
        return Claim(job, kind)

    def heartbeat(self, job_id: str, worker_id: str) -> bool:
        """Extend the lease; False when this worker no longer holds the job (cancelled, or taken
        by another worker after its lease expired): the worker should stop working on it."""
        now = self.clock()
        with self._write() as db:
            cur = db.execute("UPDATE jobs SET heartbeat_at = ?, lease_expires = ? WHERE job_id = ? AND "
                             "lease_owner = ? AND status = 'InProgress'", (now, now + self.lease_s, job_id, worker_id))
            return cur.rowcount == 1

    def _finish(self, job_id: str, worker_id: str, status: str, result: dict | None, error: str | None) -> bool:
        now = self.clock()
        with self._write() as db:
            cur = db.execute(
                "UPDATE jobs SET status = ?, result = ?, error = ?, finished_at = ?, completions = completions + 1, "
                "notified = 0, lease_expires = ?, heartbeat_at = ? "
                "WHERE job_id = ? AND lease_owner = ? AND status = 'InProgress'",
                (status, json.dumps(result) if result is not None else None, error, now, now + self.lease_s, now,
                 job_id, worker_id))
            return cur.rowcount == 1

    def complete(self, job_id: str, worker_id: str, result: dict[str, Any]) -> bool:
        """Finish the job as Completed: only by its lease holder, only once (False otherwise)."""
        return self._finish(job_id, worker_id, "Completed", result, None)

    def fail(self, job_id: str, worker_id: str, error: str) -> bool:
        """Finish the job as Failed with the reason: only by its lease holder, only once."""
        return self._finish(job_id, worker_id, "Failed", None, error)

    def notified(self, job_id: str, worker_id: str) -> bool:
        """The finished job's notification went out: release the lease."""
        with self._write() as db:
            cur = db.execute("UPDATE jobs SET notified = 1, lease_owner = NULL, lease_expires = NULL WHERE job_id = ? "
                             "AND lease_owner = ? AND status IN ('Completed', 'Failed')", (job_id, worker_id))
            return cur.rowcount == 1

    def cancel(self, job_id: str) -> ServiceJob | None:
        """Cancel a Queued or InProgress job (its worker learns it at its next heartbeat); a
        finished job stays as it is. None for an unknown jobId."""
        now = self.clock()
        with self._write() as db:
            db.execute("UPDATE jobs SET status = 'Cancelled', finished_at = ?, lease_owner = NULL, lease_expires = NULL, "
                       "notified = 1 WHERE job_id = ? AND status IN ('Queued', 'InProgress')", (now, job_id))
            row = db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return self._job(row)

    def release_owners(self, owners_prefix: str, alive: Callable[[str], bool]) -> int:
        """Expire at once the leases of owners starting with ``owners_prefix`` that ``alive`` says
        are gone (a restarted server's previous workers): their jobs are taken again without
        waiting for the lease. Returns how many leases were expired."""
        with self._write() as db:
            rows = db.execute("SELECT seq, lease_owner FROM jobs WHERE lease_owner LIKE ? AND lease_expires IS NOT NULL",
                              (owners_prefix.replace("%", "") + "%",)).fetchall()
            dead = [r["seq"] for r in rows if not alive(r["lease_owner"])]
            for seq in dead:
                db.execute("UPDATE jobs SET lease_expires = 0 WHERE seq = ?", (seq,))
        return len(dead)

    def get(self, job_id: str) -> ServiceJob | None:
        with self._connect() as db:
            return self._job(db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone())

    def list(self, limit: int = 50, offset: int = 0, status: str | None = None) -> list[ServiceJob]:
        """The most recent jobs first."""
        query, args = "SELECT * FROM jobs", []
        if status is not None:
            query, args = query + " WHERE status = ?", [status]
        query += " ORDER BY seq DESC LIMIT ? OFFSET ?"
        with self._connect() as db:
            return [self._job(r) for r in db.execute(query, (*args, int(limit), int(offset))).fetchall()]

    def counts(self) -> dict[str, int]:
        """Jobs per status (every status listed)."""
        with self._connect() as db:
            got = dict(db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())
        return {s: int(got.get(s, 0)) for s in STATUSES}
