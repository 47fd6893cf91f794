"""Pharmacokinetic models and a target-controlled infusion (TCI) pump, as VitalDB's Orchestra runs.

Pure functions and a small pump object; no random draws. Units: volumes in L, clearances in
L/min, rate constants in 1/min; amounts in mg (propofol) or ug (remifentanil), so a concentration
amount / L is ug/mL (propofol) or ng/mL (remifentanil), the units Orchestra shows.

The models (three mammillary compartments plus an effect site linked to the central one by
``ke0``)::

    dA1/dt = I - (k10 + k12 + k13) A1 + k21 A2 + k31 A3
    dA2/dt = k12 A1 - k21 A2
    dA3/dt = k13 A1 - k31 A3
    dCe/dt = ke0 (A1 / V1 - Ce)

with ``k10 = Cl1/V1, k12 = Cl2/V1, k21 = Cl2/V2, k13 = Cl3/V1, k31 = Cl3/V3``; ``Cp = A1 / V1``.

- `schnider`: propofol. Schnider TW, Minto CF, Gambus PL, et al. The influence of method of
  administration and covariates on the pharmacokinetics of propofol in adult volunteers.
  Anesthesiology 1998;88:1170-82; ke0 0.456/min from Schnider TW, Minto CF, Shafer SL, et al.
  The influence of age on propofol pharmacodynamics. Anesthesiology 1999;90:1502-16.
- `minto`: remifentanil. Minto CF, Schnider TW, Egan TD, et al. Influence of age and gender on
  the pharmacokinetics and pharmacodynamics of remifentanil. I. Model development.
  Anesthesiology 1997;86:10-23.
- `james_lbm`: lean body mass, James WPT. Research on obesity. London: HMSO, 1976.
- `TciPump`: effect-site targeting in the manner of Shafer SL, Gregg KM. Algorithms to rapidly
  achieve and maintain stable drug concentrations at the site of drug effect with a
  computer-controlled infusion pump. J Pharmacokinet Biopharm 1992;20:147-69: every control step
  (10 s) the pump picks the constant rate for the step whose effect-site peak, with nothing
  given afterwards, just reaches the target. After a target increase that is a bolus-like
  high rate (often the maximum), after a decrease it is 0 until Ce has fallen to the target,
  and in between it tracks the target.

The models are adult models: the synthetic world runs TCI only in adults (children stay on
manual rates, as Orchestra would use paediatric models for them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAX_RATE_ML_H = 1200.0  # Orchestra's maximum infusion rate
CONTROL_S = 10  # the pump's control step (s): the rate is constant within a step
HORIZON_S = 1200  # how far ahead the pump looks for the effect-site peak


@dataclass(frozen=True)
class PKModel:
    """A three-compartment model with an effect site (volumes L, clearances L/min, ke0 1/min)."""

    name: str
    v1: float
    v2: float
    v3: float
    cl1: float
    cl2: float
    cl3: float
    ke0: float

    def matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """``(A, b)`` of ``dx/dt = A x + b I`` per minute, ``x = [A1, A2, A3, Ce]``, I in amount/min."""
        k10, k12, k13 = self.cl1 / self.v1, self.cl2 / self.v1, self.cl3 / self.v1
        k21, k31 = self.cl2 / self.v2, self.cl3 / self.v3
        a = np.array([
            [-(k10 + k12 + k13), k21, k31, 0.0],
            [k12, -k21, 0.0, 0.0],
            [k13, 0.0, -k31, 0.0],
            [self.ke0 / self.v1, 0.0, 0.0, -self.ke0],
        ])  # fmt: skip
        return a, np.array([1.0, 0.0, 0.0, 0.0])


def james_lbm(sex: str, weight: float, height: float) -> float:
    """Lean body mass (kg), James 1976: male ``1.1 W - 128 (W/H)^2``, female ``1.07 W - 148 (W/H)^2``
    (W kg, H cm). The formula falls again for very heavy patients; the weight is capped at the
    formula's maximum (W = 1.1 H^2 / 256, resp. 1.07 H^2 / 296) so LBM never decreases with weight."""
    if sex == "M":
        w = min(weight, 1.1 * height * height / 256)
        return 1.1 * w - 128 * (w / height) ** 2
    w = min(weight, 1.07 * height * height / 296)
    return 1.07 * w - 148 * (w / height) ** 2


def schnider(age: float, weight: float, height: float, sex: str) -> PKModel:
    """Propofol (Schnider 1998/1999): V1 4.27, V2 18.9 - 0.391 (age - 53), V3 238 L;
    Cl1 1.89 + 0.0456 (W - 77) - 0.0681 (LBM - 59) + 0.0264 (H - 177), Cl2 1.29 - 0.024 (age - 53),
    Cl3 0.836 L/min; ke0 0.456/min. LBM by `james_lbm`."""
    lbm = james_lbm(sex, weight, height)
    return PKModel(
        "Schnider", 4.27, 18.9 - 0.391 * (age - 53), 238.0,
        1.89 + 0.0456 * (weight - 77) - 0.0681 * (lbm - 59) + 0.0264 * (height - 177),
        1.29 - 0.024 * (age - 53), 0.836, 0.456,
    )  # fmt: skip


def minto(age: float, weight: float, height: float, sex: str) -> PKModel:
    """Remifentanil (Minto 1997): V1 5.1 - 0.0201 (age - 40) + 0.072 (LBM - 55),
    V2 9.82 - 0.0811 (age - 40) + 0.108 (LBM - 55), V3 5.42 L; Cl1 2.6 - 0.0162 (age - 40)
    + 0.0191 (LBM - 55), Cl2 2.05 - 0.0301 (age - 40), Cl3 0.076 - 0.00113 (age - 40) L/min;
    ke0 0.595 - 0.007 (age - 40)/min. LBM by `james_lbm`."""
    lbm = james_lbm(sex, weight, height)
    da, dl = age - 40, lbm - 55
    return PKModel(
        "Minto", 5.1 - 0.0201 * da + 0.072 * dl, 9.82 - 0.0811 * da + 0.108 * dl, 5.42,
        2.6 - 0.0162 * da + 0.0191 * dl, 2.05 - 0.0301 * da, 0.076 - 0.00113 * da, 0.595 - 0.007 * da,
    )  # fmt: skip


def expm(m: np.ndarray) -> np.ndarray:
    """Matrix exponential by scaling and squaring a Taylor series (small, well-conditioned matrices)."""
    norm = float(np.abs(m).sum(axis=1).max())
    k = max(0, int(np.ceil(np.log2(norm / 0.25))) if norm > 0.25 else 0)
    a = m / 2.0**k
    out = term = np.eye(m.shape[0])
    for j in range(1, 18):
        term = term @ a / j
        out = out + term
    for _ in range(k):
        out = out @ out
    return out


def discretize(model: PKModel, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
    """``(Phi, gamma)`` with ``x(t + dt) = Phi x(t) + gamma I`` for an input ``I`` (amount/min)
    held constant over ``dt_s`` seconds: exact (the exponential of the augmented matrix)."""
    a, b = model.matrix()
    aug = np.zeros((5, 5))
    aug[:4, :4], aug[:4, 4] = a, b
    e = expm(aug * (dt_s / 60.0))
    return e[:4, :4], e[:4, 4]


class TciPump:
    """An effect-site-targeting pump for one drug (``conc`` amount per mL; rates in mL/h).

    `rate` gives the rate for the next control step from the model state and the target;
    `step` advances the state over the step; `fill` rebuilds the 1 Hz Cp and Ce.
    """

    def __init__(self, model: PKModel, conc: float, max_rate: float = MAX_RATE_ML_H, step_s: int = CONTROL_S,
                 horizon_s: int = HORIZON_S):  # fmt: skip
        self.model, self.conc, self.max_rate, self.step_s = model, conc, max_rate, step_s
        self.phi, self.gamma = discretize(model, step_s)
        # Ce at the ends of the next J steps: free decay rows and the response to a unit input
        # (amount/min) during the first step only
        j = max(1, horizon_s // step_s)
        rows, resp = np.zeros((j, 4)), np.zeros(j)
        p, g = np.eye(4), self.gamma.copy()
        for i in range(j):
            p = self.phi @ p
            rows[i] = p[3]
            resp[i] = g[3]
            g = self.phi @ g
        keep = resp > 1e-12 * resp.max()
        self._rows, self._resp = rows[keep], resp[keep]
        # within-step propagators for the 1 Hz arrays
        phis, gams = zip(*(discretize(model, k) for k in range(step_s)))
        self._phis, self._gams = np.array(phis), np.array(gams)

    def rate(self, x: np.ndarray, target: float) -> float:
        """Rate (mL/h, 0.1 resolution, in [0, max]) for the next step: the largest constant rate
        whose effect-site concentration never exceeds ``target`` over the pump's horizon."""
        if target <= 0:
            return 0.0
        r = float(((target - self._rows @ x) / self._resp).min())  # amount/min
        mlh = math.floor(r * 600.0 / self.conc + 1e-9) / 10
        return min(max(mlh, 0.0), self.max_rate)

    def step(self, x: np.ndarray, rate_ml_h: float) -> np.ndarray:
        """State after one control step at ``rate_ml_h``."""
        return self.phi @ x + self.gamma * (rate_ml_h * self.conc / 60.0)

    def fill(self, xs: np.ndarray, rates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """1 Hz ``(Cp, Ce)`` from the states at step starts ``xs`` (steps x 4) and step rates (mL/h)."""
        u = rates * self.conc / 60.0
        # x(k) = Phi_k x0 + gamma_k u for k = 0..step_s-1 within each step
        a1 = np.einsum("kj,bj->bk", self._phis[:, 0, :], xs) + np.outer(u, self._gams[:, 0])
        ce = np.einsum("kj,bj->bk", self._phis[:, 3, :], xs) + np.outer(u, self._gams[:, 3])
        return a1.ravel() / self.model.v1, ce.ravel()
