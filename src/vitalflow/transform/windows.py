"""Sliding windows over a case's 1 Hz series and the target seconds that go with them.

A window starting at second ``s`` covers seconds ``s .. s + length - 1``; its target is the value
``horizon`` seconds after the window's last second, at ``s + length - 1 + horizon``.
"""

from __future__ import annotations

import numpy as np


def window_count(n_seconds: int, length: int, step: int, horizon: int) -> int:
    """Number of windows whose input and target both fit in ``n_seconds``.

    >>> window_count(330, 300, 30, 30), window_count(329, 300, 30, 30), window_count(400, 300, 30, 30)
    (1, 0, 3)
    """
    span = length + horizon
    return 0 if n_seconds < span else (n_seconds - span) // step + 1


def window_starts(n_seconds: int, length: int, step: int, horizon: int) -> np.ndarray:
    """First second of every window, in order.

    >>> window_starts(400, 300, 30, 30)
    array([ 0, 30, 60])
    """
    return np.arange(window_count(n_seconds, length, step, horizon), dtype=np.int64) * step


def target_seconds(starts: np.ndarray, length: int, horizon: int) -> np.ndarray:
    """The second each window's target is read from.

    >>> target_seconds(np.array([0, 30]), 300, 30)
    array([329, 359])
    """
    return starts + (length - 1 + horizon)
