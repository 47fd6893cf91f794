"""Worker processes: for cases in a run, and for the checks of `verify`.

Workers ignore SIGINT/SIGTERM (the main process decides when to stop) and die with the main
process (Linux ``PR_SET_PDEATHSIG``), so a killed run never leaves orphans computing.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import resource
import signal
import time
from concurrent.futures import Future, ProcessPoolExecutor

_PR_SET_PDEATHSIG = 1


def _running(pid: int | None) -> bool:
    """Whether the process still runs (a zombie, dead but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def peak_rss_mb(pid: int | str = "self") -> float:
    """A process's peak resident memory in MB (VmHWM; ``ru_maxrss`` would include a pre-exec
    parent); 0 for a process that is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError):
        return 0.0
    if pid == "self":  # no /proc (not Linux)
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return 0.0


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: orphans finish their case and exit with the pool
        pass


def _init_worker(initializer, initargs) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    if initializer is not None:
        initializer(*initargs)


class WorkerPool:
    """``submit`` returns futures; ``kill`` abandons everything in flight at once."""

    def __init__(self, workers: int, initializer=None, initargs: tuple = ()):
        self.workers = workers
        self._executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_init_worker,
            initargs=(initializer, initargs),
        )

    def submit(self, fn, *args) -> Future:
        return self._executor.submit(fn, *args)

    def _processes(self) -> list:
        return list((self._executor._processes or {}).values())  # no public way to see the workers

    def peak_rss_mb(self) -> float:
        """The largest peak resident memory of the live workers; sampled often, it is the truth even
        for a worker the kernel kills later."""
        return max((peak_rss_mb(p.pid) for p in self._processes() if p.pid), default=0.0)

    def deaths(self) -> list[str]:
        """How the workers that are no longer alive ended, e.g. ``"pid 123 killed by SIGKILL
        (the kernel's out-of-memory killer sends it)"`` or ``"pid 123 exited with code 1"``.

        Called when the pool broke. The executor's manager thread reaps the dead worker at the same
        moment; a reader that loses that race sees no exit code for up to a moment, so a worker
        whose process has ended is read again for up to a second."""
        out = []
        deadline = time.monotonic() + 1.0
        for p in self._processes():
            code = p.exitcode
            while code is None and not _running(p.pid) and time.monotonic() < deadline:
                time.sleep(0.02)
                code = p.exitcode
            if not code:  # alive, or a clean exit (the executor stops the others when one dies)
                continue
            if code < 0:
                name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
                hint = " (the kernel's out-of-memory killer sends it)" if -code == signal.SIGKILL else ""
                out.append(f"pid {p.pid} killed by {name}{hint}")
            else:
                out.append(f"pid {p.pid} exited with code {code}")
        return out

    def kill(self) -> None:
        """Kill the workers, then shut the executor down; its manager thread sees the dead workers
        and ends, so nothing is left for the interpreter to wait for at exit.

        A worker killed halfway through sending a result leaves the manager thread blocked reading
        the rest, which would never come while this process holds the pipe's write end too: closing
        that end turns the wait into an end of file, which the thread handles as a broken pool.
        """
        executor = self._executor
        processes = self._processes()
        for p in processes:
            p.kill()
        for p in processes:
            p.join()
        writer = getattr(getattr(executor, "_result_queue", None), "_writer", None)
        if writer is not None:
            writer.close()
        executor.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
