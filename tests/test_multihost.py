"""Several hosts over one input: faked SageMaker processing-job and training-job containers.

Each host is a real `vitalflow preprocess` process whose `/opt/ml` is a temporary directory
(``VITALFLOW_SAGEMAKER_BASE``) holding the files SageMaker would write. No SageMaker (nor moto)
is involved: what a container sees is all these tests need.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from outputs import CASES, dataset
from typer.testing import CliRunner

from vitalflow.cli import app
from vitalflow.errors import VitalflowError
from vitalflow.sagemaker.env import LOCAL, PROCESSING_JOB, TRAINING_JOB, detect

runner = CliRunner()


def fake_job(base: Path, kind: str, current: str, hosts: list[str], hyperparameters: dict | None = None) -> Path:
    """``base`` as SageMaker lays out ``/opt/ml`` in a container of ``kind`` (PROCESSING_JOB or TRAINING_JOB)."""
    config = base / ("input/config" if kind == TRAINING_JOB else "config")
    config.mkdir(parents=True, exist_ok=True)
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": current, "hosts": hosts,
                                                            "network_interface_name": "eth0"}))
    if kind == TRAINING_JOB:
        (config / "hyperparameters.json").write_text(json.dumps(hyperparameters or {}))
        (base / "checkpoints").mkdir(exist_ok=True)
    return base


def start_host(base: Path, corpus: Path, out: Path, *extra) -> subprocess.Popen:
    env = dict(os.environ, VITALFLOW_SAGEMAKER_BASE=str(base), PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "vitalflow", "preprocess", "--input", str(corpus), "--clinical",
         str(corpus / "clinical.csv"), "--output", str(out), "--workers", "1", "--quiet", *map(str, extra)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ledger_cases(out: Path, host: str) -> set[int]:
    return {c["case_id"] for p in (out / "_ledger" / host).glob("commit-*.json")
            for c in json.loads(p.read_text())["cases"]}


def test_detect_local(tmp_path, monkeypatch):
    local = detect(tmp_path / "nothing")
    assert (local.kind, local.description, local.host_index, local.host_count) == ("local", "local", 0, 1)
    assert local.kind == LOCAL and local.checkpoint_dir is None
    monkeypatch.setenv("VITALFLOW_SAGEMAKER_BASE", str(tmp_path / "also-nothing"))
    assert detect().kind == LOCAL


def test_detect_a_processing_job_container(tmp_path, monkeypatch):
    proc = detect(fake_job(tmp_path / "p", PROCESSING_JOB, "algo-2", ["algo-1", "algo-2", "algo-3"]))
    assert (proc.kind, proc.host_index, proc.host_count) == ("processing-job", 1, 3)
    assert proc.description == "SageMaker processing-job container"
    assert proc.checkpoint_dir is None and proc.hyperparameters == {}
    monkeypatch.setenv("VITALFLOW_SAGEMAKER_BASE", str(tmp_path / "p"))  # how a test moves /opt/ml
    assert detect() == proc


def test_detect_a_training_job_container(tmp_path, monkeypatch):
    """The container a spot job runs in (and a future model-training job): resource config,
    hyperparameters and checkpoints under /opt/ml/input and /opt/ml/checkpoints."""
    hyperparameters = {"vitalflow_command": "preprocess", "cases": "1-10", "workers": 2}
    train = detect(fake_job(tmp_path / "t", TRAINING_JOB, "algo-1", ["algo-2", "algo-1"], hyperparameters))
    assert (train.kind, train.host_index, train.host_count) == ("training-job", 0, 2)
    assert train.description == "SageMaker training-job container"
    assert train.hyperparameters == {"vitalflow_command": "preprocess", "cases": "1-10", "workers": "2"}  # strings
    assert train.checkpoint_dir == tmp_path / "t" / "checkpoints"
    monkeypatch.setenv("SM_CURRENT_HOST", "algo-2")  # the framework toolkit's variables win
    monkeypatch.setenv("SM_HOSTS", json.dumps(["algo-1", "algo-2"]))
    assert detect(tmp_path / "t").host_index == 1


def test_a_training_job_container_wins_over_a_processing_job_layout(tmp_path):
    base = fake_job(fake_job(tmp_path / "both", PROCESSING_JOB, "algo-1", ["algo-1"]), TRAINING_JOB, "algo-1",
                    ["algo-1", "algo-2"])
    assert (detect(base).kind, detect(base).host_count) == (TRAINING_JOB, 2)


def test_an_unreadable_resource_config_names_the_file(tmp_path):
    base = fake_job(tmp_path / "p", PROCESSING_JOB, "algo-1", ["algo-1"])
    (base / "config" / "resourceconfig.json").write_text('{"current_host": "algo-9", "hosts": ["algo-1"]}')
    with pytest.raises(VitalflowError, match=r"resourceconfig.json: current_host 'algo-9' is not among hosts"):
        detect(base)


@pytest.mark.parametrize("kind", [PROCESSING_JOB, TRAINING_JOB])
def test_hosts_together_equal_a_single_host_run(big_corpus, clean_run, tmp_path, kind):
    hosts = ["algo-1", "algo-2", "algo-3"]
    out = tmp_path / "out"
    procs = [start_host(fake_job(tmp_path / h, kind, h, hosts), big_corpus, out, "--commit-every", 3) for h in hosts]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    shares = [ledger_cases(out, f"h{i}") for i in range(3)]
    assert not (shares[0] & shares[1]) and not (shares[0] & shares[2]) and not (shares[1] & shares[2])
    assert set().union(*shares) == set(range(1, CASES + 1))
    for i in range(3):
        host_card = json.loads((out / f"preprocessing_metadata-h{i}.json").read_text())
        assert host_card["status"] == "complete" and host_card["cases"]["selected"] == len(shares[i])
    result = runner.invoke(app, ["verify", str(out)])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "preprocessing_metadata.json").read_text())
    assert card["status"] == "complete" and card["cases"]["selected"] == CASES
    assert card["run"]["hosts"] == ["h0", "h1", "h2"]
    assert dataset(out) == clean_run
    merged = runner.invoke(app, ["verify", str(out), "--merge"])
    assert merged.exit_code == 0, merged.output
    card = json.loads((out / "preprocessing_metadata.json").read_text())
    assert {s: m["examples"] for s, m in card["merged"].items()} == {s: v["windows"] for s, v in card["splits"].items()}
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 0


def test_a_killed_host_resumes_from_its_own_ledger(big_corpus, clean_run, tmp_path):
    hosts = ["algo-1", "algo-2"]
    out = tmp_path / "out"
    bases = [fake_job(tmp_path / h, TRAINING_JOB, h, hosts) for h in hosts]
    victim = start_host(bases[1], big_corpus, out, "--commit-every", 1)
    deadline = time.monotonic() + 120
    while not list((out / "_ledger" / "h1").glob("commit-*.json")) and time.monotonic() < deadline:
        time.sleep(0.02)
    victim.kill()  # a reclaimed spot instance
    victim.wait()
    done_before = ledger_cases(out, "h1")
    assert done_before, "the victim committed nothing before it was killed"
    other = start_host(bases[0], big_corpus, out)
    _, err = other.communicate(timeout=300)
    assert other.returncode == 0, err
    incomplete = runner.invoke(app, ["verify", str(out)])
    assert incomplete.exit_code == 4 and "partial" in incomplete.stderr
    restarted = start_host(bases[1], big_corpus, out)
    _, err = restarted.communicate(timeout=300)
    assert restarted.returncode == 0, err
    card = json.loads((out / "preprocessing_metadata-h1.json").read_text())
    assert card["run"]["cases_processed"] == len(ledger_cases(out, "h1")) - len(done_before)
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 0
    assert dataset(out) == clean_run
