"""Event times of a case, in seconds from the start of the recording.

Induction (``anestart``), intubation, incision, drugs off, end of surgery, extubation and
``aneend``; the arterial line when the case has one. Short recordings scale the gaps between
events down (``fs``, ``fl``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitalflow.synth.patient import Flags

# names of the EVENT track entries, in timeline order
EVENTS = ("Induction", "Intubation", "A-line", "Incision", "Surgery end", "Extubation")


@dataclass(frozen=True)
class Timeline:
    """Event times in seconds from the recording start (``anestart`` < 0: started after induction)."""

    total: float  # recording length (s)
    anestart: float
    aneend: float
    intub: float
    opstart: float
    stop: float  # pumps and sevoflurane off
    opend: float
    extub: float
    artline: float | None
    fs: float  # time scale for minute-long steps (1 unless the case is short)
    fl: float  # time scale for tens-of-minutes steps


def draw_timeline(rng: np.random.Generator, case_id: int, hours: float | None, f: Flags) -> Timeline:
    """Recording length (drawn, or ``hours``) and event times; ``id % 10 == 3`` starts after induction."""
    pre, post = rng.uniform(10, 30, 2) * 60
    if hours is None:
        dur = float(np.clip(np.exp(rng.normal(np.log(150 * 60), 0.28)), 90 * 60, 240 * 60))
        total = float(round(pre + dur + post))
    else:
        total = float(round(hours * 3600))
        shrink = min(1.0, 0.35 * total / (pre + post))
        pre, post = pre * shrink, post * shrink
    anestart, aneend = pre, total - post
    u = rng.random(12)
    fl = min(1.0, (aneend - anestart) / 5400)
    if case_id % 10 == 3:  # the recording started after induction
        anestart = -(2 + 8 * u[0]) * 60 * fl
    dur = aneend - anestart
    fs, fl = min(1.0, dur / 1800), min(1.0, dur / 5400)
    intub = anestart + (2 + 4 * u[1]) * 60 * fs
    extub = aneend - (1 + 4 * u[2]) * 60 * fs
    stop = extub - (5 + 10 * u[3]) * 60 * fs
    opstart = intub + (10 + 20 * u[4]) * 60 * fl
    stop = max(stop, intub + 0.5 * (extub - intub))
    opstart = min(opstart, intub + 0.3 * (stop - intub))
    opend = min(stop + (5 * u[5]) * 60 * fs, extub - 30 * fs)
    artline = None
    if f.art:
        artline = max(anestart + (10 + 30 * u[6]) * 60 * fl, intub + 60 * fs)
    return Timeline(total, anestart, aneend, intub, opstart, stop, opend, extub, artline, fs, fl)
