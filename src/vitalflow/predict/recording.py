"""One recording through a loaded model, in this process: what the inference service does with a
``.vital`` payload (a synchronous request, or an asynchronous job's input).

The recording is read and transformed exactly as batch prediction does it (`PredictJob.run_case`,
which is preprocessing's `PreprocessJob.run_case_with`: the model's pinned spec, its window and
horizon, the same read limits and exclusion reasons), then predicted with the caller's `Predictor`
(`predict_request`, the model process's own code). Same rows, same predictions as `vitalflow
predict` on the same recording and clinical row.

::

    table = predict_recording(Path("0001.vital").read_bytes(), {"age": 63, "sex": "F", "weight": 58},
                              load_model("model"))
    table.rows, table.columns()[:3]       # e.g. (1187, ['time_s', 'time_utc', 'Propofol_INF_pred'])
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from vitalflow.errors import CaseDataError, VitalReadError
from vitalflow.predict.job import PredictJob
from vitalflow.predict.model_process import predict_request
from vitalflow.predict.run import prediction_config
from vitalflow.predict.table import CaseTable, context_inputs, output_columns, prediction_labels
from vitalflow.run.inputs import CaseFile
from vitalflow.run.preprocess_job import PreprocessJob
from vitalflow.spec.model import Config
from vitalflow.transform.patient import Patient

if TYPE_CHECKING:  # the predictor holds TensorFlow; this module imports none
    from vitalflow.model.predictor import Predictor

#: Patient keys a request may give (the clinical table's columns; the static features read
#: age, sex, height, weight, bmi, asa). Missing ones are unknown: the spec's defaults, as in
#: preprocessing; weight is required (drug rates are per kg).
PATIENT_NUMBERS = ("age", "height", "weight", "bmi", "asa", "anestart", "aneend", "caseend")
PATIENT_KEYS = (*PATIENT_NUMBERS, "sex", "subjectid")


def patient_from(values: Mapping[str, Any] | None, case_id: int = 0) -> Patient:
    """A `Patient` from a request's patient object; unknown keys and non-numbers are a `CaseDataError`.

    >>> p = patient_from({"age": 63, "sex": "f", "weight": 58.5, "height": None})
    >>> p.age, p.sex, p.weight, math.isnan(p.height), math.isnan(p.bmi)
    (63.0, 'F', 58.5, True, True)
    >>> patient_from({"agee": 63})
    Traceback (most recent call last):
    ...
    vitalflow.errors.CaseDataError: patient: unknown key(s) agee (known: age, height, weight, bmi, asa, anestart, aneend, caseend, sex, subjectid)
    """
    values = dict(values or {})
    unknown = sorted(set(values) - set(PATIENT_KEYS))
    if unknown:
        raise CaseDataError(f"patient: unknown key(s) {', '.join(unknown)} (known: {', '.join(PATIENT_KEYS)})")
    numbers: dict[str, float] = {}
    for key in PATIENT_NUMBERS:
        value = values.get(key)
        if value is None or value == "":
            numbers[key] = math.nan
            continue
        if isinstance(value, bool):
            raise CaseDataError(f"patient: {key} {value!r} is not a number")
        try:
            numbers[key] = float(value)
        except (TypeError, ValueError):
            raise CaseDataError(f"patient: {key} {value!r} is not a number") from None
    sex = str(values.get("sex") or "").strip().upper()
    subject = values.get("subjectid")
    return Patient(case_id=case_id, subject_id=str(subject) if subject not in (None, "") else None,
                   sex=sex if sex in ("F", "M") else None, **numbers)


def predict_recording(recording: bytes | str | os.PathLike, patient: Mapping[str, Any] | None,
                      predictor: Predictor, config: Config | None = None, case_id: int = 0,
                      name: str = "recording.vital") -> CaseTable:
    """The prediction timeline of one ``.vital`` recording (its bytes, or a local path) with its
    ``patient`` features, by ``predictor`` in this process.

    ``config`` gives crop, step and limits as for batch prediction (window and horizon are the
    model's). A recording that cannot be read is a `VitalReadError`; one that makes no window
    (too short, none of the spec's tracks, ...) or a patient no example can be built from is a
    `CaseDataError`; each says why. ``name`` labels a recording given as bytes in messages.
    """
    card = predictor.card
    config = prediction_config(card, config)
    person = patient_from(patient, case_id)
    with tempfile.TemporaryDirectory(prefix="vitalflow-recording-") as temp:
        if isinstance(recording, (bytes, bytearray, memoryview)):
            label = Path(name).name or "recording.vital"
            path = Path(temp) / label
            path.write_bytes(recording)
        else:
            path = Path(recording)
            if not path.is_file():
                raise VitalReadError(f"{path}: no such file")
        folder, label = str(path.parent), path.name
        file = CaseFile(label, path.stat().st_size)
        cases = PreprocessJob(folder, {case_id: file}, {case_id: person}, {}, config, predictor.spec)
        result = PredictJob(cases, "mask" in card.inputs, prediction_labels(card), context_inputs(card)).run_case(case_id)
    outcome, timeline = result.payload
    if outcome.status != "ok":
        reason = _without_case(outcome.reason or "no reason given", case_id).replace(str(path), label)
        if outcome.status == "excluded":
            raise CaseDataError(f"{label}: no window to predict: {reason}")
        if outcome.stage == "read":
            raise VitalReadError(reason if label in reason else f"{label}: {reason}")
        raise CaseDataError(f"{label}: {outcome.stage}: {reason}")
    predicted = predict_request(predictor, timeline.request)
    return timeline.table(predicted, output_columns(card))


def _without_case(reason: str, case_id: int) -> str:
    """The reason without the case prefix (a single recording has no case id to name).

    >>> _without_case("case 0: recording.vital: too short", 0)
    'recording.vital: too short'
    """
    prefix = f"case {case_id}: "
    return reason[len(prefix):] if reason.startswith(prefix) else reason
