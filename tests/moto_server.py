"""moto in server mode on loopback: a stand-in for the SageMaker *control plane* only.

The real S3 tests run on SeaweedFS (``tests/seaweed.py``); moto serves SageMaker's
Create/Describe/List job calls here (its S3 may hold the code tarball a launch uploads). moto
keeps only part of a job request (a processing job's ``ProcessingResources`` and ``Environment``,
a training job's ``Environment`` are dropped), so the server also records every request it
receives (moto's recorder, ``MOTO_RECORDER_FILEPATH``): :meth:`MotoServer.requests` returns the
JSON bodies of the SageMaker calls as they arrived over HTTP.

Usage::

    server = MotoServer(tmp_path)       # picks a free loopback port
    server.start()                      # ``moto_server`` subprocess, ~1-2 s until it answers
    server.env()                        # AWS_* variables that point boto3 at it
    server.requests("CreateProcessingJob")
    server.reset()                      # forget all jobs, buckets and recorded requests
    server.stop()
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"
REGION = "us-east-1"
#: Variables that would send boto3 elsewhere or change its credentials: removed for the tests.
ENV_UNSET = (
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL_SAGEMAKER", "VITALFLOW_SAGEMAKER_ROLE",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _moto_command(port: int) -> list[str]:
    exe = Path(sys.executable).with_name("moto_server")
    if exe.exists():
        return [str(exe), "-H", HOST, "-p", str(port)]
    found = shutil.which("moto_server")
    if found:
        return [found, "-H", HOST, "-p", str(port)]
    return [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]


class MotoServer:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.port = free_port()
        self.endpoint = f"http://{HOST}:{self.port}"
        self.recording = self.root / "moto-recording.jsonl"
        self.log = self.root / "moto.log"
        self.process: subprocess.Popen | None = None
        # No proxy for loopback, whatever the environment says.
        self._http = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def start(self, timeout_s: float = 30.0) -> None:
        env = dict(os.environ, MOTO_RECORDER_FILEPATH=str(self.recording), MOTO_ENABLE_RECORDING="True")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(_moto_command(self.port), env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.process.returncode}: {self.log.read_text()[-2000:]}")
            try:
                self._post("/moto-api/recorder/reset-recording")
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto_server did not answer on {self.endpoint} within {timeout_s} s")

    def _post(self, path: str) -> bytes:
        request = urllib.request.Request(self.endpoint + path, data=b"", method="POST")
        with self._http.open(request, timeout=5) as answer:
            return answer.read()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.process = None

    def reset(self) -> None:
        """Forget every job, bucket and recorded request."""
        self._post("/moto-api/reset")
        self._post("/moto-api/recorder/reset-recording")

    def env(self) -> dict[str, str]:
        """AWS_* variables that make boto3 talk to this server with fake credentials, never asking
        instance metadata (a non-loopback address) nor reading ``~/.aws``."""
        missing = str(self.root / "no-such-aws-file")
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_CONFIG_FILE": missing,
            "AWS_SHARED_CREDENTIALS_FILE": missing,
            "AWS_EC2_METADATA_DISABLED": "true",
            "NO_PROXY": f"{HOST},localhost",
            "no_proxy": f"{HOST},localhost",
        }

    def requests(self, operation: str) -> list[dict]:
        """JSON bodies of the SageMaker ``operation`` requests received since the last reset."""
        found = []
        if not self.recording.exists():
            return found
        for line in self.recording.read_text().splitlines():
            entry = json.loads(line)
            headers = {k.lower(): v for k, v in entry.get("headers", {}).items()}
            if headers.get("x-amz-target") != f"SageMaker.{operation}":
                continue
            body = entry.get("body") or "{}"
            if entry.get("body_encoded"):
                import base64

                body = base64.b64decode(body).decode()
            found.append(json.loads(body))
        return found
