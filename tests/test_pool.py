"""The worker pool: killing it never hangs, even when a worker dies halfway through sending a result."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from vitalflow.runtime.pool import WorkerPool

RESULT_BYTES = 256 << 20  # far beyond a pipe's 64 KiB: the worker sends it in many writes


def _nothing() -> None:
    pass


def _large_result(n: int) -> bytes:
    return b"x" * n


def _bytes_read() -> int:
    """Bytes this process has read so far (the pool's manager thread reads results in 64 KiB pieces)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_kill_while_a_result_is_half_sent_returns():
    """A worker killed while the pool's manager thread reads its result used to leave that thread
    blocked forever on the pipe (and the interpreter with it, at exit). The kill comes once this
    process has read 16 MiB of the 256 MiB result (/proc/self/io)."""
    pool = WorkerPool(1, _nothing, ())
    pool.submit(_nothing).result()
    start = _bytes_read()
    future = pool.submit(_large_result, RESULT_BYTES)
    deadline = time.monotonic() + 30
    while _bytes_read() - start < 16 << 20:
        assert time.monotonic() < deadline, "the worker never started sending"
        time.sleep(0.001)
    assert not future.done()  # half sent
    done = threading.Event()
    threading.Thread(target=lambda: (pool.kill(), done.set()), daemon=True).start()
    assert done.wait(20.0), "WorkerPool.kill hung"
    assert future.done()


def test_close_after_normal_work():
    pool = WorkerPool(2, _nothing, ())
    assert [pool.submit(_large_result, 3).result() for _ in range(4)] == [b"xxx"] * 4
    pool.close()
