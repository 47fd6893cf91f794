"""The app's REST API through httpx (FastAPI's TestClient): the schema, jobs started, listed, read,
stopped and resumed through JSON, the token off loopback, and the roots every path must lie in."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("jinja2")
from fastapi.testclient import TestClient  # noqa: E402

from vitalflow.api.app import create_app  # noqa: E402
from vitalflow.api.runner import JobRunner  # noqa: E402
from vitalflow.api.settings import AppSettingsError, app_settings  # noqa: E402
from vitalflow.synth import synth_corpus  # noqa: E402


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("app-root")
    synth_corpus(root / "recordings", 3, seed=0, hours=0.3)
    return root


def _client(root, state, **options) -> TestClient:
    settings = app_settings(roots=(str(root),), state_dir=state, **options)
    return TestClient(create_app(settings, runner=JobRunner(settings, poll_s=0.2, stop_grace_s=20)))


def _wait(client, job_id, until=("succeeded", "failed", "stopped", "interrupted"), timeout=120, predicate=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in until and (predicate is None or predicate(job)):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s: {job}")


def test_openapi_lists_the_job_routes(root, tmp_path):
    with _client(root, tmp_path) as client:
        schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for kind in ("preprocess", "train", "evaluate", "predict"):
        body = paths[f"/api/jobs/{kind}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body["$ref"].endswith(f"{kind.capitalize()}Request")
    assert {"/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/stop", "/api/jobs/{job_id}/resume",
            "/api/jobs/{job_id}/log", "/jobs/{job_id}/events"} <= set(paths)
    assert "cases" in schema["components"]["schemas"]["PreprocessRequest"]["properties"]


def test_start_list_get_and_log_a_preprocessing_job(root, tmp_path):
    with _client(root, tmp_path / "state") as client:
        answer = client.post("/api/jobs/preprocess", json={"input": "recordings", "clinical": "recordings/clinical.csv",
                                                           "output": "out-api", "cases": "1-3", "workers": 1})
        assert answer.status_code == 201, answer.text
        job = answer.json()
        assert job["status"] == "queued" and job["command"].startswith("vitalflow preprocess --input ")
        assert [j["id"] for j in client.get("/api/jobs").json()["jobs"]] == [job["id"]]
        done = _wait(client, job["id"])
        assert done["status"] == "succeeded", client.get(f"/api/jobs/{job['id']}/log").text
        assert done["progress"]["cases"]["done"] == 3 and done["progress"]["cases"]["total"] == 3
        assert "success:" in client.get(f"/api/jobs/{job['id']}/log").text
        # an ended job cannot be stopped, nor a succeeded one resumed
        assert client.post(f"/api/jobs/{job['id']}/stop").status_code == 409
        assert client.post(f"/api/jobs/{job['id']}/resume").status_code == 409
        assert client.get("/api/jobs/nope").status_code == 404
    # the history outlives the app
    with _client(root, tmp_path / "state") as client:
        assert client.get(f"/api/jobs/{job['id']}").json()["status"] == "succeeded"


def test_stop_and_resume_a_training_job(trainable_dataset, tmp_path):
    root = trainable_dataset.parent
    (tmp_path / "long.yaml").write_text(
        "network: {conv_filters: [8], conv_kernel: 3, pool: 5, lstm_units: [8, 8], dense_units: 8}\n"
        "epochs: 400\nearly_stopping: null\nbatch_size: 64\n")
    settings = app_settings(roots=(str(root), str(tmp_path)), state_dir=tmp_path / "state")
    with TestClient(create_app(settings, runner=JobRunner(settings, poll_s=0.2, stop_grace_s=20))) as client:
        job = client.post("/api/jobs/train", json={"dataset": str(trainable_dataset), "output": str(tmp_path / "model"),
                                                   "config": str(tmp_path / "long.yaml"), "register_model": False}).json()
        _wait(client, job["id"], until=("running",), predicate=lambda j: "epoch" in j["progress"], timeout=180)
        assert client.post(f"/api/jobs/{job['id']}/stop").status_code == 200
        stopped = _wait(client, job["id"], timeout=60)
        assert stopped["status"] == "stopped" and stopped["exit_code"] == 75 and stopped["resumable"]
        resumed = client.post(f"/api/jobs/{job['id']}/resume").json()
        assert resumed["status"] == "queued" and "--overwrite" not in resumed["command"]
        _wait(client, job["id"], until=("running",), timeout=60)
        client.post(f"/api/jobs/{job['id']}/stop")
        assert _wait(client, job["id"], timeout=60)["status"] == "stopped"
        log = client.get(f"/api/jobs/{job['id']}/log?lines=1000").text
        assert "--- resumed at" in log


@pytest.mark.parametrize("field, value, message", [
    ("input", "../recordings", "'..' is not allowed"),
    ("input", "/etc", "outside the app's roots"),
    ("clinical", "/etc/passwd", "outside the app's roots"),
    ("output", "s3://bucket/out", "s3:// URIs are allowed only when a root is an s3:// prefix"),
    ("input", "s3://key:secret@bucket/x", "credentials in a URI"),
    ("cases", "1-x", "case selection item '1-x'"),
    ("config", "recordings/clinical.csv", "config"),
])
def test_bad_input_is_refused_and_starts_nothing(root, tmp_path, field, value, message):
    body = {"input": "recordings", "clinical": "recordings/clinical.csv", "output": "out", field: value}
    with _client(root, tmp_path) as client:
        answer = client.post("/api/jobs/preprocess", json=body)
        assert answer.status_code == 422
        assert answer.json()["error"].startswith(f"{field}: ") and message in answer.json()["error"]
        assert "secret" not in answer.text
        assert client.get("/api/jobs").json()["jobs"] == []


def test_a_symlink_out_of_the_roots_is_refused(root, tmp_path):
    (root / "escape").symlink_to("/etc")
    try:
        with _client(root, tmp_path) as client:
            answer = client.post("/api/jobs/preprocess", json={"input": "escape", "clinical": "escape/passwd",
                                                               "output": "out"})
        assert answer.status_code == 422 and "outside the app's roots" in answer.json()["error"]
    finally:
        (root / "escape").unlink()


def test_token_required_off_loopback(root, tmp_path):
    with pytest.raises(AppSettingsError, match="needs a token"):
        app_settings(host="0.0.0.0", roots=(str(root),), state_dir=tmp_path)
    with _client(root, tmp_path, host="0.0.0.0", token="s3cret") as client:
        assert client.get("/api/jobs").status_code == 401
        assert client.get("/api/jobs", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/api/jobs", headers={"authorization": "Bearer s3cret"}).status_code == 200
        # a page: to the login form; ?token= once sets an HttpOnly cookie that is not the token
        page = client.get("/jobs", headers={"accept": "text/html"}, follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        login = client.get("/jobs?token=s3cret", follow_redirects=False)
        assert login.status_code == 303 and login.headers["location"] == "/jobs"
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "s3cret" not in cookie
        assert client.get("/jobs").status_code == 200  # the cookie now
        assert client.get("/static/app.css", cookies={}).status_code == 200


def test_cross_site_posts_and_foreign_hosts_are_refused(root, tmp_path):
    with _client(root, tmp_path) as client:
        answer = client.post("/api/jobs/preprocess", headers={"origin": "https://evil.example"},
                             json={"input": "recordings", "clinical": "recordings/clinical.csv", "output": "o"})
        assert answer.status_code == 403
        assert client.get("/api/jobs", headers={"host": "evil.example"}).status_code == 400
        assert client.get("/api/jobs").json()["jobs"] == []
