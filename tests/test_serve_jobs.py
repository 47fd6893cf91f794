"""Asynchronous jobs end to end: the service in a subprocess on 127.0.0.1 (uvicorn, the real app
with the jobs router and its worker processes), recordings in S3 (the SeaweedFS server of the
`s3_server` fixture), a webhook receiver on 127.0.0.1.

- jobs complete with their timeline (the same numbers as `predict_recording` here) and summary,
  one notification each; a repeated jobId is the same job;
- bad input: a 4xx or a failed job with the reason, and the service stays healthy;
- SIGKILL of one worker, then of the whole server, while jobs are in flight; restart: every
  accepted job completes exactly once (one result, one completion), status answerable throughout.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from serve_harness import Server, WebhookReceiver, wait_final  # noqa: E402

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("fastapi")

N_RECORDINGS = 4
STATUS_KEYS = {"jobId", "status", "processing_time_seconds", "output_type", "result", "completedTimeStamp", "error"}


pytestmark = pytest.mark.usefixtures("own_registry")  # trainings here register in a registry of this module's own


@pytest.fixture(scope="module")
def model(trainable_dataset, tiny_config, tmp_path_factory):
    import subprocess

    out = tmp_path_factory.mktemp("serve-model") / "model"
    r = subprocess.run([sys.executable, "-m", "vitalflow", "train", str(trainable_dataset), "--output", str(out),
                        "--config", str(tiny_config)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


@pytest.fixture(scope="module")
def recordings(s3_server, tmp_path_factory):
    """Short synthetic recordings in S3 below ``s3://<bucket>/<run>/in/``; their clinical rows."""
    import csv

    from vitalflow.synth import synth_corpus

    root = tmp_path_factory.mktemp("serve-rec")
    synth_corpus(root, N_RECORDINGS, seed=61, hours=0.3, waves=False)
    run = f"serve-{uuid.uuid4().hex[:8]}"
    client = s3_server.client()
    for i in range(1, N_RECORDINGS + 1):
        client.upload_file(str(root / f"{i:04d}.vital"), s3_server.bucket, f"{run}/in/{i:04d}.vital")
    client.put_object(Bucket=s3_server.bucket, Key=f"{run}/in/garbage.vital", Body=b"not a vital file\n" * 50)
    client.put_object(Bucket=s3_server.bucket, Key=f"{run}/secret/0001.vital",
                      Body=(root / "0001.vital").read_bytes())
    with open(root / "clinical.csv", newline="") as f:
        rows = {int(r["caseid"]): r for r in csv.DictReader(f)}
    patients = {i: {k: rows[i][k] for k in ("age", "sex", "height", "weight", "bmi", "asa")} for i in rows}
    return {"root": root, "prefix": f"s3://{s3_server.bucket}/{run}", "run": run, "patients": patients}


def settings_for(model, recordings, state: Path, webhook: str, **extra) -> dict:
    prefix = recordings["prefix"]
    return {"model": str(model), "state_dir": str(state), "input_prefixes": [f"{prefix}/in"],
            "output_prefix": f"{prefix}/{state.name}/results", "failure_prefix": f"{prefix}/{state.name}/failures",
            "webhook": webhook, **extra}


def job(job_id: str, i: int, recordings, **extra) -> dict:
    return {"jobId": job_id, "requestTime": "2026-01-01T00:00:00Z", "s3Key": f"{i:04d}.vital",
            "patient": recordings["patients"][i], **extra}


def s3_names(s3_server, prefix: str) -> list[str]:
    client = s3_server.client()
    names, token = [], None
    while True:
        kw = {"Bucket": s3_server.bucket, "Prefix": prefix}
        if token:
            kw["ContinuationToken"] = token
        page = client.list_objects_v2(**kw)
        names += [o["Key"] for o in page.get("Contents", [])]
        token = page.get("NextContinuationToken")
        if not token:
            return names


@pytest.fixture(scope="module")
def service(model, recordings, tmp_path_factory):
    state = tmp_path_factory.mktemp("svc")
    with WebhookReceiver(fail_first=2) as hook:
        server = Server(settings_for(model, recordings, state, hook.url, workers=1, lease_s=5),
                        state / "server.log").start()
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                yield server, client, hook, state
        finally:
            server.stop()


def test_jobs_complete_with_timeline_summary_and_one_notification(service, recordings, model, s3_server):
    server, client, hook, state = service
    ids = [f"ok-{i}" for i in range(1, N_RECORDINGS + 1)]
    for i, job_id in enumerate(ids, start=1):
        body = job(job_id, i, recordings) if i % 2 else {
            **{k: v for k, v in job(job_id, i, recordings).items() if k != "s3Key"},
            "inputUri": f"{recordings['prefix']}/in/{i:04d}.vital", "options": {"csv": True}}
        r = client.post("/jobs", json=body)
        assert r.status_code == 202, r.text
        assert set(r.json()) == STATUS_KEYS and r.json()["status"] in ("Queued", "InProgress")
    again = client.post("/jobs", json=job(ids[0], 1, recordings))
    assert again.status_code == 200 and again.json()["jobId"] == ids[0]
    docs = wait_final(client, ids, 300)
    from vitalflow.model.predictor import load_model
    from vitalflow.predict.recording import predict_recording

    predictor = load_model(model)
    s3 = s3_server.client()
    for i, job_id in enumerate(ids, start=1):
        doc = docs[job_id]
        assert set(doc) == STATUS_KEYS and doc["status"] == "Completed", doc
        assert doc["error"] is None and doc["processing_time_seconds"] > 0 and doc["completedTimeStamp"]
        assert doc["output_type"] == "application/vnd.apache.parquet"
        result = doc["result"]
        assert result["timeline"].endswith(f"/{job_id}/timeline.parquet") and ("csv" in result) == (i % 2 == 0)
        bucket_key = result["timeline"].removeprefix("s3://").split("/", 1)
        table = pq.read_table(pa.BufferReader(s3.get_object(Bucket=bucket_key[0], Key=bucket_key[1])["Body"].read()))
        summary = json.loads(s3.get_object(Bucket=bucket_key[0], Key=bucket_key[1].replace(
            "timeline.parquet", "summary.json"))["Body"].read())
        data = (recordings["root"] / f"{i:04d}.vital").read_bytes()
        expected = predict_recording(data, recordings["patients"][i], predictor)
        assert table.num_rows == expected.rows == summary["rows"] == result["rows"] > 0
        assert table.column("time_s").to_pylist() == expected.time_s.tolist()
        for j, (name, _) in enumerate(expected.targets):
            np.testing.assert_allclose(table.column(f"{name}_pred").to_numpy(), expected.predicted[:, j], atol=1e-5)
            assert summary["targets"][name]["last_predicted"] == pytest.approx(expected.predicted[-1, j], abs=1e-5)
        assert summary["time_span"]["first_s"] == int(expected.time_s[0])
    # the flaky receiver refused the first two deliveries: retries got every job through, once
    _wait_for(lambda: set(ids) <= set(hook.by_job()), 30)
    notified = hook.by_job()
    assert {j: [d["status"] for d in notified.get(j, [])] for j in ids} == {j: ["Completed"] for j in ids}
    listing = client.get("/jobs", params={"limit": 2}).json()
    assert len(listing["jobs"]) == 2 and listing["next_offset"] == 2 and listing["counts"]["Completed"] >= 4


def healthy(client) -> None:
    assert client.get("/ping").status_code == 200
    assert client.get("/jobs", params={"limit": 1}).status_code == 200


def test_bad_input_is_refused_or_fails_with_the_reason_and_the_service_stays_healthy(service, recordings,
                                                                                     s3_server):
    server, client, hook, state = service
    r = client.post("/jobs", content=b'{"jobId": "x", "s3Key": ', headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    healthy(client)
    r = client.post("/jobs", json={"requestTime": "t", "s3Key": "0001.vital"})
    assert r.status_code == 422 and "jobId: missing" in r.json()["error"]  # vitalflow.errors.one_line
    healthy(client)
    r = client.post("/jobs", json={**job("bad-key", 1, recordings), "s3key": "0001.vital", "colour": "red"})
    error = r.json()["error"]
    assert r.status_code == 422 and "colour: unknown key" in error and "s3key: unknown key" in error, error
    r = client.post("/jobs", json={**job("bad-patient", 1, recordings), "patient": {"agee": 3}})
    assert r.status_code == 422 and "agee" in r.json()["error"]
    r = client.post("/jobs", json={**job("bad-age", 1, recordings), "patient": {"age": "old", "weight": 60}})
    assert r.status_code == 422 and "age 'old' is not a number" in r.json()["error"]
    r = client.post("/jobs", json={"jobId": "no-location"})
    assert r.status_code == 422 and "exactly one of s3Key" in r.json()["error"]
    r = client.post("/jobs", json={"jobId": "../etc", "s3Key": "0001.vital"})
    assert r.status_code == 422 and "jobId" in r.json()["error"]
    healthy(client)
    prefix = recordings["prefix"]
    outside = [
        {"s3Key": "../secret/0001.vital"},
        {"inputUri": f"{prefix}/secret/0001.vital"},
        {"inputUri": f"{prefix}/in/../secret/0001.vital"},
        {"inputUri": f"s3://another-bucket/{recordings['run']}/in/0001.vital"},
        {"inputUri": f"{prefix}/in-other/0001.vital"},
        {"inputUri": "/etc/passwd"},
        {"inputUri": f"{prefix}/in/0001.vital?X-Amz-Credential=AKIA"},
    ]
    for n, location in enumerate(outside):
        r = client.post("/jobs", json={"jobId": f"outside-{n}", **location})
        assert r.status_code == 400, (location, r.text)
        assert "AKIA" not in r.text
        assert client.get(f"/jobs/outside-{n}").status_code == 404  # refused jobs are not queued
    healthy(client)
    r = client.post("/jobs", json={"jobId": "garbage", "s3Key": "garbage.vital", "patient": recordings["patients"][1]})
    assert r.status_code == 202
    r = client.post("/jobs", json={"jobId": "missing", "s3Key": "9999.vital", "patient": recordings["patients"][1]})
    assert r.status_code == 202
    docs = wait_final(client, ["garbage", "missing"], 120)
    assert docs["garbage"]["status"] == "Failed" and "garbage.vital" in docs["garbage"]["error"]
    assert docs["garbage"]["result"] is None and docs["garbage"]["output_type"] is None
    assert docs["missing"]["status"] == "Failed" and "9999.vital" in docs["missing"]["error"]
    failure = json.loads(s3_server.client().get_object(
        Bucket=s3_server.bucket, Key=f"{recordings['run']}/{state.name}/failures/garbage.json")["Body"].read())
    assert failure["status"] == "Failed" and failure["error"] == docs["garbage"]["error"]
    assert failure["attempts"] == 1 and failure["request"]["s3Key"] == "garbage.vital"
    _wait_for(lambda: "garbage" in hook.by_job(), 30)  # notified just after the status changes
    assert [d["status"] for d in hook.by_job()["garbage"]] == ["Failed"]
    assert client.get("/jobs/never-submitted").status_code == 404
    assert client.delete("/jobs/never-submitted").status_code == 404
    assert client.get("/jobs", params={"status": "Nope"}).status_code == 422
    healthy(client)


def test_cancel_a_queued_job(service, recordings):
    server, client, hook, state = service
    # a queue long enough that the last job is still queued when cancelled
    ids = [f"cancel-{k}" for k in range(6)]
    for k, job_id in enumerate(ids):
        assert client.post("/jobs", json=job(job_id, 1 + k % N_RECORDINGS, recordings)).status_code == 202
    r = client.delete(f"/jobs/{ids[-1]}")
    assert r.status_code == 200 and r.json()["status"] == "Cancelled"
    docs = wait_final(client, ids, 300)
    assert docs[ids[-1]]["status"] == "Cancelled" and docs[ids[-1]]["result"] is None
    assert all(docs[j]["status"] == "Completed" for j in ids[:-1])
    assert ids[-1] not in hook.by_job()
    assert client.post("/jobs", json=job(ids[-1], 1, recordings)).json()["status"] == "Cancelled"  # idempotent


def test_sigkill_of_a_worker_and_of_the_server_loses_and_duplicates_nothing(model, recordings, s3_server,
                                                                           tmp_path):
    state = tmp_path / "crash"
    n = 24
    ids = [f"crash-{k:02d}" for k in range(n)]
    with WebhookReceiver() as hook:
        settings = settings_for(model, recordings, state, hook.url, workers=2, lease_s=3)
        server = Server(settings, tmp_path / "server.log").start()
        try:
            client = httpx.Client(base_url=server.url, timeout=30)
            for k, job_id in enumerate(ids):
                assert client.post("/jobs", json=job(job_id, 1 + k % N_RECORDINGS, recordings)).status_code == 202
            workers = server.wait_workers(2)
            _wait_for(lambda: _count(client, "InProgress") > 0, 120)
            os.kill(workers[0], signal.SIGKILL)  # one worker, mid-job
            _wait_for(lambda: _count(client, "Completed") >= 6, 240)
            assert client.get("/jobs/crash-00").status_code == 200  # answerable throughout
            server.kill()  # the whole server, with jobs in flight
            gone = [p for p in workers if Path(f"/proc/{p}").exists()]
            _wait_for(lambda: not any(Path(f"/proc/{p}").exists() and "Z" not in _state(p) for p in gone), 30)
            in_flight = _db_counts(state)
            assert in_flight["Completed"] < n  # it did die with work left
            server = Server(settings, tmp_path / "server.log").start()  # same port, same state
            client = httpx.Client(base_url=server.url, timeout=30)
            assert client.get(f"/jobs/{ids[-1]}").status_code == 200
            docs = wait_final(client, ids, 420)
            # the restarted service still refuses a duplicate and still knows every job
            assert client.post("/jobs", json=job(ids[0], 1, recordings)).status_code == 200
            _wait_for(lambda: sqlite3.connect(state / "jobs.db").execute(
                "SELECT COUNT(*) FROM jobs WHERE notified = 0").fetchone()[0] == 0, 60)
        finally:
            server.stop()
        assert all(d["status"] == "Completed" for d in docs.values()), {j: d for j, d in docs.items()
                                                                         if d["status"] != "Completed"}
        db = sqlite3.connect(state / "jobs.db")
        rows = db.execute("SELECT job_id, completions, attempts, notified FROM jobs").fetchall()
        assert sorted(r[0] for r in rows) == ids
        assert all(r[1] == 1 for r in rows)  # each finished exactly once
        assert all(r[3] == 1 for r in rows)  # and notified
        assert any(r[2] > 1 for r in rows)  # some were taken again after a kill
        results = s3_names(s3_server, f"{recordings['run']}/{state.name}/results/")
        summaries = sorted(k.split("/")[-2] for k in results if k.endswith("/summary.json"))
        assert summaries == ids  # one result per job
        assert not [k for k in results if not k.endswith(("/summary.json", "/timeline.parquet"))]
        notified = hook.by_job()  # the server was stopped after every job was notified (notified = 1 above)
        assert sorted(notified) == ids
        assert all(d["status"] == "Completed" for docs_ in notified.values() for d in docs_)
        duplicates = sum(len(v) - 1 for v in notified.values())
        assert duplicates <= 2  # at-least-once: only a kill between a POST and its record repeats one


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return "Z"


def _count(client, status: str) -> int:
    return client.get("/jobs", params={"limit": 1}).json()["counts"][status]


def _db_counts(state: Path) -> dict[str, int]:
    db = sqlite3.connect(state / "jobs.db")
    got = dict(db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())
    return {s: got.get(s, 0) for s in ("Queued", "InProgress", "Completed", "Failed", "Cancelled")}


def _wait_for(condition, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"condition not met in {timeout_s} s")


def test_a_job_over_the_timeout_fails_with_the_reason_and_the_worker_comes_back(model, recordings, s3_server,
                                                                                  tmp_path):
    from vitalflow.synth import synth_corpus

    synth_corpus(tmp_path / "long", 1, seed=62, hours=2.0, waves=False)
    s3_server.client().upload_file(str(tmp_path / "long" / "0001.vital"), s3_server.bucket,
                                   f"{recordings['run']}/in/long.vital")
    state = tmp_path / "timeout"
    with WebhookReceiver() as hook:
        server = Server(settings_for(model, recordings, state, hook.url, workers=1, job_timeout_s=0.4),
                        tmp_path / "server.log").start()
        try:
            client = httpx.Client(base_url=server.url, timeout=30)
            first = server.wait_workers(1)
            body = {"jobId": "too-long", "s3Key": "long.vital", "patient": recordings["patients"][1]}
            assert client.post("/jobs", json=body).status_code == 202
            doc = wait_final(client, ["too-long"], 120)["too-long"]
            assert doc["status"] == "Failed" and "job timeout of 0.4 s" in doc["error"], doc
            _wait_for(lambda: "too-long" in hook.by_job(), 30)  # notified just after the status changes
            assert [d["status"] for d in hook.by_job()["too-long"]] == ["Failed"]
            _wait_for(lambda: server.workers() and server.workers() != first, 60)  # restarted
            healthy(client)
        finally:
            server.stop()


def test_a_job_cancelled_while_it_runs_is_dropped_and_writes_nothing(model, recordings, tmp_path):
    """In-process: the worker's own code with a job cancelled after it was claimed."""
    import shutil

    from vitalflow.model.predictor import load_model
    from vitalflow.serve.queue import JobQueue
    from vitalflow.serve.settings import ServeSettings
    from vitalflow.serve.worker import run_claim

    (tmp_path / "in").mkdir()
    shutil.copy(recordings["root"] / "0001.vital", tmp_path / "in" / "0001.vital")
    settings = ServeSettings(model=str(model), state_dir=tmp_path / "state", input_prefixes=(str(tmp_path / "in"),),
                             lease_s=0.3)
    queue = JobQueue(settings.database, settings.lease_s)
    queue.submit("c", {"jobId": "c", "s3Key": "0001.vital", "patient": recordings["patients"][1]})
    claim = queue.claim("w")
    assert queue.cancel("c").status == "Cancelled"
    assert run_claim(settings, queue, load_model(model), claim, "w") == "abandoned"
    job = queue.get("c")
    assert job.status == "Cancelled" and job.completions == 0 and job.result is None
    assert not list((tmp_path / "state").glob("results/**/*.*"))


def test_in_a_sagemaker_container_a_job_runs_inside_the_invocation(model, recordings, tmp_path):
    """SageMaker's asynchronous endpoint posts each request object to /invocations and stores the
    answer (or, for an error status, the body at the failure path): so in container mode the job
    runs inside the call and the answer is the finished status document; no job workers start."""
    from vitalflow.predict.recording import predict_recording
    from vitalflow.model.predictor import load_model

    state = tmp_path / "sm"
    settings = settings_for(model, recordings, state, None, sagemaker=True)
    server = Server(settings, tmp_path / "sm.log").start()
    try:
        assert server.workers() == []
        with httpx.Client(base_url=server.url, timeout=120) as client:
            r = client.post("/invocations", json=job("sm-1", 2, recordings))
            assert r.status_code == 200, r.text
            doc = r.json()
            assert doc["status"] == "Completed" and doc["jobId"] == "sm-1" and doc["result"]["rows"] > 0
            expected = predict_recording((recordings["root"] / "0002.vital").read_bytes(), recordings["patients"][2],
                                         load_model(model))
            assert doc["result"]["rows"] == expected.rows
            bad = client.post("/invocations", json={"jobId": "sm-2", "requestTime": "2026-01-01T00:00:00Z",
                                                    "s3Key": "garbage.vital"})
            assert bad.status_code in (400, 422) and bad.json()["status"] == "Failed" and bad.json()["error"]
            outside = client.post("/invocations", json={"jobId": "sm-3", "requestTime": "2026-01-01T00:00:00Z",
                                                        "inputUri": f"{recordings['prefix']}/secret/0001.vital"})
            assert outside.status_code == 400 and outside.json()["status"] == "Failed"
            assert client.get("/ping").status_code == 200
    finally:
        server.stop()
