"""`vitalflow serve` over real HTTP: the command itself in a subprocess (uvicorn on 127.0.0.1, a free
port), bounded in time and stopped by the test. /ping before and after the model loads (and after a
load that fails), synchronous predictions (JSON clinical and normalized, .npy, .vital) against an
independent oracle, every bad input class, the payload limit, the bearer token, and the CLI's
refusals (one ``Error:`` line)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from vitalflow.cli import app

SPEC_YAML = Path(__file__).resolve().parents[1] / "src" / "vitalflow" / "spec" / "master_poc.yaml"
START_TIMEOUT_S = 90
MAX_PAYLOAD_MB = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, process: subprocess.Popen, url: str, log: Path) -> None:
        self.process, self.url, self.log = process, url, log
        self.client = httpx.Client(base_url=url, timeout=60)

    def ping(self) -> httpx.Response:
        return self.client.get("/ping")

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def serve(*args: str, tmp: Path, env: dict | None = None, wait_ready: bool = True):
    """``vitalflow serve ARGS`` on a free loopback port; yields a `Server` once /ping answers
    (200 with ``wait_ready``); always stopped with SIGTERM (then SIGKILL) at the end."""
    port = free_port()
    log = tmp / f"serve-{port}.log"
    command = [sys.executable, "-m", "vitalflow", "serve", "--port", str(port), "--state-dir", str(tmp / "state"),
               *args]
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT,
                                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        server.first_pings = []
        while True:
            assert process.poll() is None, f"vitalflow serve exited {process.returncode}: {server.output()}"
            assert time.monotonic() < deadline, f"not ready in {START_TIMEOUT_S} s: {server.output()}"
            try:
                r = server.ping()
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            server.first_pings.append((r.status_code, r.json()))
            if r.status_code == 200 or not wait_ready:
                break
            time.sleep(0.05)
        yield server
    finally:
        server.client.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture(scope="module")
def model(trainable_dataset, tiny_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("serve-model") / "model"
    result = CliRunner().invoke(app, ["train", str(trainable_dataset), "--output", str(out), "--config",
                                      str(tiny_config), "--no-register"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    with serve("--model", str(model), "--max-payload-mb", str(MAX_PAYLOAD_MB), tmp=tmp, wait_ready=False) as s:
        deadline = time.monotonic() + START_TIMEOUT_S
        while s.ping().status_code != 200:
            assert time.monotonic() < deadline, s.output()
            time.sleep(0.05)
        yield s


# -- an independent oracle: the spec's YAML ranges, by hand ----------------------------------------
SPEC = yaml.safe_load(SPEC_YAML.read_text())


def by_hand(timeseries: np.ndarray, static: list) -> tuple[np.ndarray, np.ndarray]:
    """Clinical windows [N, 300, 16] and one static row -> normalized, from master_poc.yaml alone."""
    lo = np.array([f["range"][0] for f in SPEC["timeseries"]], float)
    hi = np.array([f["range"][1] for f in SPEC["timeseries"]], float)
    ts = np.clip((timeseries - lo) / (hi - lo) * 2 - 1, -1, 1)
    st = []
    for f, value in zip(SPEC["static"], static):
        if "categories" in f:
            st.append(f["categories"][value if value is not None else f["default"]])
        else:
            value = f["default"] if value is None else value
            a, b = f["range"]
            st.append(min(1.0, max(-1.0, (value - a) / (b - a) * 2 - 1)))
    return ts.astype(np.float32), np.tile(np.array(st, np.float32), (len(ts), 1))


def clinical_windows(n: int, seed: int = 0) -> np.ndarray:
    """Values spread over each feature's range and a little beyond it (clipping is exercised)."""
    rng = np.random.default_rng(seed)
    lo = np.array([f["range"][0] for f in SPEC["timeseries"]], float)
    hi = np.array([f["range"][1] for f in SPEC["timeseries"]], float)
    u = rng.uniform(-0.1, 1.1, size=(n, 300, len(lo)))
    return np.round(lo + u * (hi - lo), 3)


STATIC = [63, "M", 181, 84.5, None, 3]  # bmi unknown: the spec's default


@pytest.fixture(scope="module")
def expected(model):
    """`vitalflow.load_model(...).predict` on the hand-normalized arrays (clinical units)."""
    import vitalflow

    windows = clinical_windows(5)
    ts, st = by_hand(windows, STATIC)
    return windows, ts, st, vitalflow.load_model(model).predict(ts, st)


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def assert_close(got, want):
    np.testing.assert_allclose(np.asarray(got, float), np.asarray(want, float), rtol=1e-5, atol=1e-4)


# -- /ping ------------------------------------------------------------------------------------------
def test_ping_is_503_while_loading_then_200(server):
    statuses = [code for code, _ in server.first_pings]
    assert statuses[0] == 503 and server.first_pings[0][1] == {"status": "loading"}, server.first_pings
    assert server.ping().status_code == 200 and server.ping().json()["status"] == "ready"


def test_small_batches_get_xla_compiled_after_ready_and_answer_as_predict_on_batch(server, expected):
    """Once ready, /ping lists the batch sizes XLA has compiled (1, 2, 4, 8 within a bounded wait);
    the compiled path (padded batches of 1 and 3) answers as the model's own predict_on_batch."""
    deadline = time.monotonic() + 120
    while server.ping().json()["compiled_batches"] != [1, 2, 4, 8]:
        assert time.monotonic() < deadline, server.ping().json()
        time.sleep(0.2)
    windows, _, _, want = expected
    for n in (1, 3):
        r = server.client.post("/invocations", json={"timeseries": windows[:n].tolist(), "static": STATIC})
        assert r.status_code == 200, r.text
        assert_close(r.json()["predictions"], want[:n])


HOST_CHECK = """
import asyncio, json, sys, time
import numpy as np
from vitalflow.serve.model_host import ModelHost

model, arrays = sys.argv[1], np.load(sys.argv[2])
ts, st = np.repeat(arrays["ts"], 2, 0)[:9], np.repeat(arrays["st"], 2, 0)[:9]
host = ModelHost(model)
host.start()
assert host.wait(120) and host.state == "ready", host.error
deadline = time.monotonic() + 120
while host.compiled_batches != [1, 2, 4, 8]:
    assert time.monotonic() < deadline, host.compiled_batches
    time.sleep(0.1)
reference = np.asarray(host.predictor.model.predict_on_batch({"timeseries": ts, "static": st}))

def refused(*args, **kwargs):
    raise RuntimeError("predict_on_batch was called")

host.predictor.model.predict_on_batch = refused

async def both():
    small = {n: (await host.predict_normalized(ts[:n], st[:n])).tolist() for n in (1, 2, 3, 5, 8)}
    try:
        await host.predict_normalized(ts, st)
        nine = "answered"
    except RuntimeError as exc:
        nine = str(exc)
    return small, nine

small, nine = asyncio.run(both())
host.close()
print(json.dumps({"small": small, "nine": nine, "reference": reference.tolist()}))
"""


def test_the_model_host_answers_small_batches_without_predict_on_batch_once_compiled(model, expected, tmp_path):
    """In a process of its own (TensorFlow's threads must not run in the test process, which forks
    workers later): once XLA has compiled, batches of up to 8 windows never reach predict_on_batch
    (made to fail there) and equal it; a batch of 9 does reach it."""
    _, ts, st, _ = expected
    np.savez(tmp_path / "windows.npz", ts=ts, st=st)
    result = subprocess.run([sys.executable, "-c", HOST_CHECK, str(model), str(tmp_path / "windows.npz")],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    reference = np.asarray(out["reference"])
    for n, got in out["small"].items():
        np.testing.assert_allclose(np.asarray(got), reference[:int(n)], rtol=1e-5, atol=1e-5)
    assert out["nine"] == "predict_on_batch was called"


def test_a_model_that_fails_to_load_is_503_with_the_reason(model, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(model, broken)
    (broken / "model.keras").write_bytes(b"not a keras file")
    with serve("--model", str(broken), tmp=tmp_path, wait_ready=False) as s:
        deadline = time.monotonic() + START_TIMEOUT_S
        while (r := s.ping()).json()["status"] == "loading":
            assert time.monotonic() < deadline, s.output()
            time.sleep(0.1)
        assert r.status_code == 503 and r.json()["status"] == "failed"
        assert "unreadable Keras model" in r.json()["error"], r.json()
        r = s.client.post("/invocations", json={"timeseries": clinical_windows(1)[0].tolist(), "static": STATIC})
        assert r.status_code == 503 and "did not load" in r.json()["error"]


# -- synchronous predictions ------------------------------------------------------------------------
def test_json_clinical_equals_load_model_predict(server, expected):
    windows, _, _, want = expected
    r = server.client.post("/invocations", json={"timeseries": windows.tolist(), "static": STATIC})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["targets"] == SPEC["targets"]
    units = {f["name"]: f["unit"] for f in SPEC["timeseries"]}
    assert doc["units"] == [units[t] for t in SPEC["targets"]]
    assert_close(doc["predictions"], want)


def test_json_normalized_gives_the_same_predictions(server, expected):
    windows, ts, st, want = expected
    clinical = server.client.post("/invocations", json={"timeseries": windows.tolist(), "static": STATIC,
                                                         "units": "clinical"}).json()["predictions"]
    normalized = server.client.post("/invocations", json={"timeseries": ts.tolist(), "static": st.tolist(),
                                                           "units": "normalized"})
    assert normalized.status_code == 200, normalized.text
    assert_close(normalized.json()["predictions"], clinical)
    assert_close(normalized.json()["predictions"], want)


def test_one_window_and_one_static_per_window(server, expected):
    windows, _, st, want = expected
    one = server.client.post("/invocations", json={"timeseries": windows[0].tolist(), "static": STATIC})
    assert one.status_code == 200 and len(one.json()["predictions"]) == 1
    assert_close(one.json()["predictions"][0], want[0])
    per_window = server.client.post("/invocations", json={"timeseries": windows.tolist(), "static": [STATIC] * 5})
    assert_close(per_window.json()["predictions"], want)


def test_npy_request_json_and_npy_answers(server, expected):
    windows, ts, _, want = expected
    query = {"static": "63,M,181,84.5,,3"}
    r = server.client.post("/invocations", params=query, content=npy(windows),
                           headers={"Content-Type": "application/x-npy"})
    assert r.status_code == 200, r.text
    assert_close(r.json()["predictions"], want)
    r = server.client.post("/invocations", params=query, content=npy(windows.astype(np.float32)),
                           headers={"Content-Type": "application/x-npy", "Accept": "application/x-npy"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-npy"
    got = np.load(io.BytesIO(r.content), allow_pickle=False)
    assert got.shape == (5, 8) and r.headers["x-targets"].split(",") == SPEC["targets"]
    assert_close(got, want)
    r = server.client.post("/invocations", params={"static": ",".join(map(str, by_hand(windows, STATIC)[1][0])),
                                                   "units": "normalized"},
                           content=npy(ts), headers={"Content-Type": "application/x-npy"})
    assert r.status_code == 200, r.text
    assert_close(r.json()["predictions"], want)


def test_vital_recording_gives_its_timeline(server, model, trainable_dataset):
    pytest.importorskip("vitalflow.predict.recording")
    import vitalflow
    from vitalflow.predict.recording import predict_recording

    rec = Path(trainable_dataset).parent / "rec"
    with open(rec / "clinical.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if int(r["caseid"]) == 1)
    patient = {k: row[k] for k in ("age", "sex", "height", "weight", "bmi", "asa", "anestart", "aneend") if row.get(k)}
    body = (rec / "0001.vital").read_bytes()
    r = server.client.post("/invocations", params=patient, content=body,
                           headers={"Content-Type": "application/x-vital"})
    assert r.status_code == 200, r.text
    doc = r.json()
    want = predict_recording(body, patient, vitalflow.load_model(model))
    assert doc["rows"] == want.rows > 0 and doc["time_s"] == want.time_s.tolist()
    assert doc["targets"] == SPEC["targets"]
    assert_close(doc["predictions"], want.predicted)
    r = server.client.post("/invocations", params=patient, content=body,
                           headers={"Content-Type": "application/octet-stream", "Accept": "text/csv"})
    assert r.status_code == 200 and r.text.splitlines()[0].startswith("time_s,time_utc,Propofol_INF_pred")


# -- bad input: a 4xx with a one-line reason, and the service stays healthy ------------------------
WINDOW = np.full((300, 16), 50.0).tolist()
BAD = [
    ("malformed JSON", "application/json", b'{"timeseries": [', {}, 400, "malformed JSON"),
    ("not UTF-8", "application/json", b"\xff\xfe", {}, 400, "malformed JSON"),
    ("not an object", "application/json", b"[1, 2]", {}, 422, "expected a JSON object"),
    ("missing key", "application/json", json.dumps({"timeseries": WINDOW}).encode(), {}, 422, "static: missing"),
    ("unknown key", "application/json", json.dumps({"timeseries": WINDOW, "static": STATIC, "extra": 1}).encode(),
     {}, 422, "extra: unknown key"),
    ("wrong units", "application/json", json.dumps({"timeseries": WINDOW, "static": STATIC, "units": "si"}).encode(),
     {}, 422, "units"),
    ("wrong window shape", "application/json", json.dumps({"timeseries": WINDOW[:299], "static": STATIC}).encode(),
     {}, 422, "expected [300, 16] or [N, 300, 16], got [299, 16]"),
    ("ragged", "application/json", json.dumps({"timeseries": [[1, 2], [3]], "static": STATIC}).encode(), {}, 422,
     "not a rectangular array"),
    ("text in the window", "application/json", json.dumps({"timeseries": [["a"] * 16] * 300, "static": STATIC}).encode(),
     {}, 422, "timeseries"),
    ("NaN", "application/json", json.dumps({"timeseries": [[float("nan")] * 16] * 300, "static": STATIC}).encode(),
     {}, 422, "non-finite"),
    ("Infinity", "application/json", json.dumps({"timeseries": [[float("inf")] * 16] * 300, "static": STATIC}).encode(),
     {}, 422, "non-finite"),
    ("static too short", "application/json", json.dumps({"timeseries": WINDOW, "static": [1, 2]}).encode(), {}, 422,
     "static: expected 6 values, got 2"),
    ("unknown sex", "application/json", json.dumps({"timeseries": WINDOW, "static": [60, "X", 170, 70, 24, 2]}).encode(),
     {}, 422, "sex 'X' is not one of F, M"),
    ("normalized out of range", "application/json",
     json.dumps({"timeseries": WINDOW, "static": [0] * 6, "units": "normalized"}).encode(), {}, 422, "[-1, 1]"),
    ("query on a JSON request", "application/json", json.dumps({"timeseries": WINDOW, "static": STATIC}).encode(),
     {"static": "1"}, 422, "query: unknown parameter(s) static"),
    ("not .npy", "application/x-npy", b"hello", {"static": "60,M,170,70,24,2"}, 422, "not a NumPy .npy array"),
    ("truncated .npy", "application/x-npy", npy(np.zeros((2, 300, 16)))[:-7], {"static": "60,M,170,70,24,2"}, 422,
     "unreadable .npy"),
    ("pickled .npy", "application/x-npy", npy(np.array([{"a": 1}], dtype=object)), {"static": "60,M,170,70,24,2"},
     422, "unreadable .npy"),
    (".npy without static", "application/x-npy", npy(np.zeros((300, 16))), {}, 422, "static missing"),
    (".npy of another shape", "application/x-npy", npy(np.zeros((300, 17))), {"static": "60,M,170,70,24,2"}, 422,
     "got [300, 17]"),
    (".npy unknown parameter", "application/x-npy", npy(np.zeros((300, 16))), {"static": "1", "x": "2"}, 422,
     "unknown parameter(s) x"),
    ("not a .vital", "application/x-vital", b"this is not a recording", {"weight": "70"}, 400, "not a .vital file"),
    ("empty .vital", "application/octet-stream", b"", {"weight": "70"}, 400, "empty"),
    ("unknown patient key", "application/x-vital", b"x", {"wieght": "70"}, 422, "unknown key(s) wieght"),
    ("unsupported type", "text/plain", b"hello", {}, 415, "is not one of"),
]


@pytest.mark.parametrize("content_type, body, query, status, reason", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_a_4xx_with_a_one_line_reason(server, content_type, body, query, status, reason):
    r = server.client.post("/invocations", content=body, params=query, headers={"Content-Type": content_type})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert reason in error and "\n" not in error, error
    assert server.ping().status_code == 200


def test_oversize_bodies_are_413_before_being_read(server):
    limit = MAX_PAYLOAD_MB * 10**6
    r = server.client.post("/invocations", content=b"0" * (limit + 1), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "over the limit" in r.json()["error"]

    def chunks():  # no Content-Length: counted while it streams in
        for _ in range(limit // 2**20 + 2):
            yield b"1" * 2**20

    r = server.client.post("/invocations", content=chunks(), headers={"Content-Type": "application/x-vital"})
    assert r.status_code == 413, r.text
    assert server.ping().status_code == 200
    ok = server.client.post("/invocations", json={"timeseries": WINDOW, "static": STATIC})
    assert ok.status_code == 200


def test_asynchronous_body_without_the_jobs_modules_or_with_them(server):
    r = server.client.post("/invocations", json={"jobId": "j1", "requestTime": "2026-01-01T00:00:00Z",
                                                 "inputUri": "/nowhere/0001.vital"})
    if r.status_code == 503:
        assert r.json()["error"].startswith("asynchronous jobs are not available")
    else:  # the jobs modules are installed: a location outside every allowed prefix is refused
        assert r.status_code in (400, 422), r.text
    assert server.ping().status_code == 200


# -- security -----------------------------------------------------------------------------------------
def test_a_token_is_required_when_configured(model, tmp_path):
    token = "s3cr3t-token-value"
    body = {"timeseries": WINDOW, "static": STATIC}
    with serve("--model", str(model), tmp=tmp_path, env={"VITALFLOW_SERVE_TOKEN": token}) as s:
        assert s.client.get("/ping").status_code == 200  # SageMaker's health check carries no token
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {token}"},
                        {"Authorization": f"Bearer {token}x"}):
            r = s.client.post("/invocations", json=body, headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", r.text
            assert token not in r.text
        assert s.client.get("/jobs/x").status_code == 401
        r = s.client.post("/invocations", json=body, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
    assert token not in s.output()


def test_binding_beyond_loopback_needs_a_token(model, monkeypatch):
    monkeypatch.delenv("VITALFLOW_SERVE_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["serve", "--model", str(model), "--host", "0.0.0.0"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: binding to 0.0.0.0 needs a token"), result.output


def test_an_unknown_model_fails_the_command_with_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for model in (str(tmp_path / "nowhere"), "vitalflow@nosuchalias"):
        result = CliRunner().invoke(app, ["serve", "--model", model])
        assert result.exit_code == 1, result.output
        errors = [line for line in result.output.splitlines() if "Error" in line]  # (the registry may log its store)
        assert len(errors) == 1 and errors[0].startswith("Error: "), result.output
        assert "Traceback" not in result.output


def test_container_entry_serves_opt_ml_model_on_all_interfaces(model, tmp_path, monkeypatch):
    """SageMaker runs the image with ``serve`` alone: the model comes from /opt/ml/model, the port
    from SAGEMAKER_BIND_TO_PORT, and 0.0.0.0 needs no token there (IAM guards the endpoint)."""
    from vitalflow.errors import ModelError
    from vitalflow.cli.serve import serve_settings

    monkeypatch.delenv("VITALFLOW_SERVE_TOKEN", raising=False)
    monkeypatch.setenv("SAGEMAKER_BIND_TO_PORT", "8099")
    settings = serve_settings(None, sagemaker_model_dir=Path(model))
    assert (settings.model, settings.host, settings.port, settings.sagemaker) == (str(model), "0.0.0.0", 8099, True)
    with pytest.raises(ModelError, match="--model is required"):
        serve_settings(None, sagemaker_model_dir=tmp_path)
    outside = serve_settings(str(model))  # an explicit --model is not the container: loopback
    assert (outside.host, outside.sagemaker) == ("127.0.0.1", False)
