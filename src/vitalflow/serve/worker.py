"""The job workers: N processes, each loading the model once and running jobs from the queue.

`WorkerSupervisor` starts the workers with the ``spawn`` context (a fresh interpreter: TensorFlow
is never forked, and the server process never imports it) from one supervising thread, restarts
a worker that dies, and expires the dead worker's lease at once so its job is taken again
(by a restarted worker; a job whose workers keep dying fails after ``max_attempts``). Workers
die with the server (``PR_SET_PDEATHSIG``): a killed server leaves no worker behind, and the
next server expires the leases its predecessor's workers held (lease owners name the server's
host and process id).

A worker, per job: a heartbeat thread extends the lease every ``lease_s / 3`` seconds; when the
heartbeat is refused (the job was cancelled, or the lease went to another worker) the worker
drops the job at its next checkpoint (after the read, after the model) and writes nothing; when
the job runs past ``job_timeout_s`` the heartbeat thread fails it with the reason, notifies, and
ends the worker process (the only way to stop a model call midway; the supervisor starts another).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field

from vitalflow.serve.queue import Claim, JobQueue
from vitalflow.serve.settings import ServeSettings

log = logging.getLogger("vitalflow.serve")
TIMEOUT_EXIT = 70  # a worker that ended itself because its job ran past job_timeout_s


def owner_prefix() -> str:
    """Lease owners of this server: ``<host>:<server pid>:``."""
    return f"{socket.gethostname()}:{os.getpid()}:"


def _owner_alive(owner: str) -> bool:
    """Whether the server that holds a lease may still run (another host's: assume it does)."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    if int(pid) == os.getpid():
        return True  # ours: the supervisor releases its own dead workers' leases itself
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- the worker process ----------------------------------------------------------------------
def _notify(settings: ServeSettings, queue: JobQueue, job_id: str, worker_id: str) -> None:
    from vitalflow.serve.jobs import status_doc
    from vitalflow.serve.notify import notify

    job = queue.get(job_id)
    if job is None or job.lease_owner != worker_id:
        return
    notify(status_doc(job), settings.webhook, settings.sns_success_topic, settings.sns_error_topic)
    queue.notified(job_id, worker_id)


def _fail(settings: ServeSettings, queue: JobQueue, claim: Claim, worker_id: str, reason: str) -> None:
    from vitalflow.serve.jobs import write_failure

    if not queue.fail(claim.job.job_id, worker_id, reason):
        return  # no longer ours (cancelled, or another worker has it)
    try:
        write_failure(settings, queue.get(claim.job.job_id), reason)
    except Exception as exc:  # noqa: BLE001 - the job failed either way; the status says why
        log.warning("job %s: failure document not written (%s)", claim.job.job_id, type(exc).__name__)
    _notify(settings, queue, claim.job.job_id, worker_id)


class _Heartbeat(threading.Thread):
    def __init__(self, settings: ServeSettings, queue: JobQueue, claim: Claim, worker_id: str):
        super().__init__(name="vitalflow-heartbeat", daemon=True)
        self.settings, self.queue, self.claim, self.worker_id = settings, queue, claim, worker_id
        self.lost, self.done = threading.Event(), threading.Event()
        self.started_at = time.monotonic()

    def run(self) -> None:
        every = max(0.05, min(self.settings.lease_s / 3, 10.0))  # heartbeats
        tick = min(every, max(0.05, self.settings.job_timeout_s / 10), 1.0)  # timeout checks
        job_id = self.claim.job.job_id
        next_beat = time.monotonic() + every
        while not self.done.wait(tick):
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + every
                try:
                    if not self.queue.heartbeat(job_id, self.worker_id):
                        self.lost.set()
                        return
                except Exception as exc:  # noqa: BLE001 - a busy database: try again at the next beat
                    log.warning("job %s: heartbeat failed (%s)", job_id, type(exc).__name__)
            if time.monotonic() - self.started_at > self.settings.job_timeout_s:
                reason = (f"the job took longer than the job timeout of {self.settings.job_timeout_s:g} s "
                          "(MODEL_SERVER_TIMEOUT)")
                _fail(self.settings, self.queue, self.claim, self.worker_id, reason)
                os._exit(TIMEOUT_EXIT)  # stops the model call; the supervisor starts another worker


def run_claim(settings: ServeSettings, queue: JobQueue, predictor, claim: Claim, worker_id: str) -> str:
    """Do what a claim asks; what became of the job (for logs and tests)."""
    from vitalflow.serve.jobs import Abandoned, failure_reason, remove_outputs, run_job, write_failure

    job = claim.job
    if claim.kind == "notify":  # finished by a worker that died before notifying
        if job.status == "Failed":
            try:
                write_failure(settings, job, job.error or "failed")
            except Exception:  # noqa: BLE001
                pass
        _notify(settings, queue, job.job_id, worker_id)
        return "notified"
    beat = _Heartbeat(settings, queue, claim, worker_id)
    beat.start()
    try:
        try:
            result = run_job(settings, predictor, job, still_mine=lambda: not beat.lost.is_set())
        except Abandoned:
            return "abandoned"
        except Exception as exc:  # noqa: BLE001 - the job fails with the reason; the worker goes on
            beat.done.set()
            _fail(settings, queue, claim, worker_id, failure_reason(exc))
            return "failed"
        beat.done.set()
        if queue.complete(job.job_id, worker_id, result):
            _notify(settings, queue, job.job_id, worker_id)
            return "completed"
        now = queue.get(job.job_id)
        if now is not None and now.status == "Cancelled":
            remove_outputs(settings, job.job_id)
        return "abandoned"
    finally:
        beat.done.set()


def worker_main(settings: ServeSettings, worker_id: str, parent_pid: int, stop, ready, poll_s: float) -> None:
    """A worker process: load the model once, then claim and run jobs until ``stop`` is set."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when workers stop
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    from vitalflow.runtime.pool import _die_with_parent

    _die_with_parent()
    if os.getppid() != parent_pid:  # the server died before we could ask to die with it
        os._exit(0)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from vitalflow.model.predictor import load_model
    from vitalflow.registry.resolve import resolve_model

    queue = JobQueue(settings.database, settings.lease_s, settings.max_attempts)
    predictor = load_model(resolve_model(settings.model))
    ready.set()
    while not stop.is_set():
        try:
            claim = queue.claim(worker_id)
        except Exception as exc:  # noqa: BLE001 - a locked or busy database: try again shortly
            log.warning("worker %s: claim failed (%s)", worker_id, type(exc).__name__)
            claim = None
        if claim is None:
            stop.wait(poll_s)
            continue
        outcome = run_claim(settings, queue, predictor, claim, worker_id)
        log.info("worker %s: job %s %s", worker_id, claim.job.job_id, outcome)


# -- the supervisor --------------------------------------------------------------------------
@dataclass
class _Slot:
    index: int
    generation: int = 0
    process: multiprocessing.process.BaseProcess | None = None
    ready: object = None
    worker_id: str = ""
    started: float = 0.0
    deaths: list[float] = field(default_factory=list)


class WorkerSupervisor:
    """``start()`` the ``settings.workers`` worker processes (and keep them running); ``stop()``."""

    def __init__(self, settings: ServeSettings, poll_s: float = 0.2, check_s: float = 0.2):
        self.settings, self.poll_s, self.check_s = settings, poll_s, check_s
        self._context = multiprocessing.get_context("spawn")
        self._stop = self._context.Event()
        self._stopping = threading.Event()
        self._slots = [_Slot(i) for i in range(settings.workers)]
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.restarts = 0
        self.queue = JobQueue(settings.database, settings.lease_s, settings.max_attempts)

    def start(self) -> None:
        if self._thread is not None:
            return
        released = self.queue.release_owners(socket.gethostname() + ":", _owner_alive)
        if released:
            log.warning("%d job(s) held by the workers of a server that is gone are taken again", released)
        self._thread = threading.Thread(target=self._supervise, name="vitalflow-supervisor", daemon=True)
        self._thread.start()

    def _spawn(self, slot: _Slot) -> None:
        slot.generation += 1
        slot.worker_id = f"{owner_prefix()}w{slot.index}.{slot.generation}"
        slot.ready = self._context.Event()
        slot.process = self._context.Process(
            target=worker_main, name=f"vitalflow-job-worker-{slot.index}", daemon=True,
            args=(self.settings, slot.worker_id, os.getpid(), self._stop, slot.ready, self.poll_s))
        slot.started = time.monotonic()
        slot.process.start()

    def _supervise(self) -> None:
        # Workers are started from this thread only: PR_SET_PDEATHSIG fires when the thread that
        # started a process ends, and this thread lives as long as the supervisor.
        with self._lock:
            for slot in self._slots:
                self._spawn(slot)
        while not self._stopping.wait(self.check_s):
            with self._lock:
                for slot in self._slots:
                    if slot.process is None or slot.process.is_alive() or self._stopping.is_set():
                        continue
                    code = slot.process.exitcode
                    slot.process.join()
                    now = time.monotonic()
                    slot.deaths = [t for t in slot.deaths if now - t < 60] + [now]
                    if len(slot.deaths) > 5 and now - slot.started < 5:
                        continue  # dying at start-up again and again (the model does not load?): wait
                    how = f"signal {-code}" if code and code < 0 else f"exit code {code}"
                    log.warning("job worker %s ended (%s): restarting it", slot.worker_id, how)
                    self.queue.release_owners(slot.worker_id, lambda owner, dead=slot.worker_id: owner != dead)
                    self.restarts += 1
                    self._spawn(slot)

    def ready(self) -> bool:
        """Every worker has loaded the model."""
        return all(s.ready is not None and s.ready.is_set() and s.process is not None and s.process.is_alive()
                   for s in self._slots)

    def wait_ready(self, timeout_s: float = 120.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.ready():
                return True
            time.sleep(0.1)
        return False

    def pids(self) -> list[int]:
        return [s.process.pid for s in self._slots if s.process is not None and s.process.is_alive()]

    def stop(self, grace_s: float = 10.0) -> None:
        """Ask the workers to stop after their current job, wait ``grace_s``, then kill the rest
        (their jobs are taken again by the next server: nothing is lost)."""
        self._stopping.set()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        deadline = time.monotonic() + grace_s
        for slot in self._slots:
            if slot.process is not None:
                slot.process.join(max(0.0, deadline - time.monotonic()))
                if slot.process.is_alive():
                    slot.process.kill()
                    slot.process.join()
        self._thread = None
