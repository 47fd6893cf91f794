"""Worker processes: for cases in a run, and for the checks of `verify`.

Workers ignore SIGINT/SIGTERM (the main process decides when to stop) and die with the main
process (Linux ``PR_SET_PDEATHSIG``), so a killed run never leaves orphans computing.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import signal
from concurrent.futures import Future, ProcessPoolExecutor

_PR_SET_PDEATHSIG = 1


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

    def kill(self) -> None:
        """Kill the workers, then shut the executor down; its manager thread sees the dead workers
        and ends, so nothing is left for the interpreter to wait for at exit.

        A worker killed halfway through sending a result leaves the manager thread blocked reading
        the rest, which would never come while this process holds the pipe's write end too: closing
        that end turns the wait into an end of file, which the thread handles as a broken pool.
        """
        executor = self._executor
        processes = list((executor._processes or {}).values())  # no public way to abandon work
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
