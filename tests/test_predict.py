"""`vitalflow predict`: batch prediction over recordings the model has never seen, checked against
independent expectations: preprocessing's windows of the same recordings (read back with plain
TensorFlow), `Predictor.predict` on them, and the `vitaldb` library's records.

Every `vitalflow` command runs in a subprocess: the case runner forks its workers, and this test
process holds TensorFlow once the expectations are computed (TensorFlow is not fork-safe).
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

GOOD = 5  # unseen recordings with windows: cases 1-5
SHORT, GARBAGE, NO_ROW = 6, 7, 8


def vitalflow(*args, env=None, check=None) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "vitalflow", *map(str, args)], capture_output=True, text=True,
                            env=env, timeout=600)
    if check is not None:
        assert result.returncode == check, result.stdout + result.stderr
    return result


def start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vitalflow", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


pytestmark = pytest.mark.usefixtures("own_registry")  # trainings here register in a registry of this module's own


@pytest.fixture(scope="module")
def model(trainable_dataset, tiny_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("predict-model") / "model"
    vitalflow("train", trainable_dataset, "--output", out, "--config", tiny_config, check=0)
    return out


@pytest.fixture(scope="module")
def unseen(tmp_path_factory):
    """Recordings the model never saw (another seed): 5 good cases, a case too short for a window,
    a file that is not a .vital, and a recording without a clinical row."""
    from vitalflow.synth import synth_corpus

    root = tmp_path_factory.mktemp("unseen")
    synth_corpus(root / "good", GOOD, seed=41, hours=1.0, waves=False)
    synth_corpus(root / "short", 1, seed=42, hours=0.1, waves=False)
    rec = root / "rec"
    shutil.copytree(root / "good", rec)
    shutil.copy(root / "short" / "0001.vital", rec / f"{SHORT}.vital")
    with open(root / "short" / "clinical.csv", newline="") as f:
        short_row = next(csv.DictReader(f))
    with open(rec / "clinical.csv", newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    rows.append(dict(short_row, caseid=str(SHORT)))
    rows.append(dict(rows[0], caseid=str(GARBAGE)))
    with open(rec / "clinical.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    (rec / f"{GARBAGE}.vital").write_bytes(b"this is not a vital file\n" * 100)
    shutil.copy(rec / "0002.vital", rec / f"{NO_ROW}.vital")
    (root / "run.yaml").write_text("min_success_rate: 0.5\n")
    return root


@pytest.fixture(scope="module")
def predicted(model, unseen, tmp_path_factory):
    out = tmp_path_factory.mktemp("pred") / "out"
    r = vitalflow("predict", "--model", model, "--input", unseen / "rec", "--clinical", unseen / "rec/clinical.csv",
                  "--output", out, "--config", unseen / "run.yaml", "--csv", "--plots", "--workers", 2, "-q", check=0)
    return out, r


@pytest.fixture(scope="module")
def reference_windows(unseen, tmp_path_factory):
    """Preprocessing's windows of the good recordings (the model's spec is the built-in one),
    read back with plain TensorFlow: case id -> (window starts, series, static, mask), in order."""
    import tensorflow as tf

    root = tmp_path_factory.mktemp("ref")
    (root / "run.yaml").write_text("split: {train: 1.0, validation: 0.0, test: 0.0}\n")
    vitalflow("preprocess", "-i", unseen / "good", "-c", unseen / "good/clinical.csv", "-o", root / "ds",
              "--config", root / "run.yaml", "-q", check=0)
    F = {"timeseries": tf.io.FixedLenFeature([300 * 16], tf.float32),
         "static": tf.io.FixedLenFeature([6], tf.float32),
         "mask": tf.io.FixedLenFeature([300 * 16], tf.float32),
         "case_id": tf.io.FixedLenFeature([], tf.int64),
         "window_start_s": tf.io.FixedLenFeature([], tf.int64)}
    files = sorted(str(p) for p in (root / "ds").glob("train-*.tfrecord.gz"))
    by_case: dict[int, list] = {}
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        ex = tf.io.parse_single_example(record, F)
        by_case.setdefault(int(ex["case_id"]), []).append(
            (int(ex["window_start_s"]), ex["timeseries"].numpy().reshape(300, 16), ex["static"].numpy(),
             ex["mask"].numpy().reshape(300, 16)))
    card = json.loads((root / "ds" / "preprocessing_metadata.json").read_text())
    out = {}
    for case_id, rows in by_case.items():
        rows.sort(key=lambda r: r[0])
        out[case_id] = tuple(np.array([r[i] for r in rows]) for i in range(4))
    return out, card


def table(out: Path, case_id: int):
    return pq.read_table(out / "cases" / f"{case_id}.parquet")


def test_one_row_per_window_with_the_models_predictions(model, predicted, reference_windows):
    from vitalflow.model.predictor import load_model

    out, _ = predicted
    windows, card = reference_windows
    predictor = load_model(model)
    names = [t["name"] for t in json.loads((model / "model_card.json").read_text())["targets"]]
    assert sorted(windows) == list(range(1, GOOD + 1))
    for case_id, (starts, series, static, mask) in windows.items():
        t = table(out, case_id)
        assert t.num_rows == len(starts) > 0
        assert t.column("time_s").to_pylist() == (starts + 299 + 30).tolist()
        expected = predictor.predict(series, static, mask if "mask" in predictor.card.inputs else None)
        got = np.stack([t.column(f"{n}_pred").to_numpy() for n in names], axis=1)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert sum(len(w[0]) for w in windows.values()) == sum(s["windows"] for s in card["splits"].values())


def test_time_columns_and_recorded_values_match_vitaldb(predicted, unseen):
    import vitaldb

    out, _ = predicted
    rows = {int(r["caseid"]): r for r in csv.DictReader(open(unseen / "rec/clinical.csv", newline=""))}
    checked = 0
    for case_id in range(1, GOOD + 1):
        t = table(out, case_id).to_pydict()
        vf = vitaldb.VitalFile(str(unseen / "rec" / f"{case_id:04d}.vital"), track_names=["Orchestra/PPF20_RATE"])
        # the wall clock: the recording's start (vitaldb's dtstart) + time_s
        first = t["time_utc"][0]
        assert abs(first.timestamp() - (vf.dtstart + t["time_s"][0])) < 1e-3
        at: dict[int, float] = {}
        track = vf.trks.get("Orchestra/PPF20_RATE")
        for rec in sorted(track.recs if track else [], key=lambda r: r["dt"]):
            at[math.floor(rec["dt"] - vf.dtstart)] = float(rec["val"])  # the last record in a second
        weight = float(rows[case_id]["weight"])
        for second, value in zip(t["time_s"], t["Propofol_INF_recorded"]):
            if second in at:
                assert value == pytest.approx(at[second] * 20 / weight, rel=1e-6), (case_id, second)
                checked += 1
            else:
                assert math.isnan(value), (case_id, second)
    assert checked > 20


def test_outcomes_card_and_files(model, predicted):
    out, result = predicted
    card = json.loads((out / "prediction_card.json").read_text())
    model_card = json.loads((model / "model_card.json").read_text())
    assert card["status"] == "complete"
    assert card["model"]["dir"] == str(model) and card["model"]["registered"] is None
    assert card["model"]["spec"]["hash"] == model_card["spec"]["hash"]
    assert card["model"]["dataset_fingerprint"] == model_card["dataset"]["fingerprint"]
    assert card["model"]["config_hash"] == model_card["config_hash"]
    assert [t["unit"] for t in card["targets"]] == [t["unit"] for t in model_card["targets"]]
    c = card["cases"]
    assert (c["selected"], c["ok"], c["excluded"], c["failed"]) == (8, GOOD, 1, 2)
    assert [e["case_id"] for e in card["excluded"]] == [SHORT] and "too short" in card["excluded"][0]["reason"]
    failed = {f["case_id"]: f for f in card["failed"]}
    assert failed[GARBAGE]["stage"] == "read" and f"{GARBAGE}.vital" in failed[GARBAGE]["error"]
    assert failed[NO_ROW]["stage"] == "clinical" and "no row in the clinical table" in failed[NO_ROW]["error"]
    assert "too short" in result.stdout and "no row in the clinical table" in result.stderr
    assert sorted(p.name for p in (out / "cases").iterdir()) == sorted(
        f"{i}.{k}" for i in range(1, GOOD + 1) for k in ("parquet", "csv", "png"))
    for i in range(1, GOOD + 1):
        t = table(out, i)
        assert t.schema.field("Propofol_INF_pred").metadata[b"unit"] == b"mg/kg/h"
        with open(out / "cases" / f"{i}.csv", newline="") as f:
            lines = list(csv.DictReader(f))
        assert len(lines) == t.num_rows
        assert float(lines[0]["TV_pred"]) == t.column("TV_pred")[0].as_py()
        assert lines[0]["time_utc"].endswith("Z")
        assert (out / "cases" / f"{i}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert card["timings_s"]["model"] > 0 and card["run"]["peak_rss_mb"]["model_process"] > 0


def _good_only(unseen: Path, tmp_path: Path) -> Path:
    rec = tmp_path / "rec"
    shutil.copytree(unseen / "good", rec)
    return rec


def _tables(out: Path) -> dict[str, pa.Table]:
    return {p.name: pq.read_table(p) for p in sorted((out / "cases").glob("*.parquet"))}


def same_table(a: pa.Table, b: pa.Table) -> bool:
    """Equal times and recorded values; predictions within 1e-5 (TensorFlow's CPU kernels may sum in
    another order under another thread schedule)."""
    if a.schema != b.schema or a.num_rows != b.num_rows:
        return False
    for name in a.column_names:
        x, y = a.column(name).to_numpy(), b.column(name).to_numpy()
        if name.endswith("_pred"):
            if not np.allclose(x, y, rtol=0, atol=1e-5):
                return False
        elif not (np.array_equal(x, y, equal_nan=True) if x.dtype.kind == "f" else np.array_equal(x, y)):
            return False
    return True


def _commits(out: Path) -> int:
    return len(list((out / "_ledger" / "h0").glob("commit-*.json")))


def test_resume_after_sigkill_gives_the_uninterrupted_output(model, unseen, predicted, tmp_path):
    rec = _good_only(unseen, tmp_path)
    out = tmp_path / "out"
    args = ["predict", "-m", model, "-i", rec, "-c", rec / "clinical.csv", "-o", out, "-w", "1",
            "--commit-every", "1", "-q"]
    for kill_after in (1, 3):  # bounded: kill once the ledger holds this many commits
        p = start(*args)
        deadline = time.monotonic() + 120
        while _commits(out) < kill_after and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert _commits(out) < GOOD, "the run finished before it could be killed"
    vitalflow(*args, check=0)
    expected = {n: t for n, t in _tables(predicted[0]).items() if int(n.split(".")[0]) <= GOOD}
    got = _tables(out)
    assert got.keys() == expected.keys()
    for name in expected:
        assert same_table(got[name], expected[name]), name
    assert json.loads((out / "prediction_card.json").read_text())["cases"]["ok"] == GOOD
    assert vitalflow(*args, check=0).stdout.startswith("already complete")


def test_sigterm_exits_75_and_the_rerun_finishes(model, unseen, tmp_path):
    rec = _good_only(unseen, tmp_path)
    out = tmp_path / "out"
    args = ["predict", "-m", model, "-i", rec, "-c", rec / "clinical.csv", "-o", out, "-w", "1",
            "--commit-every", "1", "-q"]
    p = start(*args)
    while _commits(out) < 1 and p.poll() is None:
        time.sleep(0.01)
    p.send_signal(signal.SIGTERM)
    _, stderr = p.communicate(timeout=120)
    assert p.returncode == 75, stderr
    assert "Resume with: vitalflow predict" in stderr
    card = json.loads((out / "prediction_card.json").read_text())
    assert card["status"] == "partial" and card["run"]["stopped_by"] == "SIGTERM"
    vitalflow(*args, check=0)
    assert json.loads((out / "prediction_card.json").read_text())["status"] == "complete"


def test_retry_failed_predicts_a_fixed_recording_and_progress_is_json(model, unseen, predicted, tmp_path):
    """The run driver's options hold for predict as for preprocess: a failed case stays failed on
    resume, ``--retry-failed`` runs it again once its recording is fixed (a changed recording of a
    failed case does not block the resume), and ``--log-format json`` writes progress records."""
    rec = tmp_path / "rec"
    shutil.copytree(unseen / "rec", rec)
    out = tmp_path / "out"
    args = ["predict", "-m", model, "-i", rec, "-c", rec / "clinical.csv", "-o", out, "--config", unseen / "run.yaml",
            "-w", "1", "--log-format", "json", "--progress-interval", "0.1"]
    first = vitalflow(*args, check=0)
    records = [json.loads(line) for line in first.stderr.splitlines() if line.startswith("{")]
    progress = [r["progress"] for r in records if "progress" in r]
    assert progress and progress[-1]["done"] == 8 and progress[-1]["total"] == 8, first.stderr
    card = json.loads((out / "prediction_card.json").read_text())
    assert GARBAGE in {f["case_id"] for f in card["failed"]}
    shutil.copy(rec / "0003.vital", rec / f"{GARBAGE}.vital")  # the bad file replaced by a readable recording
    vitalflow(*args, check=0)
    card = json.loads((out / "prediction_card.json").read_text())
    assert GARBAGE in {f["case_id"] for f in card["failed"]}  # resume alone does not rerun it
    vitalflow(*args, "--retry-failed", check=0)
    card = json.loads((out / "prediction_card.json").read_text())
    assert GARBAGE not in {f["case_id"] for f in card["failed"]}
    assert NO_ROW in {f["case_id"] for f in card["failed"]}  # still no clinical row: fails again
    assert table(out, GARBAGE).num_rows > 0


def test_a_model_of_another_spec_predicts_with_its_own_spec(trainable_dataset, tiny_config, unseen, tmp_path):
    """A model trained on data of an edited spec (version 3, propofol range [0, 20]) transforms the
    recordings with that spec, though the spec file is gone and the installed default differs."""
    import keras

    from vitalflow.model import network as _network  # noqa: F401  (registers the network's custom layers with Keras)
    from vitalflow.spec.model import BUILTIN_DIR
    from vitalflow.synth import synth_corpus

    synth_corpus(tmp_path / "tr", 12, seed=0, hours=1.5, waves=False)
    spec = tmp_path / "my_spec.yaml"
    spec.write_text((BUILTIN_DIR / "master_poc.yaml").read_text().replace("\nversion: 2", "\nversion: 3").replace(
        "range: [0, 12]\n    plausible: [0, 2000]", "range: [0, 20]\n    plausible: [0, 2000]"))
    (tmp_path / "run.yaml").write_text("spec: my_spec.yaml\nsplit: {seed: 3}\n")
    (tmp_path / "ref.yaml").write_text("spec: my_spec.yaml\nsplit: {train: 1.0, validation: 0.0, test: 0.0}\n")
    vitalflow("preprocess", "-i", tmp_path / "tr", "-c", tmp_path / "tr/clinical.csv", "-o", tmp_path / "ds",
              "--config", tmp_path / "run.yaml", "-q", check=0)
    vitalflow("preprocess", "-i", unseen / "good", "-c", unseen / "good/clinical.csv", "-o", tmp_path / "ref",
              "--config", tmp_path / "ref.yaml", "-q", check=0)
    vitalflow("train", tmp_path / "ds", "--output", tmp_path / "m", "--config", tiny_config, check=0)
    spec.unlink()
    out = tmp_path / "out"
    vitalflow("predict", "-m", tmp_path / "m", "-i", unseen / "good", "-c", unseen / "good/clinical.csv",
              "-o", out, "-q", check=0)
    card = json.loads((out / "prediction_card.json").read_text())
    assert card["model"]["spec"]["version"] == 3
    # the model's raw (normalized) output on the edited spec's windows, back in units with [0, 20]
    import tensorflow as tf

    F = {"timeseries": tf.io.FixedLenFeature([300 * 16], tf.float32),
         "static": tf.io.FixedLenFeature([6], tf.float32), "mask": tf.io.FixedLenFeature([300 * 16], tf.float32),
         "case_id": tf.io.FixedLenFeature([], tf.int64), "window_start_s": tf.io.FixedLenFeature([], tf.int64)}
    files = sorted(str(p) for p in (tmp_path / "ref").glob("train-*.tfrecord.gz"))
    ex = [tf.io.parse_single_example(r, F) for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    ex = sorted((e for e in ex if int(e["case_id"]) == 1), key=lambda e: int(e["window_start_s"]))
    net = keras.models.load_model(tmp_path / "m" / "model.keras", compile=False)
    inputs = {"timeseries": np.stack([e["timeseries"].numpy().reshape(300, 16) for e in ex]),
              "static": np.stack([e["static"].numpy() for e in ex])}
    if "mask" in [i.name for i in net.inputs]:
        inputs["mask"] = np.stack([e["mask"].numpy().reshape(300, 16) for e in ex]).astype(np.float32)
    raw = net.predict(inputs, verbose=0)[:, 0]
    got = table(out, 1).column("Propofol_INF_pred").to_numpy()
    np.testing.assert_allclose(got, (raw + 1) / 2 * 20, atol=1e-5)


def test_s3_input_and_output(s3_server, model, unseen, predicted, tmp_path):
    client = s3_server.client()
    bucket = s3_server.make_bucket(f"pred-{uuid.uuid4().hex[:10]}")
    for p in sorted((unseen / "good").iterdir()):
        client.put_object(Bucket=bucket, Key=f"rec/{p.name}", Body=p.read_bytes())
    vitalflow("predict", "-m", model, "-i", f"s3://{bucket}/rec", "-c", f"s3://{bucket}/rec/clinical.csv",
              "-o", f"s3://{bucket}/out", "-q", "-w", 2, check=0)
    card = json.loads(client.get_object(Bucket=bucket, Key="out/prediction_card.json")["Body"].read())
    assert card["status"] == "complete" and card["cases"]["ok"] == GOOD
    expected = _tables(predicted[0])
    for i in range(1, GOOD + 1):
        body = client.get_object(Bucket=bucket, Key=f"out/cases/{i}.parquet")["Body"].read()
        assert same_table(pq.read_table(pa.BufferReader(body)), expected[f"{i}.parquet"])
