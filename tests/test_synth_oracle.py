"""The synthetic clinician's decision log and oracle (decision-targets issue).

`synth_corpus` writes ``NNNN.decisions.csv`` (every set-point change, planned or not) and
``NNNN.oracle.npz`` (the probability of a change per group and horizon, from what the clinician
knows) beside each recording. Here the recordings are read back with the real reader and the
set-point tracks compared with the log, both ways; labels are computed from the CSV (a change of
the group in (t, t + H], t every 30 s) and the oracle scored against them in the three worlds.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from vitalflow.synth import case_state, oracle_probabilities, synth_case, synth_corpus
from vitalflow.synth.oracle import DECISION_COLUMNS, HORIZONS_S
from vitalflow.synth.physiology import DECISION_GROUP, GROUPS, RANDOM_PER_H
from vitalflow.vital.read import read_vital

try:
    from sklearn.metrics import average_precision_score, roc_auc_score
except ImportError:  # pragma: no cover - sklearn is a test dependency
    average_precision_score = roc_auc_score = None

# set-point -> (track, value in the track's units from the log's value, decimals, record interval s)
SETPOINT_TRACKS = {
    "PPF_CT": [("Orchestra/PPF20_CT", 1.0, 1, 1.0)],
    "RFTN_CT": [("Orchestra/RFTN20_CT", 1.0, 1, 1.0), ("Orchestra/RFTN50_CT", 1.0, 1, 1.0)],
    "PPF_RATE": [("Orchestra/PPF20_RATE", 1.0, 1, 1.0)],
    "RFTN_RATE": [("Orchestra/RFTN20_RATE", 1.0, 1, 1.0), ("Orchestra/RFTN50_RATE", 1.0, 1, 1.0)],
    "NEPI_RATE": [("Orchestra/NEPI_RATE", 1.0, 1, 1.0)],
    "TV_SET": [("Primus/SET_TV_L", 1e-3, 2, 7.0), ("Solar8000/VENT_SET_TV", 1.0, 0, 2.0)],
    "RR_SET": [("Primus/SET_RR_IPPV", 1.0, 0, 7.0)],
    "PEEP_SET": [("Primus/SET_INTER_PEEP", 1.0, 0, 7.0)],
    "FIO2_SET": [("Primus/SET_FIO2", 1.0, 0, 7.0), ("Solar8000/VENT_SET_FIO2", 1.0, 0, 2.0)],
}
SEVO_TRACK, SEVO_JUMP = "Primus/INSP_SEVO", 0.25  # kPa; a dial change moves it by >= 0.3
TRACKS = [t for v in SETPOINT_TRACKS.values() for t, *_ in v] + [SEVO_TRACK]


def _decisions(path):
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == DECISION_COLUMNS
        return [dict(r, time_s=float(r["time_s"]), old=float(r["old"]), new=float(r["new"])) for r in reader]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("decisions")
    paths = synth_corpus(out, 8, seed=3, hours=2.0, waves=False)
    return [(read_vital(p, TRACKS), _decisions(p.with_name(p.stem + ".decisions.csv")),
             dict(np.load(p.with_name(p.stem + ".oracle.npz")))) for p in paths]  # fmt: skip


def _brackets(t, v, interval):
    """Consecutive valid records (previous time, time, previous value, value) without a gap."""
    ok = np.isfinite(v) & (v != -1)  # -1 and NaN: injected device artefacts (rate tracks)
    t, v = t[ok], v[ok]
    keep = np.diff(t) <= 1.5 * interval
    return t[:-1][keep], t[1:][keep], v[:-1][keep], v[1:][keep]


def test_decisions_csv_format(corpus):
    for _, rows, _ in corpus:
        assert rows and [r["time_s"] for r in rows] == sorted(r["time_s"] for r in rows)
        for r in rows:
            assert r["group"] == DECISION_GROUP[r["setpoint"]]
            assert r["old"] != r["new"] and r["cause"]
        causes = {r["cause"] for r in rows}
        assert "plan" in causes and len(causes) > 1


def test_every_setpoint_change_on_a_track_is_a_logged_decision_and_back(corpus):
    """Between two consecutive records of a set-point track (no gap), the track changes iff the
    log has a change of that set-point in that interval (a record shows the state at its nearest
    second), and then to the logged value. Sevoflurane has no dial track: a dial change is a jump
    of the inspired concentration of >= 0.3 kPa, and nothing else jumps by 0.25."""
    checked = {}
    for rec, rows, _ in corpus:
        for sp, tracks in SETPOINT_TRACKS.items():
            for name, scale, dec, interval in tracks:
                if name not in rec.tracks:
                    continue
                if sp.endswith("_RATE") and name.replace("_RATE", "_CT") in rec.tracks:
                    continue  # a TCI pump: the rate is the pump's, not a decision
                t, v = (np.asarray(x, dtype=np.float64) for x in rec.tracks[name])
                tp, tw, vp, vw = _brackets(t, v, interval)
                logged = [r for r in rows if r["setpoint"] == sp]
                td = np.array([r["time_s"] for r in logged]) - 0.5
                for a, b, x0, x1 in zip(tp, tw, vp, vw):
                    inside = [r for r, x in zip(logged, td) if a < x <= b]
                    moved = abs(x1 - x0) > 0.5 * 10.0**-dec
                    net = bool(inside) and inside[0]["old"] != inside[-1]["new"]
                    assert moved == net, (rec.path, name, a, b, x0, x1, inside)
                    if moved:
                        assert x1 == pytest.approx(round(inside[-1]["new"] * scale, dec), abs=0.6 * 10.0**-dec)
                        checked[sp] = checked.get(sp, 0) + 1
        if SEVO_TRACK in rec.tracks:
            t, v = (np.asarray(x, dtype=np.float64) for x in rec.tracks[SEVO_TRACK])
            tp, tw, vp, vw = _brackets(t, v, 7.0)
            td = np.array([r["time_s"] for r in rows if r["setpoint"] == "SEVO"]) - 0.5
            for a, b, x0, x1 in zip(tp, tw, vp, vw):
                dial = ((td > a) & (td <= b)).any()
                assert (abs(x1 - x0) >= SEVO_JUMP) == dial, (rec.path, a, b, x0, x1)
                checked["SEVO"] = checked.get("SEVO", 0) + dial
    assert {"PPF_CT", "RFTN_CT", "TV_SET", "RR_SET", "FIO2_SET", "SEVO"} <= set(checked), checked


def test_sevo_dial_changes_are_visible_jumps():
    for case_id in range(1, 15):
        s, _ = case_state(case_id, seed=4, hours=2.0)
        for _, sp, old, new, _ in s.decisions:
            if sp == "SEVO":
                assert abs(new - old) >= 0.2 - 1e-9  # x 1.5 on the inspired concentration: >= 0.3 kPa


def test_oracle_file_format(corpus):
    for rec, _, o in corpus:
        assert set(o) == {"time_s"} | {f"p/{g}/{h}" for g in GROUPS for h in HORIZONS_S}
        t = o["time_s"]
        assert t.dtype == np.int64 and t[0] == 0 and np.all(np.diff(t) == 10)
        assert t[-1] + 10 >= rec.duration_s and t[-1] == 2 * 3600 - 10  # the whole 2-h recording
        for g in GROUPS:
            for h in HORIZONS_S:
                p = o[f"p/{g}/{h}"]
                assert p.dtype == np.float32 and p.shape == t.shape
                assert np.all((p >= 0) & (p <= 1))
            # a longer horizon never has a smaller probability
            assert np.all(o[f"p/{g}/60"] <= o[f"p/{g}/300"] + 1e-6)
            assert np.all(o[f"p/{g}/300"] <= o[f"p/{g}/600"] + 1e-6)


def test_same_arguments_same_bytes(tmp_path):
    a = synth_corpus(tmp_path / "a", 2, seed=2, hours=0.5, waves=False, world="default")
    b = synth_corpus(tmp_path / "b", 2, seed=2, hours=0.5, waves=False, world="default")
    for pa, pb in zip(a, b):
        for suffix in (".vital", ".decisions.csv", ".oracle.npz"):
            assert pa.with_suffix(suffix).read_bytes() == pb.with_suffix(suffix).read_bytes()
    c = synth_corpus(tmp_path / "c", 1, seed=2, hours=0.5, waves=False, world="deterministic")
    assert c[0].with_suffix(".decisions.csv").read_bytes() != a[0].with_suffix(".decisions.csv").read_bytes()


def test_bad_world():
    with pytest.raises(ValueError):
        synth_case(1, hours=0.2, waves=False, world="chaos")


def test_horizons_are_a_parameter():
    s, total = case_state(2, seed=0, hours=1.0)
    o = oracle_probabilities(s, total, horizons=(120,))
    assert set(o) == {"time_s"} | {f"p/{g}/120" for g in GROUPS}


# --------------------------------------------------------------------------- scores in the worlds


def _ap(y, p):
    if average_precision_score is not None:
        return float(average_precision_score(y, p))
    order = np.argsort(-p, kind="stable")  # pragma: no cover
    hits = np.cumsum(y[order])
    return float(np.sum((hits / np.arange(1, y.size + 1))[y[order]]) / max(1, y.sum()))


def _scored(world, h, cases=range(1, 9), seed=0, hours=2.0):
    """Per group: (labels, oracle) at t = 0, 30, 60, ... (t + h within the recording)."""
    ys = {g: [] for g in GROUPS}
    ps = {g: [] for g in GROUPS}
    for case_id in cases:
        s, total = case_state(case_id, seed=seed, hours=hours, world=world)
        o = oracle_probabilities(s, total)
        t = np.arange(0, total - h, 30)
        row = np.searchsorted(o["time_s"], t, side="right") - 1  # the row with the largest time_s <= t
        for g in GROUPS:
            td = np.array([d[0] for d in s.decisions if DECISION_GROUP[d[1]] == g])
            ys[g].append((td[None, :] > t[:, None]).__and__(td[None, :] <= t[:, None] + h).any(axis=1)
                         if td.size else np.zeros(t.size, bool))  # fmt: skip
            ps[g].append(o[f"p/{g}/{h}"][row])
    return {g: (np.concatenate(ys[g]), np.concatenate(ps[g])) for g in GROUPS}


def test_deterministic_world_oracle_is_near_perfect():
    """No delay jitter, no unexplained changes: at 300 s the oracle's average precision is >= 0.95
    for every group with events (measured 0.97-1.0)."""
    scored = _scored("deterministic", 300)
    tested = 0
    for g, (y, p) in scored.items():
        if y.sum() >= 20:
            ap = _ap(y, p)
            print(f"{g}: AP {ap:.3f}, {int(y.sum())} positives of {y.size}")
            assert ap >= 0.95, g
            tested += 1
    assert tested >= 3


def test_default_world_oracle_is_informative_and_calibrated():
    """With jitter, noise and conditions that may break, the oracle is strong, not perfect: AUROC
    >= 0.8 per group, and its mean is within 30 % of the share of positive labels."""
    for g, (y, p) in _scored("default", 300).items():
        if y.sum() < 20:
            continue
        auc = float(roc_auc_score(y, p)) if roc_auc_score is not None else None
        print(f"{g}: AUROC {auc}, mean p {p.mean():.3f}, positives {y.mean():.3f}")
        if auc is not None:
            assert auc >= 0.8, g
        assert 0.7 <= p.mean() / y.mean() <= 1.3, g


def test_random_world_oracle_is_a_constant():
    """Poisson changes only: the oracle is 1 - exp(-rate H) of the group's rate, the same at every
    row, so its AUROC is 0.5 whatever the labels."""
    rate = {"hypnotic": RANDOM_PER_H["hyp"], "opioid": RANDOM_PER_H["remi"], "vasopressor": RANDOM_PER_H["nepi"],
            "ventilation": RANDOM_PER_H["rr"] + RANDOM_PER_H["tv"] + RANDOM_PER_H["peep"], "oxygen": RANDOM_PER_H["fio2"]}  # fmt: skip
    for g, (y, p) in _scored("random", 300, cases=range(1, 5)).items():
        assert np.all(p == np.float32(1 - math.exp(-rate[g] / 3600 * 300)))
        if roc_auc_score is not None and 0 < y.sum() < y.size:
            assert roc_auc_score(y, p) == pytest.approx(0.5)


def _share_after_high_bis(world, cases):
    """Of the unplanned hypnotic changes, the share with BIS > 60 (the latent value the clinician
    reads) in the 5 min before; and the same share over all 10-s times of the same windows."""
    hits = total = 0
    chance = []
    for case_id in cases:
        s, _ = case_state(case_id, seed=1, world=world)
        bis = s["bis"]
        high = np.convolve(bis > 60, np.ones(300), mode="full")[: bis.size] > 0  # any in the last 5 min
        times = [d[0] for d in s.decisions if DECISION_GROUP[d[1]] == "hypnotic" and d[4] != "plan"]
        for td in times:
            total += 1
            hits += bool(high[s.index(np.array([td]))[0]])
        lo, hi = s.noise_window
        grid = np.arange(lo, hi, 10.0)
        chance.append(high[s.index(grid)])
    return hits / max(total, 1), float(np.concatenate(chance).mean()), total


def test_random_world_changes_ignore_the_monitor():
    """In the random world the share of hypnotic changes that follow BIS > 60 is the share of time
    BIS is > 60 (within 0.1); in the default world it is far higher (the clinician reacts)."""
    share, chance, n = _share_after_high_bis("random", range(1, 21))
    print(f"random: {share:.2f} of {n} changes after BIS > 60, chance {chance:.2f}")
    assert n >= 40
    assert share <= chance + 0.1
    share_d, chance_d, n_d = _share_after_high_bis("default", range(1, 21))
    print(f"default: {share_d:.2f} of {n_d} changes after BIS > 60, chance {chance_d:.2f}")
    assert share_d >= chance_d + 0.1
