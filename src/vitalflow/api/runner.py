"""The job runner: job records in SQLite, local jobs as child processes, their progress from their logs.

A job is a validated request (`vitalflow.api.commands`) and the command built from it. Its life::

    queued -> running -> succeeded | failed | stopped (exit 75: the graceful stop)
                      -> submitted (a SageMaker job: `vitalflow launch` ended, the job runs in AWS)
    running, when the app finds the process gone after a restart and no exit code -> interrupted

``stopped``, ``failed`` and ``interrupted`` jobs can be resumed: the same command again (without
``--overwrite``), which continues where the run stopped (the commands resume by design).

Processes: each local job runs as ``python -m vitalflow.api.supervise <exit file> -- python -m
vitalflow <command> ...`` in a session of its own, stdout and stderr appended to
``<state_dir>/logs/<id>.log`` (kept after the job ends). Stop sends SIGTERM to the supervisor, which
passes it on. At most ``max_running`` local jobs run at once; the rest wait as ``queued``. One
thread (`JobRunner.tick`, every ``poll_s``) reaps ended jobs, reads new log lines for progress and
starts queued jobs. Closing the app stops its running jobs gracefully (SIGTERM, then waits up to
``stop_grace_s``); a job still running after that keeps running, and an app started later picks
it up again (or reads its exit code from the exit file).

The database (``<state_dir>/app.db``, WAL) holds every job across restarts; records are `AppJob`.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from vitalflow.api.commands import AppJobRequest, REQUESTS
from vitalflow.api.settings import AppSettings
from vitalflow.errors import VitalflowError
from vitalflow.errors import redact

log = logging.getLogger("vitalflow.app")

QUEUED, RUNNING, SUBMITTED = "queued", "running", "submitted"
SUCCEEDED, FAILED, STOPPED, INTERRUPTED = "succeeded", "failed", "stopped", "interrupted"
STATUSES = (QUEUED, RUNNING, SUBMITTED, SUCCEEDED, FAILED, STOPPED, INTERRUPTED)
ACTIVE = (QUEUED, RUNNING)
RESUMABLE = (FAILED, STOPPED, INTERRUPTED)
EXIT_STOPPED = 75

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    request TEXT NOT NULL,
    argv TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    pid INTEGER,
    exit_code INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    stop_requested INTEGER NOT NULL DEFAULT 0,
    progress TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    sagemaker_job TEXT
)
"""
_COLUMNS = ("id", "kind", "target", "request", "argv", "status", "created", "started", "finished", "pid",
            "exit_code", "attempts", "stop_requested", "progress", "error", "sagemaker_job")


class JobError(VitalflowError):
    """A job action that is not possible (unknown job, stop of an ended job, resume of a running one)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class AppJob:
    """One job record (what the database holds and the API returns)."""

    id: str
    kind: str
    target: str
    request: dict
    argv: list
    status: str
    created: float
    started: Optional[float] = None
    finished: Optional[float] = None
    pid: Optional[int] = None
    exit_code: Optional[int] = None
    attempts: int = 0
    stop_requested: bool = False
    progress: dict = field(default_factory=dict)
    error: Optional[str] = None
    sagemaker_job: Optional[str] = None

    @property
    def resumable(self) -> bool:
        return self.status in RESUMABLE

    @property
    def stoppable(self) -> bool:
        return self.status in ACTIVE

    @property
    def output(self) -> Optional[str]:
        return self.request.get("output")

    def command(self) -> str:
        """The command as a person would type it (``vitalflow ...``), for pages and logs."""
        import shlex

        return "vitalflow " + shlex.join(self.argv)

    def document(self) -> dict:
        """The job as JSON (the API's answer)."""
        return {"id": self.id, "kind": self.kind, "target": self.target, "status": self.status,
                "request": self.request, "command": self.command(), "created": self.created,
                "started": self.started, "finished": self.finished, "exit_code": self.exit_code,
                "attempts": self.attempts, "progress": self.progress, "error": self.error,
                "sagemaker_job": self.sagemaker_job, "resumable": self.resumable, "stoppable": self.stoppable}


class JobStore:
    """The jobs table in SQLite (WAL): one short connection per call, so any thread may use it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        return db

    @staticmethod
    def _job(row: sqlite3.Row) -> AppJob:
        d = dict(row)
        d["request"], d["argv"], d["progress"] = (json.loads(d[k]) for k in ("request", "argv", "progress"))
        d["stop_requested"] = bool(d["stop_requested"])
        return AppJob(**d)

    def insert(self, job: AppJob) -> None:
        values = [json.dumps(getattr(job, c)) if c in ("request", "argv", "progress") else getattr(job, c)
                  for c in _COLUMNS]
        db = self._connect()
        try:
            db.execute(f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})", values)
        finally:
            db.close()

    def update(self, job_id: str, **fields) -> AppJob:
        sets = ", ".join(f"{k} = ?" for k in fields)
        values = [json.dumps(v) if k in ("request", "argv", "progress") else v for k, v in fields.items()]
        db = self._connect()
        try:
            db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", [*values, job_id])
        finally:
            db.close()
        return self.get(job_id)

    def get(self, job_id: str) -> AppJob:
        db = self._connect()
        try:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        finally:
            db.close()
        if row is None:
            raise JobError(f"no job {job_id!r}", 404)
        return self._job(row)

    def list(self, status: Optional[tuple[str, ...]] = None, limit: int = 200) -> list[AppJob]:
        query, args = "SELECT * FROM jobs", []
        if status:
            query += f" WHERE status IN ({', '.join('?' * len(status))})"
            args = list(status)
        db = self._connect()
        try:
            rows = db.execute(query + " ORDER BY created DESC LIMIT ?", [*args, limit]).fetchall()
        finally:
            db.close()
        return [self._job(r) for r in rows]


# -- progress from a job's log -------------------------------------------------------------------

def parse_line(line: str, progress: dict) -> dict:
    """``progress`` updated with what one log line of a job says. The job runs with JSON logs
    (``VITALFLOW_LOG_FORMAT=json``) and only their structured fields are read
    (`vitalflow.cli.run.EVENT_FIELDS`), never the message text: a per-case run's ``progress``
    (cases done/total, windows, failed, ETA), a training ``epoch`` (and so the loss history) and a
    launched ``sagemaker_job``; besides, the CLI's own ``Error:`` line (its contract with scripts).

    >>> parse_line('{"message": "x", "progress": {"done": 3, "total": 12, "windows": 40, "failed": 0, '
    ...            '"cases_per_s": 0.5, "eta_s": 18}}', {})["cases"]
    {'done': 3, 'total': 12, 'windows': 40, 'failed': 0, 'eta_s': 18}
    >>> p = parse_line('{"message": "any words", "epoch": {"epoch": 2, "epochs": 6, "loss": 0.12, '
    ...                '"val_loss": 0.15}}', {})
    >>> p["epoch"], p["history"]
    ({'epoch': 2, 'epochs': 6, 'loss': 0.12, 'val_loss': 0.15}, [[2, 0.12, 0.15]])
    >>> parse_line("INFO epoch 2/6: loss 0.1200, val_loss 0.1500 (3.1 s)", {})  # text: not read
    {}
    """
    line = line.strip()
    if line.startswith("Error: "):
        progress["error"] = line[len("Error: "):]
        return progress
    if not line.startswith("{"):
        return progress
    try:
        record = json.loads(line)
    except ValueError:
        return progress
    if not isinstance(record, dict):
        return progress
    if isinstance(record.get("progress"), dict):
        p = record["progress"]
        progress["cases"] = {k: p.get(k) for k in ("done", "total", "windows", "failed", "eta_s")}
    if isinstance(record.get("epoch"), dict):
        e = record["epoch"]
        epoch, loss, val_loss = e.get("epoch"), e.get("loss"), e.get("val_loss")
        progress["epoch"] = {"epoch": epoch, "epochs": e.get("epochs"), "loss": loss, "val_loss": val_loss}
        history = [h for h in progress.get("history", []) if h[0] != epoch]
        progress["history"] = sorted([*history, [epoch, loss, val_loss]])
    if isinstance(record.get("sagemaker_job"), str):
        progress["sagemaker_job"] = record["sagemaker_job"]
    return progress


@dataclass
class _Process:
    """A running job's process: the Popen (None when picked up after a restart) and the log read so far."""

    pid: int
    popen: Optional[subprocess.Popen] = None
    offset: int = 0
    progress: dict = field(default_factory=dict)
    stop_sent: Optional[float] = None


class JobRunner:
    """Starts, watches, stops and resumes jobs; see the module's doc."""

    def __init__(self, settings: AppSettings, max_running: int = 1, poll_s: float = 0.5,
                 stop_grace_s: float = 40.0, python: str = sys.executable) -> None:
        self.settings, self.max_running, self.poll_s = settings, max_running, poll_s
        self.stop_grace_s, self.python = stop_grace_s, python
        self.store: Optional[JobStore] = None
        self._processes: dict[str, _Process] = {}
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._secrets = (settings.token,)

    # -- files -----------------------------------------------------------------------------------

    def log_path(self, job_id: str) -> Path:
        return self.settings.logs / f"{job_id}.log"

    def _exit_path(self, job_id: str) -> Path:
        return self.settings.logs / f"{job_id}.exit"

    def redact(self, text: str) -> str:
        return redact(text, self._secrets)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self.settings.logs.mkdir(parents=True, exist_ok=True)
        self.store = JobStore(self.settings.database)
        self._recover()
        self._thread = threading.Thread(target=self._loop, name="vitalflow-app-jobs", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the loop; stop running local jobs gracefully and wait up to ``stop_grace_s`` for them."""
        with self._lock:
            running = list(self._processes)
            for job_id in running:
                self._signal(job_id)
        deadline = time.monotonic() + self.stop_grace_s
        while running and time.monotonic() < deadline:
            self.tick()
            with self._lock:
                running = list(self._processes)
            time.sleep(0.2)
        self._closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _recover(self) -> None:
        """After a restart: a job recorded as running is picked up again if its process lives,
        finished from its exit file if it has one, else marked interrupted."""
        for job in self.store.list(status=(RUNNING,), limit=10_000):
            if job.pid and _alive(job.pid, str(self._exit_path(job.id))):
                self._processes[job.id] = _Process(pid=job.pid)
                continue
            code = self._exit_code(job.id)
            if code is None:
                self.store.update(job.id, status=INTERRUPTED, finished=time.time(), pid=None,
                                  error="the app stopped while the job ran and its process is gone; resume it")
            else:
                self._finish(job, code)

    def _loop(self) -> None:
        while not self._closing.is_set():
            try:
                self.tick()
            except Exception:  # the loop must survive anything one job does; the job's row says what
                log.exception("job runner tick failed")
            self._wake.wait(self.poll_s)
            self._wake.clear()

    # -- actions ---------------------------------------------------------------------------------

    def submit(self, request: AppJobRequest) -> AppJob:
        job = AppJob(id=uuid.uuid4().hex[:12], kind=request.kind, target=request.target,
                  request=request.model_dump(mode="json"), argv=request.argv(), status=QUEUED, created=time.time())
        self.store.insert(job)
        self._wake.set()
        return job

    def get(self, job_id: str) -> AppJob:
        return self.store.get(job_id)

    def list(self, limit: int = 200) -> list[AppJob]:
        return self.store.list(limit=limit)

    def stop(self, job_id: str) -> AppJob:
        with self._lock:
            job = self.store.get(job_id)
            if job.status == QUEUED:
                return self.store.update(job_id, status=STOPPED, finished=time.time(), error="stopped before it started")
            if job.status != RUNNING or job_id not in self._processes:
                raise JobError(f"job {job_id} is {job.status}: only a queued or running job can be stopped")
            self._signal(job_id)
            return self.store.update(job_id, stop_requested=1)

    def resume(self, job_id: str) -> AppJob:
        """Run the job's command again (without ``--overwrite``): it continues where it stopped."""
        with self._lock:
            job = self.store.get(job_id)
            if job.status not in RESUMABLE:
                raise JobError(f"job {job_id} is {job.status}: only a stopped, failed or interrupted job can be resumed")
            request = REQUESTS[job.kind].model_construct(**job.request)
            argv = request.argv(resume=True)
            with open(self.log_path(job_id), "a") as f:
                f.write(f"--- resumed at {time.strftime('%Y-%m-%d %H:%M:%S')}: vitalflow {' '.join(argv)}\n")
            job = self.store.update(job_id, status=QUEUED, argv=argv, finished=None, exit_code=None, error=None,
                                    stop_requested=0, pid=None)
        self._wake.set()
        return job

    def log_tail(self, job_id: str, lines: int = 200) -> list[str]:
        """The last ``lines`` lines of the job's log, redacted."""
        path = self.log_path(job_id)
        self.store.get(job_id)
        if not path.exists():
            return []
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 256 * 1024))
            text = f.read().decode("utf-8", "replace")
        return [self.redact(line) for line in text.splitlines()[-lines:]]

    # -- the loop's work -------------------------------------------------------------------------

    def tick(self) -> None:
        with self._lock:
            for job_id, process in list(self._processes.items()):
                self._read_log(job_id, process)
                code = self._ended(job_id, process)
                if code is not None:
                    del self._processes[job_id]
                    self._read_log(job_id, process)
                    self._finish(self.store.get(job_id), code, process.progress)
            if self._closing.is_set():
                return
            running = len(self._processes)
            for job in reversed(self.store.list(status=(QUEUED,), limit=10_000)):  # oldest first
                if job.target == "local" and running >= self.max_running:
                    continue
                self._launch(job)
                running += job.target == "local"

    def _launch(self, job: AppJob) -> None:
        exit_file = self._exit_path(job.id)
        exit_file.unlink(missing_ok=True)
        command = [self.python, "-m", "vitalflow.api.supervise", str(exit_file), "--",
                   self.python, "-m", "vitalflow", *job.argv]
        env = {k: v for k, v in os.environ.items() if k != "VITALFLOW_APP_TOKEN"}
        env.update(PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="3", VITALFLOW_LOG_FORMAT="json")  # parse_line
        if self.settings.mlflow:
            env["MLFLOW_TRACKING_URI"] = self.settings.mlflow
        log_file = open(self.log_path(job.id), "ab")
        try:
            log_file.write(f"$ {job.command()}\n".encode())
            log_file.flush()
            popen = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                     env=env, cwd=str(self.settings.state_dir), start_new_session=True)
        except OSError as exc:
            self.store.update(job.id, status=FAILED, finished=time.time(), error=self.redact(f"could not start: {exc}"))
            return
        finally:
            log_file.close()
        offset = self.log_path(job.id).stat().st_size if job.attempts else 0
        self._processes[job.id] = _Process(pid=popen.pid, popen=popen, offset=0 if not job.attempts else offset,
                                           progress=dict(job.progress) if job.attempts else {})
        self.store.update(job.id, status=RUNNING, pid=popen.pid, started=time.time(), attempts=job.attempts + 1)

    def _signal(self, job_id: str) -> None:
        process = self._processes.get(job_id)
        if process is None:
            return
        try:
            os.kill(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        process.stop_sent = process.stop_sent or time.monotonic()

    def _ended(self, job_id: str, process: _Process) -> Optional[int]:
        if process.popen is not None:
            code = process.popen.poll()
            if code is None:
                return None
            recorded = self._exit_code(job_id)
            return recorded if recorded is not None else code
        if _alive(process.pid, str(self._exit_path(job_id))):
            return None
        code = self._exit_code(job_id)
        return code if code is not None else -1

    def _exit_code(self, job_id: str) -> Optional[int]:
        try:
            return int(self._exit_path(job_id).read_text().strip())
        except (OSError, ValueError):
            return None

    def _read_log(self, job_id: str, process: _Process) -> None:
        path = self.log_path(job_id)
        try:
            with open(path, "rb") as f:
                f.seek(process.offset)
                data = f.read()
        except OSError:
            return
        end = data.rfind(b"\n")
        if end < 0:
            return
        process.offset += end + 1
        before = json.dumps(process.progress, sort_keys=True)
        for line in data[: end + 1].decode("utf-8", "replace").splitlines():
            parse_line(line, process.progress)
        if json.dumps(process.progress, sort_keys=True) != before:
            self.store.update(job_id, progress=process.progress)

    def _finish(self, job: AppJob, code: int, progress: Optional[dict] = None) -> None:
        progress = dict(progress if progress is not None else job.progress)
        error = progress.pop("error", None)
        sagemaker_job = progress.pop("sagemaker_job", None)
        if code == 0:
            status = SUBMITTED if job.target == "sagemaker" else SUCCEEDED
            error = None
        elif code == EXIT_STOPPED or (job.stop_requested and code == -signal.SIGTERM):
            # exit 75 is the graceful stop; SIGTERM before the command set its handlers (still starting)
            # kills it outright, which every command survives as well (a rerun resumes)
            status = STOPPED
        elif code < 0 and job.target == "local" and code == -1 and self._exit_code(job.id) is None:
            status, error = INTERRUPTED, "the job's process is gone and left no exit code; resume it"
        else:
            status = FAILED
            if code < 0:
                name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
                error = error or f"killed by {name}"
            error = error or f"exit code {code}"
        self.store.update(job.id, status=status, exit_code=code, finished=time.time(), pid=None,
                          progress=progress, error=self.redact(error) if error else None,
                          sagemaker_job=sagemaker_job or job.sagemaker_job)


def _alive(pid: int, marker: str) -> bool:
    """Whether ``pid`` runs and is this job's supervisor (its command line names ``marker``, the
    job's exit file: a reused pid is another process)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().decode("utf-8", "replace")
    except OSError:
        return False
    if marker not in cmdline:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True
