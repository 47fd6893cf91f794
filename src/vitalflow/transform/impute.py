"""Causal imputation: carry the last observation forward for a while, else use defaults.

Only the past is used: the value at second ``t`` depends on observations at seconds ``<= t``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from vitalflow.spec.model import Impute

OBSERVED, FILLED, DEFAULTED = 0, 1, 2


class Imputed(NamedTuple):
    values: np.ndarray  # float64, no NaN
    state: np.ndarray  # int8: OBSERVED, FILLED or DEFAULTED per second


def impute(values: np.ndarray, rule: Impute) -> Imputed:
    """Fill NaN seconds of ``values`` following ``rule``.

    A value is carried while the last observation is at most ``rule.carry_s`` seconds old
    (the gap fill, then the hold after the last value); after that ``after_last_value`` is used,
    and before the first observation ``before_first_value``.

    >>> rule = Impute(before_first_value=-1, max_gap_s=2, hold_after_last_s=0, after_last_value=0)
    >>> r = impute(np.array([np.nan, 5.0, np.nan, np.nan, np.nan, 7.0]), rule)
    >>> r.values
    array([-1.,  5.,  5.,  5.,  0.,  7.])
    >>> r.state
    array([2, 0, 1, 1, 2, 0], dtype=int8)
    """
    n = values.shape[0]
    observed = ~np.isnan(values)
    seconds = np.arange(n)
    last = np.maximum.accumulate(np.where(observed, seconds, -1)) if n else seconds
    age = seconds - last
    filled = ~observed & (last >= 0) & (age <= rule.carry_s)
    before = last < 0
    after = ~observed & ~filled & ~before

    out = np.empty(n)
    out[observed] = values[observed]
    out[filled] = values[last[filled]]
    out[before] = rule.before_first_value
    out[after] = rule.after_last_value
    state = np.full(n, DEFAULTED, dtype=np.int8)
    state[observed] = OBSERVED
    state[filled] = FILLED
    return Imputed(out, state)
