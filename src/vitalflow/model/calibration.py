"""Temperature scaling of the decision model's probabilities (pure numpy).

After training, each event and direction label gets one temperature ``T`` fitted on the
validation split: the ``T`` in [``T_MIN``, ``T_MAX``] that minimizes the mean negative
log-likelihood of ``sigmoid(logit / T)`` over the label's unmasked windows (a golden-section search
over ``log T``; the NLL is unimodal in it). The predictor reports ``sigmoid(logit / T)``. A label
with fewer than ``MIN_WINDOWS`` unmasked windows, or only one class among them, keeps ``T = 1``.
Temperatures rescale confidence and never change the ranking (AUPRC, AUROC).

The expected calibration error (`vitalflow.scores.ece` with ``BINS`` equal-width bins of the probability, the mean
over the windows of |mean probability - positive rate| of each window's bin) is reported per label
before and after.

>>> z = np.tile([-4.0, -2.0, 2.0, 4.0, 3.0, -3.0], 5); y = np.tile([0, 1, 1, 1, 0, 0], 5)
>>> t = fit_temperature(z, y)  # over-confident logits: T > 1 softens them
>>> 1 < t < T_MAX and nll(z / t, y) < nll(z, y)
True
>>> fit_temperature(z[:6], y[:6])  # too few windows to tell
1.0
"""

from __future__ import annotations

import math

import numpy as np

T_MIN, T_MAX = 0.05, 20.0
MIN_WINDOWS = 20
BINS = 10


def sigmoid(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -z))


def nll(z: np.ndarray, y: np.ndarray) -> float:
    """The mean binary cross-entropy of logits ``z`` against 0/1 ``y``."""
    z = np.asarray(z, dtype=np.float64)
    return float(np.mean(y * np.logaddexp(0.0, -z) + (1 - y) * np.logaddexp(0.0, z)))


def fit_temperature(z: np.ndarray, y: np.ndarray, iterations: int = 80) -> float:
    """The ``T`` minimizing ``nll(z / T, y)`` (1 when the data cannot tell: see the module docstring)."""
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if z.size < MIN_WINDOWS or y.min() == y.max():
        return 1.0
    a, b = math.log(T_MIN), math.log(T_MAX)
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(z / math.exp(c), y), nll(z / math.exp(d), y)
    for _ in range(iterations):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(z / math.exp(c), y)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(z / math.exp(d), y)
    t = math.exp((a + b) / 2)
    return float(t) if nll(z / t, y) <= nll(z, y) else 1.0


def fit_platt(z: np.ndarray, y: np.ndarray, iterations: int = 50) -> tuple[float, float]:
    """Platt scaling: the ``(a, b)`` minimizing ``nll(a z + b, y)`` (Newton's method on the two
    parameters, a logistic regression on one feature), with ``a`` kept in [1 / ``T_MAX``, 1 / ``T_MIN``]
    so that it never reverses or flattens the ranking; ``(1, 0)`` when the data cannot tell (as
    `fit_temperature`). Unlike a temperature it also moves the logits, which a score whose base
    rate is off (a classifier trained with weighted positives) needs.

    >>> z = np.linspace(-3, 3, 400); y = (np.random.default_rng(0).random(400) < sigmoid(2 * z - 1)).astype(float)
    >>> a, b = fit_platt(z, y); bool(1.3 < a < 3 and -1.6 < b < -0.4)
    True
    """
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if z.size < MIN_WINDOWS or y.min() == y.max():
        return 1.0, 0.0
    x = np.stack([z, np.ones_like(z)], axis=1)
    w = np.array([1.0, 0.0])
    for _ in range(iterations):
        p = sigmoid(x @ w)
        hessian = (x * (p * (1 - p))[:, None]).T @ x + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, x.T @ (p - y))
        w = w - step
        w[0] = min(max(w[0], 1 / T_MAX), 1 / T_MIN)
        if np.max(np.abs(step)) < 1e-10:
            break
    return (float(w[0]), float(w[1])) if nll(x @ w, y) <= nll(z, y) else (1.0, 0.0)


def apply_temperatures(raw: np.ndarray, columns: np.ndarray, temperatures: np.ndarray) -> np.ndarray:
    """``sigmoid(raw[:, columns] / temperatures)`` ([N, len(columns)])."""
    return sigmoid(np.asarray(raw, np.float64)[:, columns] / np.asarray(temperatures, np.float64)[None, :])
