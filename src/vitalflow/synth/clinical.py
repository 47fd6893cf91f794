"""The clinical table: one row per case with VitalDB's columns, and its CSV writer.

Quirks on a fixed schedule of case ids: ``id % 10 == 8`` corrupt aneend (before anestart, or
days past caseend), ``id % 12 == 5`` ASA missing, ``id % 25 == 11`` ASA 6 (organ donor).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from vitalflow.synth.patient import Patient
from vitalflow.synth.timeline import Timeline

CLINICAL_COLUMNS = (
    "caseid", "subjectid", "casestart", "caseend", "anestart", "aneend", "opstart", "opend",
    "adm", "dis", "icu_days", "death_inhosp", "age", "sex", "height", "weight", "bmi", "asa",
    "emop", "department", "optype", "dx", "opname", "approach", "position", "ane_type",
)  # fmt: skip

# (department, optype, dx, opname, approach choices, position, sex or "")
_PROCEDURES = (
    ("General surgery", "Colorectal", "Rectal cancer", "Low anterior resection", ("Open", "Videoscopic", "Robotic"), "Lithotomy", ""),
    ("General surgery", "Colorectal", "Sigmoid colon cancer", "Anterior resection", ("Open", "Videoscopic"), "Supine", ""),
    ("General surgery", "Stomach", "Stomach cancer", "Distal gastrectomy", ("Open", "Videoscopic", "Robotic"), "Supine", ""),
    ("General surgery", "Stomach", "Stomach cancer", "Total gastrectomy", ("Open", "Videoscopic"), "Supine", ""),
    ("General surgery", "Biliary/Pancreas", "Pancreatic cancer", "Pylorus preserving pancreaticoduodenectomy", ("Open",), "Supine", ""),
    ("General surgery", "Biliary/Pancreas", "Gallbladder stone", "Cholecystectomy", ("Videoscopic",), "Reverse Trendelenburg", ""),
    ("General surgery", "Hepatic", "Hepatocellular carcinoma", "Hemihepatectomy", ("Open", "Videoscopic"), "Supine", ""),
    ("General surgery", "Breast", "Breast cancer", "Breast-conserving surgery", ("Open",), "Supine", "F"),
    ("General surgery", "Thyroid", "Thyroid cancer", "Total thyroidectomy", ("Open", "Robotic"), "Supine", ""),
    ("General surgery", "Vascular", "Varicose vein", "Stripping of varicose vein", ("Open",), "Supine", ""),
    ("General surgery", "Transplantation", "Liver cirrhosis", "Liver transplantation", ("Open",), "Supine", ""),
    ("Thoracic surgery", "Major resection", "Lung cancer", "Lobectomy", ("Videoscopic", "Open"), "Left lateral decubitus", ""),
    ("Thoracic surgery", "Minor resection", "Lung nodule", "Wedge resection", ("Videoscopic",), "Right lateral decubitus", ""),
    ("Gynecology", "Others", "Uterine leiomyoma", "Total laparoscopic hysterectomy", ("Videoscopic", "Robotic"), "Lithotomy", "F"),
    ("Gynecology", "Major resection", "Ovarian cancer", "Debulking operation", ("Open",), "Lithotomy", "F"),
    ("Urology", "Others", "Prostate cancer", "Robot-assisted radical prostatectomy", ("Robotic",), "Trendelenburg", "M"),
    ("Urology", "Major resection", "Renal cell carcinoma", "Partial nephrectomy", ("Robotic", "Open"), "Left lateral decubitus", ""),
)  # fmt: skip
_PEDIATRIC_PROCEDURES = (
    ("General surgery", "Others", "Inguinal hernia", "Herniorrhaphy", ("Open", "Videoscopic"), "Supine", ""),
    ("General surgery", "Biliary/Pancreas", "Choledochal cyst", "Excision of choledochal cyst", ("Open", "Videoscopic"), "Supine", ""),
    ("Urology", "Others", "Vesicoureteral reflux", "Ureteroneocystostomy", ("Open",), "Supine", ""),
)  # fmt: skip


def clinical_row(rng, case_id: int, p: Patient, tl: Timeline) -> dict:
    """The case's row (``CLINICAL_COLUMNS``; times in s from the recording start, None = missing)."""
    u = rng.random(12)
    if case_id % 25 == 11:
        asa: int | None = 6
    elif case_id % 12 == 5:
        asa = None
    else:
        asa = int(np.searchsorted([0.25, 0.80, 0.98, 1.0], u[0], side="right")) + 1
    emop = int(u[1] < (0.3 if (asa or 2) >= 4 else 0.08))
    table = _PEDIATRIC_PROCEDURES if p.kind != "adult" else tuple(x for x in _PROCEDURES if x[6] in ("", p.sex))
    if asa == 6:  # brain-dead organ donor
        proc = ("General surgery", "Transplantation", "Brain death", "Deceased donor hepatectomy", ("Open",), "Supine", "")
    else:
        proc = table[int(u[2] * len(table))]
    approach = proc[4][int(u[3] * len(proc[4]))]

    caseend = int(round(tl.total))
    anestart, aneend = int(round(tl.anestart)), int(round(tl.aneend))
    if case_id % 10 == 8:  # corrupt end time as found in the real table
        if (case_id // 10) % 2 == 0:
            aneend = anestart - int(60 + u[4] * 3600)  # before the start
        else:
            aneend = caseend + int(86400 * (1 + u[5] * 30))  # days after the recording ended
    days_before = int(u[6] * 4) + (0 if emop else 1)
    adm = -(days_before * 86400 + int(u[7] * 43200))
    icu_days = int(u[8] * 6) if (u[9] < 0.1 or asa in (4, 5)) else 0
    stay = int(2 + u[10] * 12 + icu_days)
    dis = caseend + stay * 86400 - int(u[11] * 43200)
    death = int(asa == 6 or u[9] < 0.008)
    age: float = p.age if p.kind != "adult" else int(p.age)
    return {
        "caseid": case_id,
        "subjectid": p.subjectid,
        "casestart": 0,
        "caseend": caseend,
        "anestart": anestart,
        "aneend": aneend,
        "opstart": int(round(tl.opstart)),
        "opend": int(round(tl.opend)),
        "adm": adm,
        "dis": dis,
        "icu_days": icu_days,
        "death_inhosp": death,
        "age": age,
        "sex": p.sex,
        "height": p.height,
        "weight": p.weight,
        "bmi": round(p.weight / (p.height / 100) ** 2, 1),
        "asa": asa,
        "emop": emop,
        "department": proc[0],
        "optype": proc[1],
        "dx": proc[2],
        "opname": proc[3],
        "approach": approach,
        "position": proc[5],
        "ane_type": "General",
    }


def write_csv(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` as CSV (None as empty), replacing ``path`` atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CLINICAL_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row[k] is None else row[k] for k in CLINICAL_COLUMNS})
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    os.replace(tmp, path)
