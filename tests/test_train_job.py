"""A SageMaker training job's side of `vitalflow launch train`, run for real: a faked ``/opt/ml``
(``VITALFLOW_SAGEMAKER_BASE``) laid out as SageMaker lays it out -- the code tarball extracted into
``code/`` as the framework toolkit does, the dataset channel under ``input/data/dataset``,
``hyperparameters.json`` and the environment as the launcher's request has them -- and ``entry.py``
run as the job runs it; then a job stopped by SIGTERM (a spot interruption) and run again."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from vitalflow.model.config import load_train_config, train_config_hash
from vitalflow.sagemaker import launch as sm
from vitalflow.sagemaker.env import TRAINING_JOB

BUCKET = "vitalflow-jobs"
ROLE = "arn:aws:iam::123456789012:role/vitalflow-sagemaker"
TIMEOUT = 300


def launcher_request(config: Path) -> dict:
    """What `vitalflow launch train` would send (built by the launcher itself; nothing is sent)."""
    options = sm.LaunchOptions({"dataset": f"s3://{BUCKET}/datasets/ds1", "output": f"s3://{BUCKET}/models/m1",
                                "config": str(config)}, kind="train", role=ROLE, region="eu-central-1",
                               job_name="vitalflow-train-job")
    container, request = sm.build_request(sm.resolve(options, environ={}))
    assert container == TRAINING_JOB
    return request


def fake_job(root: Path, dataset: Path, config: Path) -> tuple[Path, Path, dict[str, str]]:
    """``/opt/ml`` at ``root/ml`` and ``/opt/ml/code`` at ``root/ml/code``; returns (base, entry.py, env)."""
    request = launcher_request(config)
    base = root / "ml"
    code = base / "code"
    code.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(sm.build_code_tarball())) as tar:
        tar.extractall(code, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    (channel,) = request["InputDataConfig"]
    shutil.copytree(dataset, base / "input" / "data" / channel["ChannelName"])
    settings = base / "input" / "config"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "hyperparameters.json").write_text(json.dumps(request["HyperParameters"]))
    (settings / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    assert request["CheckpointConfig"]["LocalPath"] == "/opt/ml/checkpoints"
    env = {**os.environ, **request["Environment"], "VITALFLOW_SAGEMAKER_BASE": str(base), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return base, code / request["HyperParameters"]["sagemaker_program"], env


def start(entry_py: Path, env: dict[str, str]) -> subprocess.Popen:
    # the toolkit also passes the hyperparameters as argv; the file is what counts
    return subprocess.Popen([sys.executable, str(entry_py), "--output", "/opt/ml/model"], cwd=entry_py.parent, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_job(entry_py: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    process = start(entry_py, env)
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        pytest.fail(f"the job ran over {TIMEOUT} s:\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def state(base: Path) -> dict | None:
    try:
        return json.loads((base / "checkpoints" / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def weights(model_dir: Path) -> list[np.ndarray]:
    import keras

    return keras.models.load_model(model_dir / "model.keras", compile=False).get_weights()


@pytest.fixture(scope="module")
def finished_job(trainable_dataset, tiny_config, tmp_path_factory):
    base, entry_py, env = fake_job(tmp_path_factory.mktemp("job"), trainable_dataset, tiny_config)
    run = run_job(entry_py, env)
    assert run.returncode == 0, run.stderr[-5000:]
    return base, run


def test_a_training_job_writes_the_model_and_its_checkpoints(finished_job, trainable_dataset, tiny_config):
    import vitalflow

    base, run = finished_job
    assert "is installed already" in run.stderr and "installing:" not in run.stderr
    assert f"train {base}/input/data/dataset --output {base}/model --checkpoints {base}/checkpoints" in run.stderr
    model = base / "model"
    for name in ("model_card.json", "model.keras", "export/saved_model.pb"):
        assert (model / name).is_file(), name
    assert not (model / "_checkpoints").exists()  # checkpoints go where SageMaker syncs them
    card = json.loads((model / "model_card.json").read_text())
    config = load_train_config(tiny_config)
    assert card["config_hash"] == train_config_hash(config)  # the inline config is the user's file
    assert card["dataset"]["uri"] == str(base / "input" / "data" / "dataset")
    assert card["dataset"]["fingerprint"] == \
        json.loads((trainable_dataset / "preprocessing_metadata.json").read_text())["fingerprint"]
    assert card["training"]["epochs_run"] == config.epochs == 6 and card["training"]["resumed"] == 0
    done = state(base)
    assert done is not None and done["epochs_done"] == config.epochs
    assert {done["latest_file"], done["best_file"]} <= {p.name for p in (base / "checkpoints").iterdir()}
    predictions = vitalflow.load_model(model).predict_dataset(str(base / "input" / "data" / "dataset"), "test")
    assert predictions.predicted.shape == (card["dataset"]["windows"]["test"], 8)


def test_a_job_stopped_by_sigterm_exits_75_and_its_rerun_resumes(finished_job, trainable_dataset, tiny_config,
                                                                  tmp_path):
    base, entry_py, env = fake_job(tmp_path, trainable_dataset, tiny_config)
    process = start(entry_py, env)
    deadline = time.monotonic() + TIMEOUT
    try:
        while process.poll() is None and time.monotonic() < deadline and (state(base) or {}).get("epochs_done", 0) < 1:
            time.sleep(0.02)
        assert process.poll() is None, "the job ended before its first checkpoint:\n" + process.communicate()[1][-3000:]
        assert (state(base) or {}).get("epochs_done", 0) >= 1, "no checkpoint in time"
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)  # entry.py exec'd vitalflow: the signal reaches it directly
        _, stderr = process.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 75, stderr[-3000:]
    assert took < 10, f"exit took {took:.1f} s after SIGTERM"
    assert not (base / "model" / "model_card.json").exists()
    stopped_at = state(base)["epochs_done"]
    assert 1 <= stopped_at < 6
    again = run_job(entry_py, env)  # SageMaker reruns the same job with the synced checkpoints
    assert again.returncode == 0, again.stderr[-5000:]
    card = json.loads((base / "model" / "model_card.json").read_text())
    assert card["training"]["resumed"] == 1 and card["training"]["epochs_run"] == 6
    assert state(base)["epochs_done"] == 6
    # resumed bit for bit: the uninterrupted job's weights
    uninterrupted = finished_job[0] / "model"
    assert all(np.array_equal(a, b) for a, b in zip(weights(base / "model"), weights(uninterrupted), strict=True))
    assert card["training"]["history"] == \
        json.loads((uninterrupted / "model_card.json").read_text())["training"]["history"]
