"""`predict_recording`: one `.vital` recording (bytes or a path) plus its patient features, through
the model's pinned spec and the model in this process, gives batch prediction's rows and numbers.

Batch prediction runs in a subprocess (its case runner forks; this process holds TensorFlow).
"""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

CASES = (1, 2)


def vitalflow(*args) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "vitalflow", *map(str, args)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


pytestmark = pytest.mark.usefixtures("own_registry")  # trainings here register in a registry of this module's own


@pytest.fixture(scope="module")
def model(trainable_dataset, tiny_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("recording-model") / "model"
    vitalflow("train", trainable_dataset, "--output", out, "--config", tiny_config)
    return out


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    from vitalflow.synth import synth_corpus

    root = tmp_path_factory.mktemp("recordings")
    synth_corpus(root / "rec", len(CASES), seed=51, hours=0.5, waves=False)
    synth_corpus(root / "short", 1, seed=52, hours=0.1, waves=False)
    return root


@pytest.fixture(scope="module")
def batch(model, recordings, tmp_path_factory):
    out = tmp_path_factory.mktemp("batch") / "out"
    vitalflow("predict", "--model", model, "--input", recordings / "rec", "--clinical",
              recordings / "rec/clinical.csv", "--output", out, "--workers", 1, "-q")
    return out


@pytest.fixture(scope="module")
def predictor(model):
    from vitalflow.model.predictor import load_model

    return load_model(model)


def clinical_row(recordings, case_id: int) -> dict:
    with open(recordings / "rec/clinical.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if int(r["caseid"]) == case_id)
    keep = ("age", "sex", "height", "weight", "bmi", "asa", "anestart", "aneend")
    return {k: row[k] for k in keep if k in row}


@pytest.mark.parametrize("as_bytes", [True, False])
def test_same_rows_and_predictions_as_batch_prediction(predictor, recordings, batch, as_bytes):
    from vitalflow.predict.recording import predict_recording

    for case_id in CASES:
        path = recordings / "rec" / f"{case_id:04d}.vital"
        table = predict_recording(path.read_bytes() if as_bytes else path, clinical_row(recordings, case_id),
                                  predictor, case_id=case_id)
        expected = pq.read_table(batch / "cases" / f"{case_id}.parquet")
        assert table.rows == expected.num_rows > 0
        assert table.time_s.tolist() == expected.column("time_s").to_pylist()
        got = pq.read_table(pa.BufferReader(table.parquet()))
        assert got.column_names == expected.column_names
        for name in expected.column_names:
            if name.endswith("_pred"):
                np.testing.assert_allclose(got.column(name).to_numpy(), expected.column(name).to_numpy(),
                                           rtol=0, atol=1e-5)
            elif name != "time_utc":
                np.testing.assert_array_equal(got.column(name).to_numpy(), expected.column(name).to_numpy())
        assert got.column("time_utc").to_pylist() == expected.column("time_utc").to_pylist()


def test_missing_patient_features_take_the_specs_defaults(predictor, recordings):
    from vitalflow.predict.recording import predict_recording

    path = recordings / "rec" / "0001.vital"
    full = predict_recording(path, clinical_row(recordings, 1), predictor)
    bare = predict_recording(path, {"weight": clinical_row(recordings, 1)["weight"]}, predictor)
    assert bare.rows >= full.rows  # no anesthesia crop without anestart/aneend
    assert np.isfinite(bare.predicted).all()


def test_errors_say_why(predictor, recordings):
    from vitalflow.errors import CaseDataError, VitalReadError
    from vitalflow.predict.recording import predict_recording

    patient = clinical_row(recordings, 1)
    with pytest.raises(VitalReadError) as e:
        predict_recording(b"this is not a vital file\n" * 100, patient, predictor, name="upload.vital")
    assert "upload.vital" in str(e.value) and "/tmp" not in str(e.value)
    with pytest.raises(CaseDataError, match="too short"):
        predict_recording((recordings / "short" / "0001.vital").read_bytes(), patient, predictor)
    with pytest.raises(CaseDataError, match="weight"):
        predict_recording(recordings / "rec" / "0001.vital", {"age": 50}, predictor)
    with pytest.raises(CaseDataError, match="unknown key.*heigth"):
        predict_recording(recordings / "rec" / "0001.vital", {**patient, "heigth": 170}, predictor)
    with pytest.raises(VitalReadError, match="no such file"):
        predict_recording(recordings / "nothing.vital", patient, predictor)
