"""Preprocessing from and to S3, against a real S3-compatible server (SeaweedFS on loopback)."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid

import pytest
from outputs import dataset
from typer.testing import CliRunner

from vitalflow.cli import app
from vitalflow.store import Store

runner = CliRunner()


@pytest.fixture
def bucket(s3_server):
    return s3_server.make_bucket(f"t-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def s3_corpus(big_corpus, bucket):
    """The shared 32-case corpus uploaded to s3://<bucket>/vital/."""
    store = Store(f"s3://{bucket}/vital")
    for path in sorted(big_corpus.iterdir()):
        store.write_bytes(path.name, path.read_bytes())
    return f"s3://{bucket}/vital"


def _download(uri: str, dest):
    store = Store(uri)
    for name in store.list():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(store.read_bytes(name))
    return dest


def _args(corpus_uri, out_uri, *extra):
    return ["preprocess", "--input", corpus_uri, "--clinical", f"{corpus_uri}/clinical.csv", "--output", out_uri,
            "--workers", "2", "--quiet", *map(str, extra)]


def test_full_preprocess_from_and_to_s3(s3_corpus, bucket, clean_run, tmp_path):
    out = f"s3://{bucket}/out"
    result = runner.invoke(app, _args(s3_corpus, out, "--commit-every", 8))
    assert result.exit_code == 0, result.output
    assert "success" in result.stdout
    assert runner.invoke(app, ["verify", out]).exit_code == 0
    local = _download(out, tmp_path / "copy")
    assert dataset(local) == clean_run
    again = runner.invoke(app, _args(s3_corpus, out))  # resume on S3: nothing to do
    assert again.exit_code == 0, again.output


def test_config_from_s3(s3_corpus, bucket):
    Store(f"s3://{bucket}/cfg").write_bytes("run.yaml", b"windows: {length_s: 300, step_s: 60, horizon_s: 30}\n")
    out = f"s3://{bucket}/out-cfg"
    result = runner.invoke(app, _args(s3_corpus, out, "--cases", "1-3", "--config", f"s3://{bucket}/cfg/run.yaml"))
    assert result.exit_code == 0, result.output


def test_server_outage_mid_run_is_retried_and_resume_completes(s3_server, s3_corpus, bucket, clean_run, tmp_path,
                                                               caplog, monkeypatch):
    from vitalflow.run.preprocess import RunOptions, preprocess
    from vitalflow.spec import load_config

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "12")
    caplog.set_level(logging.DEBUG)
    out = f"s3://{bucket}/out-outage"
    config, spec = load_config()
    outcome = {}

    def run():
        try:
            outcome["result"] = preprocess(s3_corpus, f"{s3_corpus}/clinical.csv", out, config, spec,
                                           options=RunOptions(workers=1, commit_every=1))
        except Exception as exc:  # the outage may outlast the retries: then resume must complete
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    ledger = Store(f"{out}/_ledger/h0")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not [n for n in ledger.list() if n.startswith("commit-")]:
        time.sleep(0.05)
    s3_server.kill()  # the server goes away in the middle of the run
    time.sleep(2.0)
    s3_server.start()
    thread.join(timeout=600)
    assert not thread.is_alive()
    retries = [r for r in caplog.records if "retr" in r.getMessage().lower() and r.name.startswith(("botocore", "aiobotocore", "s3fs"))]
    assert retries, "no retry was logged during the outage"
    result = runner.invoke(app, _args(s3_corpus, out))  # resume (or a no-op if the run survived)
    assert result.exit_code == 0, result.output
    assert dataset(_download(out, tmp_path / "copy")) == clean_run


def test_publication_is_atomic_no_partial_object_is_ever_visible(s3_server, bucket, tmp_path):
    store = Store(f"s3://{bucket}/atomic")
    staged = tmp_path / "big.part"
    payload = os.urandom(24 * 1024 * 1024)  # large enough for a multipart upload
    staged.write_bytes(payload)
    seen_sizes = []
    done = threading.Event()

    def watch():
        observer = Store(f"s3://{bucket}/atomic")
        while not done.is_set():
            if observer.exists("part.tfrecord"):
                seen_sizes.append(observer.size("part.tfrecord"))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        store.publish(staged, "part.tfrecord")
    finally:
        time.sleep(0.2)
        done.set()
        watcher.join()
    assert seen_sizes and set(seen_sizes) == {len(payload)}  # visible only whole
    assert store.read_bytes("part.tfrecord") == payload
    assert not staged.exists()


def test_a_failed_download_is_a_read_failure_naming_the_object(bucket):
    """The object is gone between the listing and the download (or S3 refuses it): the case's
    read fails naming the object, instead of an ``internal`` error."""
    from vitalflow.errors import VitalReadError
    from vitalflow.run.inputs import local_copy

    with pytest.raises(VitalReadError, match=rf"s3://{bucket}/vital/0042.vital: download failed \(FileNotFoundError"):
        with local_copy(f"s3://{bucket}/vital", "0042.vital"):
            pass


def test_storage_errors_on_s3_name_the_object(bucket):
    from vitalflow.errors import StoreError

    with pytest.raises(StoreError, match=rf"s3://{bucket}/out/none.json: reading failed \(FileNotFoundError"):
        Store(f"s3://{bucket}/out").read_bytes("none.json")
