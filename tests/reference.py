"""An independent, deliberately naive implementation of the Master POC contract, as a test oracle.

It shares no code with ``vitalflow.transform``: it reads records with the ``vitaldb`` library, the
spec as a raw YAML dict, the clinical table with ``csv``, and computes every second with plain
Python loops. The golden end-to-end test compares vitalflow's TFRecords against its output.
"""

from __future__ import annotations

import csv
import math

import vitaldb
import yaml

from vitalflow.spec.model import BUILTIN_DIR

SPEC = yaml.safe_load((BUILTIN_DIR / "master_poc.yaml").read_text())


def _num(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def clinical_rows(path):
    with open(path, newline="") as f:
        return {int(r["caseid"]): r for r in csv.DictReader(f)}


def _ibw(row):
    weight, height, sex = _num(row["weight"]), _num(row["height"]), row["sex"]
    rule = SPEC["ideal_body_weight"]
    if math.isnan(height):
        return weight
    base = rule["male_base_kg"] if sex == "M" else rule["female_base_kg"]
    devine = base + rule["kg_per_cm"] * (height - rule["reference_height_cm"])
    return devine if devine >= rule["floor_kg"] else weight


def _grid(vf, name, n):
    out = [None] * n
    trk = vf.trks.get(name)
    if trk is None or trk.type != 2:
        return out
    for rec in sorted(trk.recs, key=lambda r: r["dt"]):
        k = math.floor(rec["dt"] - vf.dtstart)
        if 0 <= k < n:
            out[k] = float(rec["val"])
    return out


def _convert(value, conv, row, ambient_kpa):
    kind = (conv or {"kind": "none"})["kind"]
    if kind == "none":
        return value
    if kind == "scale":
        return value * conv["factor"] if "factor" in conv else value / conv["divisor"]
    if kind == "infusion":
        v = value * conv["concentration"] / _num(row["weight"])
        return v / 60 if conv["per"] == "minute" else v
    if kind == "per_ibw":
        return value / _ibw(row)
    if kind == "vol_percent_to_kpa":
        return value * ambient_kpa / 100
    raise AssertionError(kind)


def _norm(x, lo, hi):
    return min(1.0, max(-1.0, (x - lo) / (hi - lo) * 2 - 1))


def reference_case(path, row, length=300, step=30, horizon=30, min_observed_share=0.25):
    """Expected examples of one case: list of dicts keyed like the TFRecord features."""
    vf = vitaldb.VitalFile(str(path), track_names=[s["track"] for f in SPEC["timeseries"] for s in f["sources"]]
                           + ["Primus/PAMB_MBAR"])
    n = math.floor(vf.dtend - vf.dtstart) + 1
    # ambient pressure per second: last plausible reading in kPa, else the default
    amb_raw = _grid(vf, "Primus/PAMB_MBAR", n)
    ambient, last = [], None
    for v in amb_raw:
        if v is not None and 500 <= v <= 1200:
            last = v / 10
        ambient.append(last)

    columns, masks, recorded = [], [], {}
    for f in SPEC["timeseries"]:
        lo_p, hi_p = f["plausible"]
        values = [None] * n
        for src in f["sources"]:
            conv = src.get("convert")
            raw = _grid(vf, src["track"], n)
            conv_vals = []
            for k, v in enumerate(raw):
                if v is None:
                    conv_vals.append(None)
                    continue
                amb = ambient[k] if ambient[k] is not None else (conv or {}).get("ambient_default_kpa")
                c = _convert(v, conv, row, amb)
                conv_vals.append(c if (math.isfinite(c) and lo_p <= c <= hi_p) else None)
            if any(c is not None for c in conv_vals):
                values = conv_vals
                break
        else:
            if "derive" in f:
                s, d = recorded[f["derive"]["systolic"]], recorded[f["derive"]["diastolic"]]
                values = [(a + 2 * b) / 3 if a is not None and b is not None else None for a, b in zip(s, d)]
        recorded[f["name"]] = values
        imp = f["impute"]
        carry = max(imp["max_gap_s"], imp["hold_after_last_s"])
        filled, mask, last_k = [], [], None
        for k, v in enumerate(values):
            if v is not None:
                last_k = k
                filled.append(v)
                mask.append(1.0)
            elif last_k is None:
                filled.append(imp["before_first_value"])
                mask.append(0.0)
            elif k - last_k <= carry:
                filled.append(values[last_k])
                mask.append(0.0)
            else:
                filled.append(imp["after_last_value"])
                mask.append(0.0)
        columns.append([_norm(x, *f["range"]) for x in filled])
        masks.append(mask)

    start, end = 0, n
    a, b = _num(row["anestart"]), _num(row["aneend"])
    if math.isfinite(a) and math.isfinite(b) and b > a:
        s, e = max(0, math.ceil(a)), min(n, math.ceil(b))
        if e > s:
            start, end = s, e

    static = []
    for f in SPEC["static"]:
        raw = row[f["column"]]
        if "categories" in f:
            static.append(f["categories"].get(raw, f["categories"][f["default"]]))
        else:
            x = _num(raw)
            static.append(_norm(f["default"] if math.isnan(x) else x, *f["range"]))

    names = [f["name"] for f in SPEC["timeseries"]]
    inputs = [j for j, name in enumerate(names) if name not in SPEC["targets"]]
    examples = []
    s = start
    while s + length - 1 + horizon <= end - 1:
        t = s + length - 1 + horizon
        seen = sum(1 for j in inputs if any(masks[j][k] == 1.0 for k in range(s, s + length)))
        if seen < min_observed_share * len(inputs):  # too little recorded: not a window
            s += step
            continue
        examples.append({
            "window_start_s": s,
            "timeseries": [columns[j][k] for k in range(s, s + length) for j in range(len(names))],
            "mask": [masks[j][k] for k in range(s, s + length) for j in range(len(names))],
            "target": [columns[names.index(name)][t] for name in SPEC["targets"]],
            "static": static,
        })
        s += step
    return examples
