"""What the service's job tests and `bench/serve_jobs.py` share: the server in a subprocess (the
real app, `vitalflow.serve.app.create_app`, on uvicorn on 127.0.0.1; a minimal app mounting the
jobs router and starting the workers if the real app cannot be imported), a webhook receiver on
127.0.0.1 that counts notifications, and process helpers (children, peak memory)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

SERVER = r"""
import sys, uvicorn
from vitalflow.serve.app import create_app
from vitalflow.serve.settings import ServeSettings
settings = ServeSettings.model_validate_json(sys.argv[1])
uvicorn.run(create_app(settings), host="127.0.0.1", port=settings.port, log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The service in a subprocess; ``kill()`` is SIGKILL (its workers die with it)."""

    def __init__(self, settings: dict, log: Path):
        self.settings = dict(settings, host="127.0.0.1")
        self.settings.setdefault("port", free_port())
        self.url = f"http://127.0.0.1:{self.settings['port']}"
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 180) -> Server:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-c", SERVER, json.dumps(self.settings, default=str)],
                                            stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited ({self.process.returncode}):\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/ping", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"server not ready in {timeout_s} s:\n{self.log.read_text()[-3000:]}")

    def workers(self) -> list[int]:
        """The job worker processes (spawned interpreters that are not the resource tracker)."""
        if self.process is None:
            return []
        found = []
        for pid in children(self.process.pid):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if "spawn_main" in cmd and "resource_tracker" not in cmd:
                found.append(pid)
        return found

    def wait_workers(self, n: int, timeout_s: float = 120) -> list[int]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pids = self.workers()
            if len(pids) >= n:
                return pids
            time.sleep(0.2)
        raise RuntimeError(f"{n} workers not started in {timeout_s} s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return found


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def hwm_mb(pid: int) -> float:
    """Peak resident memory of a live process (VmHWM)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that keeps every POSTed JSON document; ``fail_first`` answers
    that many requests with 500 first (a flaky receiver)."""

    def __init__(self, fail_first: int = 0):
        received = self.received = []
        lock = self.lock = threading.Lock()
        self.fail_left = fail_first
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    if outer.fail_left > 0:
                        outer.fail_left -= 1
                        code = 500
                    else:
                        received.append(json.loads(body))
                        code = 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def by_job(self) -> dict[str, list[dict]]:
        with self.lock:
            out: dict[str, list[dict]] = {}
            for doc in self.received:
                out.setdefault(doc["jobId"], []).append(doc)
            return out


def wait_final(client: httpx.Client, job_ids: list[str], timeout_s: float) -> dict[str, dict]:
    """Poll until every job is final; job id -> status document."""
    deadline = time.monotonic() + timeout_s
    docs: dict[str, dict] = {}
    pending = set(job_ids)
    while pending and time.monotonic() < deadline:
        for job_id in sorted(pending):
            r = client.get(f"/jobs/{job_id}")
            if r.status_code == 200 and r.json()["status"] in ("Completed", "Failed", "Cancelled"):
                docs[job_id] = r.json()
                pending.discard(job_id)
        if pending:
            time.sleep(0.3)
    if pending:
        raise AssertionError(f"{len(pending)} job(s) not final after {timeout_s} s: {sorted(pending)[:5]}")
    return docs
