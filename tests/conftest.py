"""Shared fixtures: a small synthetic corpus, made once per test session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from seaweed import s3_server  # noqa: F401,E402  (the SeaweedFS S3 server fixture)

CORPUS_CASES = 8

# -- the fast inner loop: ``pytest -m "not slow"`` (README "Tests") --------------------------------
#: A test is slow when it needs one of these fixtures (a preprocessing run of the big corpus, a
#: trained model's dataset, the S3 server) or lives in one of these modules (real servers,
#: browsers, training, crash and load runs); everything else is the fast subset.
SLOW_FIXTURES = frozenset({"big_corpus", "clean_run", "trainable_dataset", "s3_server"})
SLOW_MODULES = frozenset({
    "test_app_browser", "test_app_pages_browser", "test_serve_http", "test_serve_jobs", "test_long_runs",
    "test_multihost", "test_decision_quality", "test_decision_lifecycle", "test_tune", "test_train_s3",
    "test_train_job", "test_lifecycle", "test_deploy", "test_launch_predict", "test_launch_train",
})


#: And these, by name: measured at 1 s or more among the rest (the file says how to regenerate it).
SLOW_TESTS = frozenset(line.strip() for line in (Path(__file__).parent / "slow_tests.txt").read_text().splitlines()
                       if line.strip() and not line.startswith("#"))


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if getattr(item, "module", None) else ""
        test = item.nodeid.split("[", 1)[0]
        if (module in SLOW_MODULES or test in SLOW_TESTS
                or SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ()))):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """8 synthetic recordings (no waves, ~40 min each) and their clinical table. Do not modify."""
    from vitalflow.synth import synth_corpus

    root = tmp_path_factory.mktemp("corpus")
    synth_corpus(root, CORPUS_CASES, seed=3, hours=0.7, waves=False)
    return root


@pytest.fixture
def corpus_copy(corpus, tmp_path):
    """A private copy of the corpus that a test may damage."""
    dest = tmp_path / "in"
    shutil.copytree(corpus, dest)
    return dest


@pytest.fixture(scope="session")
def big_corpus(tmp_path_factory):
    """32 short recordings (no waves) for crash, signal, multi-host and S3 tests. Do not modify."""
    from outputs import CASES
    from vitalflow.synth import synth_corpus

    root = tmp_path_factory.mktemp("big")
    synth_corpus(root, CASES, seed=11, hours=0.9, waves=False)
    return root


@pytest.fixture(scope="session")
def clean_run(big_corpus, tmp_path_factory):
    """The decoded dataset of an uninterrupted single-host run over ``big_corpus``: the expectation
    every interrupted, resumed, multi-host or S3 run must meet."""
    from outputs import dataset
    from typer.testing import CliRunner

    from vitalflow.cli import app

    out = tmp_path_factory.mktemp("clean") / "out"
    result = CliRunner().invoke(app, ["preprocess", "--input", str(big_corpus), "--clinical",
                                      str(big_corpus / "clinical.csv"), "--output", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return dataset(out)


#: A small network for training tests: seconds per run on 2 cores.
# task: values: the lifecycle tests written for the 30 s value model keep testing it; the decision
# model's lifecycle has its own tests (TINY_DECISION_CONFIG, tests/test_decision_lifecycle.py)
TINY_TRAIN_CONFIG = """\
task: values
network: {conv_filters: [8], conv_kernel: 3, pool: 5, lstm_units: [8, 8], dense_units: 8}
epochs: 6
early_stopping: null
batch_size: 64
"""


@pytest.fixture(scope="session")
def trainable_dataset(tmp_path_factory):
    """The demo's dataset (12 cases of 1.5 h, split seed 3: all three splits hold windows), verified. Do not modify."""
    from typer.testing import CliRunner

    from vitalflow.cli import app
    from vitalflow.synth import synth_corpus

    root = tmp_path_factory.mktemp("trainable")
    synth_corpus(root / "rec", 12, seed=0, hours=1.5, waves=False)
    (root / "run.yaml").write_text("split: {seed: 3}\n")
    result = CliRunner().invoke(app, ["preprocess", "--input", str(root / "rec"), "--clinical",
                                      str(root / "rec" / "clinical.csv"), "--output", str(root / "out"),
                                      "--config", str(root / "run.yaml"), "--quiet"])
    assert result.exit_code == 0, result.output
    return root / "out"


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("train-config") / "train.yaml"
    path.write_text(TINY_TRAIN_CONFIG)
    return path


@pytest.fixture(scope="session", autouse=True)
def _registry_in_a_temp_dir(tmp_path_factory):
    """No test writes the MLflow registry or the model cache into ``~``: the embedded store goes to
    a per-session ``VITALFLOW_HOME`` (MLFLOW_TRACKING_URI unset), downloads to a per-session
    ``VITALFLOW_CACHE`` (unless one is set). Subprocesses inherit both."""
    root = tmp_path_factory.mktemp("vitalflow-home")
    names = ("VITALFLOW_HOME", "MLFLOW_TRACKING_URI", "VITALFLOW_CACHE")
    saved = {name: os.environ.get(name) for name in names}
    os.environ["VITALFLOW_HOME"] = str(root / "home")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.setdefault("VITALFLOW_CACHE", str(root / "cache"))
    yield root
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def own_registry(tmp_path_factory):
    """A registry of the requesting module's own (its trainings' version numbers do not depend on
    other modules): ``VITALFLOW_HOME`` in a module temp dir, ``MLFLOW_TRACKING_URI`` unset."""
    saved = {k: os.environ.get(k) for k in ("VITALFLOW_HOME", "MLFLOW_TRACKING_URI")}
    os.environ["VITALFLOW_HOME"] = str(tmp_path_factory.mktemp("home"))
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
