"""TCI pumps of the synthetic world (decision-targets issue): the written Orchestra tracks follow
the published PK models, which this file writes down again from the papers (Schnider 1998/1999
for propofol, Minto 1997 for remifentanil, James 1976 for lean body mass) and integrates with
scipy's matrix exponential, independently of `vitalflow.synth.pk`.

Recordings are written and read back with `vitalflow.vital.read.read_vital`. Pump rates carry the
device artefacts every track has (runs of -1 or NaN); they are skipped (the previous rate holds).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import expm

from vitalflow.synth import case_state, synth_case
from vitalflow.vital.read import read_vital
from vitalflow.vital.write import write_vital

MAX_RATE = 1200.0  # mL/h
DRUGS = {"PPF20": (20.0, "PPF_CT"), "RFTN20": (20.0, "RFTN_CT"), "RFTN50": (50.0, "RFTN_CT")}
HOURS = 1.5


def _lbm(sex, w, h):
    # James 1976, weight capped at the formula's maximum (as the pump documents)
    if sex == "M":
        w = min(w, 1.1 * h * h / 256)
        return 1.1 * w - 128 * (w / h) ** 2
    w = min(w, 1.07 * h * h / 296)
    return 1.07 * w - 148 * (w / h) ** 2


def _model(drug, age, w, h, sex):
    """(V1, V2, V3, Cl1, Cl2, Cl3, ke0) in L, L/min, 1/min."""
    lbm = _lbm(sex, w, h)
    if drug == "PPF20":  # Schnider
        return (4.27, 18.9 - 0.391 * (age - 53), 238.0, 1.89 + 0.0456 * (w - 77) - 0.0681 * (lbm - 59) + 0.0264 * (h - 177),
                1.29 - 0.024 * (age - 53), 0.836, 0.456)  # fmt: skip
    return (5.1 - 0.0201 * (age - 40) + 0.072 * (lbm - 55), 9.82 - 0.0811 * (age - 40) + 0.108 * (lbm - 55), 5.42,
            2.6 - 0.0162 * (age - 40) + 0.0191 * (lbm - 55), 2.05 - 0.0301 * (age - 40), 0.076 - 0.00113 * (age - 40),
            0.595 - 0.007 * (age - 40))  # fmt: skip


def _one_second(params):
    v1, v2, v3, cl1, cl2, cl3, ke0 = params
    a = np.zeros((5, 5))  # [A1, A2, A3, Ce, input]; per minute
    a[0, :3] = [-(cl1 + cl2 + cl3) / v1, cl2 / v2, cl3 / v3]
    a[1, :2] = [cl2 / v1, -cl2 / v2]
    a[2, [0, 2]] = [cl3 / v1, -cl3 / v3]
    a[3, [0, 3]] = [ke0 / v1, -ke0]
    a[0, 4] = 1.0
    e = expm(a / 60.0)
    return e[:4, :4], e[:4, 4], v1


def _tci_recordings(tmp_path, want=4):
    """TCI cases (recordings with a *_CT track), read back; with their clinical rows."""
    out = []
    for case_id in range(1, 40):
        tracks, row, start, layout = synth_case(case_id, seed=7, hours=HOURS, waves=False)
        names = {t.dtname for t in tracks}
        if not any(f"Orchestra/{d}_CT" in names for d in DRUGS):
            continue
        path = tmp_path / f"{case_id:04d}.vital"
        write_vital(path, tracks, start, layout=layout)
        wanted = [f"Orchestra/{d}_{k}" for d in DRUGS for k in ("CT", "CP", "CE", "RATE")]
        out.append((case_id, read_vital(path, wanted), row))
        if len(out) == want:
            break
    assert len(out) == want
    return out


@pytest.fixture(scope="module")
def tci(tmp_path_factory):
    return _tci_recordings(tmp_path_factory.mktemp("tci"))


def _track(rec, name):
    t, v = rec.tracks[name]
    return np.asarray(t, dtype=np.float64), np.asarray(v, dtype=np.float64)


def test_some_cases_stay_on_manual_rates():
    """About a quarter of the pump cases run on manual rates: no target track then."""
    tci = manual = 0
    for case_id in range(1, 81):
        names = {t.dtname for t in synth_case(case_id, seed=5, hours=0.2, waves=False)[0]}
        for d in DRUGS:
            if f"Orchestra/{d}_RATE" in names:
                if f"Orchestra/{d}_CT" in names:
                    tci += 1
                else:
                    manual += 1
                    assert f"Orchestra/{d}_CE" not in names
    assert 0.15 <= manual / (tci + manual) <= 0.45, (tci, manual)


def test_written_concentrations_follow_the_model(tci):
    """Integrating the three-compartment model from the written RATE track (exact 1-s steps)
    reproduces the written CP and CE, up to the first unplugged gap of the pump."""
    checked = 0
    for case_id, rec, row in tci:
        for drug, (conc, _) in DRUGS.items():
            if f"Orchestra/{drug}_CT" not in rec.tracks:
                continue
            t, rate = _track(rec, f"Orchestra/{drug}_RATE")
            _, cp = _track(rec, f"Orchestra/{drug}_CP")
            _, ce = _track(rec, f"Orchestra/{drug}_CE")
            sec = np.rint(t).astype(np.int64)
            gap = np.flatnonzero(np.diff(sec) != 1)
            stop = gap[0] + 1 if gap.size else sec.size
            assert stop > 600, "a long enough gap-free start"
            assert cp[0] == 0 and ce[0] == 0  # the pump starts after the recording
            bad = ~np.isfinite(rate) | (rate < 0)  # device artefacts
            rate = rate.copy()
            for i in np.flatnonzero(bad):
                rate[i] = rate[i - 1] if i else 0.0
            phi, gam, v1 = _one_second(_model(drug, float(row["age"]), float(row["weight"]), float(row["height"]), row["sex"]))
            x = np.zeros(4)
            pred_cp, pred_ce = np.zeros(stop), np.zeros(stop)
            for i in range(stop):
                pred_cp[i], pred_ce[i] = x[0] / v1, x[3]
                x = phi @ x + gam * (rate[i] * conc / 60.0)
            tol = 0.02 + 0.01 * np.abs(cp[:stop])
            assert np.all(np.abs(pred_cp - cp[:stop]) <= tol), (case_id, drug, np.abs(pred_cp - cp[:stop]).max())
            assert np.all(np.abs(pred_ce - ce[:stop]) <= 0.02 + 0.01 * ce[:stop]), (case_id, drug)
            checked += 1
    assert checked >= 4


def test_rates_are_bounded_and_rounded(tci):
    at_max = 0
    for _, rec, _ in tci:
        for drug in DRUGS:
            if f"Orchestra/{drug}_RATE" not in rec.tracks:
                continue
            _, rate = _track(rec, f"Orchestra/{drug}_RATE")
            ok = np.isfinite(rate) & (rate != -1)  # -1 and NaN are the injected device artefacts
            assert rate[ok].min() >= 0 and rate[ok].max() <= MAX_RATE
            assert np.allclose(rate[ok], np.round(rate[ok], 1), atol=1e-3)
            at_max += bool((rate[ok] >= MAX_RATE - 0.05).any())
    assert at_max, "a propofol induction target is approached at the maximum rate"
    # and in the simulated state (no artefacts), over more cases
    for case_id in range(1, 21):
        s, _ = case_state(case_id, seed=8, hours=1.0)
        for drug in DRUGS:
            if drug in s:
                assert s[drug].min() >= 0 and s[drug].max() <= MAX_RATE


def _segments(t, ct):
    """(start time, previous target, target, end time) of each constant-target stretch."""
    ch = np.flatnonzero(np.abs(np.diff(ct)) > 0.01) + 1
    starts = np.concatenate([[0], ch])
    ends = np.concatenate([ch, [ct.size]])
    return [(t[a], ct[a - 1] if a else 0.0, ct[a], t[b - 1]) for a, b in zip(starts, ends)]


def test_effect_site_reaches_the_target(tci):
    """After a target increase, Ce is within 5 % of the target within 5 min (propofol) or 3 min
    (remifentanil); after a decrease the pump pauses (rate 0) until Ce has fallen to the target,
    and Ce falls to within 5 % of it; between changes Ce stays at the target."""
    ups = downs = 0
    for _, rec, _ in tci:
        for drug in DRUGS:
            if f"Orchestra/{drug}_CT" not in rec.tracks:
                continue
            t, ct = _track(rec, f"Orchestra/{drug}_CT")
            tc, ce = _track(rec, f"Orchestra/{drug}_CE")
            tr, rate = _track(rec, f"Orchestra/{drug}_RATE")
            reach = 300 if drug == "PPF20" else 180
            for t0, old, new, t1 in _segments(t, ct):
                if new <= 0 or t1 - t0 < 900:
                    continue
                w = (tc >= t0) & (tc <= t1)
                near = np.abs(ce[w] - new) <= 0.05 * new
                hit = tc[w][near]
                if new > old:
                    ups += 1
                    assert hit.size and hit[0] - t0 <= reach, (drug, t0, old, new)
                else:
                    downs += 1
                    assert hit.size and hit[0] - t0 <= 900, (drug, t0, old, new)
                    paused = (tr > t0 + 1) & (tr < hit[0] - 10)
                    assert np.all((rate[paused] == 0) | (rate[paused] == -1) | np.isnan(rate[paused])), (drug, t0)
                if hit.size:  # then it holds the target
                    after = w & (tc >= hit[0] + 60)
                    assert np.all(np.abs(ce[after] - new) <= 0.05 * new + 0.02), (drug, t0)
    assert ups >= 4 and downs >= 2, (ups, downs)


def test_logged_target_changes_are_the_written_target_changes(tci, tmp_path):
    """Every change of the written ``*_CT`` track is a logged PPF_CT/RFTN_CT decision at that
    second (within the pump's 1 s record interval), and every logged one is visible."""
    for case_id, rec, _ in tci:
        s, _ = case_state(case_id, seed=7, hours=HOURS)
        for drug, (_, setpoint) in DRUGS.items():
            if f"Orchestra/{drug}_CT" not in rec.tracks:
                continue
            t, ct = _track(rec, f"Orchestra/{drug}_CT")
            i = np.flatnonzero(np.abs(np.diff(ct)) > 1e-3) + 1
            written = [(t[j], round(ct[j - 1], 1), round(ct[j], 1)) for j in i if t[j] - t[j - 1] < 1.5]
            # logged changes the pump recorded: a record showing the second of the change (a record
            # shows the state at its nearest second) and one showing the second before
            seen = lambda tt: ((np.abs(t - tt) <= 0.5).any() and (np.abs(t - tt + 1) <= 0.5).any())  # noqa: E731
            logged = [(tt, old, new) for tt, sp, old, new, _ in s.decisions if sp == setpoint and seen(tt)]
            assert len(written) == len(logged), (case_id, drug)
            for (tw, ow, nw), (tl, ol, nl) in zip(written, logged):
                assert tl - 0.5 <= tw <= tl + 0.5 and (ow, nw) == (ol, nl), (case_id, drug, tw, tl)
