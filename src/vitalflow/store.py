"""A directory-like location for outputs and ledgers, on top of fsspec.

Everything the run writes goes through :class:`Store`, so a local folder and (with s3fs) an
``s3://bucket/prefix`` behave the same. The one promise that matters: an object exists under its
final name only when it is complete. Locally that is a temporary file in the same directory,
fsync, then ``os.replace``; on object stores a single PUT or a completed multipart upload.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path
from typing import Iterator

import fsspec
from fsspec.implementations.local import LocalFileSystem

from vitalflow.errors import OutputError

STAGING = "_staging"
DEFAULT_MAX_ATTEMPTS = 10


def s3_options() -> dict:
    """s3fs options: retries with exponential backoff come from botocore's retry configuration.

    The endpoint, region and credentials are found the standard way (``AWS_ENDPOINT_URL``,
    ``AWS_PROFILE``, ``AWS_REGION``, instance roles); ``AWS_MAX_ATTEMPTS`` and ``AWS_RETRY_MODE``
    tune the retries (default: 10 attempts, standard mode, which backs off exponentially).
    """
    retries = {
        "max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS)),
        "mode": os.environ.get("AWS_RETRY_MODE", "standard"),
    }
    return {"config_kwargs": {"retries": retries}, "skip_instance_cache": True, "use_listings_cache": False}


class Store:
    """Names are relative to the store's root and use ``/`` (``"_ledger/h0/run.json"``)."""

    def __init__(self, uri: str | os.PathLike):
        self.uri = str(uri).rstrip("/") or "/"
        options = s3_options() if self.uri.startswith("s3://") else {}
        self.fs, self.root = fsspec.core.url_to_fs(self.uri, **options)
        self.root = self.root.rstrip("/")
        self.is_local = isinstance(self.fs, LocalFileSystem)
        if self.is_local:
            self.root = os.path.abspath(self.root)

    def __repr__(self) -> str:
        return f"Store({self.uri!r})"

    def url(self, name: str) -> str:
        """A name as users see it (for messages)."""
        return f"{self.uri}/{name}"

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def exists(self, name: str) -> bool:
        return self.fs.exists(self._path(name))

    def read_bytes(self, name: str) -> bytes:
        return self.fs.cat_file(self._path(name))

    def size(self, name: str) -> int:
        return int(self.fs.size(self._path(name)))

    def open(self, name: str, mode: str = "rb"):
        return self.fs.open(self._path(name), mode)

    def local_path(self, name: str) -> Path:
        """The file itself, for local stores (readers that want a path)."""
        if not self.is_local:
            raise OutputError(f"{self.url(name)} is not a local file")
        return Path(self._path(name))

    def list(self, prefix: str = "") -> list[str]:
        """Names of all files below ``prefix`` (recursive), sorted."""
        return sorted(self.sizes(prefix))

    def sizes(self, prefix: str = "") -> dict[str, int]:
        """Name -> size in bytes of every file below ``prefix`` (recursive), from one listing."""
        base = self._path(prefix).rstrip("/") if prefix else self.root
        if not self.fs.exists(base):
            return {}
        start = len(self.root) + 1
        return {(p[start:] if p.startswith(self.root) else p): int(info.get("size") or 0)
                for p, info in self.fs.find(base, detail=True).items()}

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._path(name))

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write ``data`` so that ``name`` appears complete or not at all."""
        if not self.is_local:
            self.fs.pipe_file(self._path(name), data)
            return
        target = Path(self._path(name))
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".incomplete")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        _fsync_dir(target.parent)

    def staging_dir(self, owner: str) -> Path:
        """A local directory, private to ``owner`` (a host), for files being written;
        :meth:`publish` moves them in atomically."""
        if self.is_local:
            path = Path(self._path(f"{STAGING}/{owner}"))
            path.mkdir(parents=True, exist_ok=True)
            return path
        return Path(tempfile.mkdtemp(prefix=f"vitalflow-staging-{owner}-"))

    def clear_staging(self, owner: str) -> None:
        """Delete ``owner``'s unpublished files (never another host's, which may be writing)."""
        if self.is_local:
            for leftover in Path(self._path(f"{STAGING}/{owner}")).glob("*"):
                leftover.unlink()

    def publish(self, staged: Path, name: str) -> None:
        """Move a complete staged file to ``name`` (fsync first; rename or single upload)."""
        with open(staged, "rb+") as f:
            os.fsync(f.fileno())
        if self.is_local:
            target = Path(self._path(name))
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)
            _fsync_dir(target.parent)
        else:
            self.fs.put_file(str(staged), self._path(name))
            staged.unlink()

    @contextlib.contextmanager
    def lock(self, name: str, what: str) -> Iterator[None]:
        """Hold an exclusive lock while a run writes here; a second run is refused at once.

        Locally this is ``flock``: the kernel releases it when the process dies, so a killed run
        never leaves a stale lock behind.
        """
        if not self.is_local:  # object stores: one writer per host prefix is the caller's contract
            yield
            return
        path = Path(self._path(name))
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                raise OutputError(
                    f"{self.uri} is being written by another run ({holder}); wait for it to finish "
                    f"or choose another output"
                ) from None
            f.seek(0)
            f.truncate()
            f.write(f"{what}, pid {os.getpid()}")
            f.flush()
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
