"""A directory-like location for outputs and ledgers, on top of fsspec.

Everything the run writes goes through :class:`Store`, so a local folder and (with s3fs) an
``s3://bucket/prefix`` behave the same. The one promise that matters: an object exists under its
final name only when it is complete. Locally that is a temporary file in the same directory,
fsync, then ``os.replace``; on object stores a single PUT or a completed multipart upload.

Local files are created with mode ``0o666`` filtered by the process umask (the kernel applies it
when the file is created, so no umask is read or changed), like any file ``open()`` makes: with
umask 022 every output file is ``rw-r--r--``. Staged files of an object store live in one
temporary directory per store and owner, removed by :meth:`Store.remove_staging` (and, whatever
is left in it, when the process exits).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import secrets
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterator

import fsspec
from fsspec.implementations.local import LocalFileSystem

from vitalflow.errors import OutputError, StoreError

STAGING = "_staging"
DEFAULT_MAX_ATTEMPTS = 10
FILE_MODE = 0o666  # before the umask, as open() creates files

# Temporary staging directories of object stores made by this process: path -> creating pid
# (a forked child inherits the table but must not remove its parent's directories at its exit).
_temp_staging: dict[str, int] = {}
_temp_lock = threading.Lock()


@atexit.register
def _remove_temp_staging() -> None:
    """At exit: remove this process's temporary staging directories, with any unpublished files
    (they belong to no later run: the next process stages in a new directory)."""
    for path, pid in list(_temp_staging.items()):
        if pid == os.getpid():
            shutil.rmtree(path, ignore_errors=True)
            _temp_staging.pop(path, None)


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
    """Names are relative to the store's root and use ``/`` (``"_ledger/h0/run.json"``). Storage
    errors raise StoreError naming the location."""

    def __init__(self, uri: str | os.PathLike):
        self.uri = str(uri).rstrip("/") or "/"
        options = s3_options() if self.uri.startswith("s3://") else {}
        self.fs, self.root = fsspec.core.url_to_fs(self.uri, **options)
        self.root = self.root.rstrip("/")
        self.is_local = isinstance(self.fs, LocalFileSystem)
        self._staging: dict[str, Path] = {}  # object stores: owner -> its temporary staging directory
        if self.is_local:
            self.root = os.path.abspath(self.root)
            _check_folder(self.uri, self.root)

    def __repr__(self) -> str:
        return f"Store({self.uri!r})"

    def url(self, name: str) -> str:
        """A name as users see it (for messages)."""
        return f"{self.uri}/{name}"

    @contextlib.contextmanager
    def _failing(self, what: str, name: str = "") -> Iterator[None]:
        """Turn storage errors (fsspec, s3fs, OS) inside into a StoreError naming the location."""
        try:
            yield
        except OSError as exc:
            raise StoreError(f"{self.url(name) if name else self.uri}: {what} failed "
                             f"({type(exc).__name__}: {exc})") from exc

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def exists(self, name: str) -> bool:
        with self._failing("checking", name):
            return self.fs.exists(self._path(name))

    def read_bytes(self, name: str) -> bytes:
        with self._failing("reading", name):
            return self.fs.cat_file(self._path(name))

    def size(self, name: str) -> int:
        with self._failing("sizing", name):
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
        start = len(self.root) + 1
        with self._failing("listing", prefix):
            if not self.fs.exists(base):
                return {}
            return {(p[start:] if p.startswith(self.root) else p): int(info.get("size") or 0)
                    for p, info in self.fs.find(base, detail=True).items()}

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._path(name))

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write ``data`` so that ``name`` appears complete or not at all."""
        with self._failing("writing", name):
            if not self.is_local:
                self.fs.pipe_file(self._path(name), data)
                return
            target = Path(self._path(name))
            self._mkdir(target.parent)
            fd, temp = _create_temp(target.parent, f".{target.name}.", ".incomplete")
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

    def _mkdir(self, path: Path) -> None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            _check_folder(self.uri, self.root)  # the root (or above it) became a file since __init__
            raise

    def staging_dir(self, owner: str) -> Path:
        """A local directory, private to ``owner`` (a host), for files being written;
        :meth:`publish` moves them in atomically. The same directory for every call with the same
        owner: ``<root>/_staging/<owner>`` locally, else a temporary directory made at the first
        call (see :meth:`remove_staging`)."""
        if self.is_local:
            path = Path(self._path(f"{STAGING}/{owner}"))
            for attempt in range(3):  # another host may remove an empty _staging/ meanwhile
                try:
                    self._mkdir(path)
                    break
                except FileNotFoundError:
                    if attempt == 2:
                        raise
            return path
        with _temp_lock:
            path = self._staging.get(owner)
            if path is None or not path.is_dir():
                path = Path(tempfile.mkdtemp(prefix=f"vitalflow-staging-{owner}-"))
                self._staging[owner] = path
                _temp_staging[str(path)] = os.getpid()
            return path

    def _staging_path(self, owner: str) -> Path | None:
        if self.is_local:
            return Path(self._path(f"{STAGING}/{owner}"))
        return self._staging.get(owner)

    def clear_staging(self, owner: str) -> None:
        """Delete ``owner``'s unpublished files (never another host's, which may be writing)."""
        path = self._staging_path(owner)
        if path is not None and path.is_dir():
            for leftover in path.glob("*"):
                leftover.unlink()

    def remove_staging(self, owner: str) -> None:
        """Remove ``owner``'s staging directory if it holds no files (at the end of a run);
        locally also ``<root>/_staging`` once no owner has a directory in it. A directory that
        still holds files is kept. The next :meth:`staging_dir` makes it again."""
        path = self._staging_path(owner)
        if path is None:
            return
        with contextlib.suppress(OSError):
            path.rmdir()  # only if empty (ENOTEMPTY otherwise)
        if path.exists():
            return
        if self.is_local:
            with contextlib.suppress(OSError):
                path.parent.rmdir()
        else:
            with _temp_lock:
                self._staging.pop(owner, None)
                _temp_staging.pop(str(path), None)

    def publish(self, staged: Path, name: str) -> None:
        """Move a complete staged file to ``name`` (fsync first; rename or single upload)."""
        with self._failing("publishing", name):
            with open(staged, "rb+") as f:
                os.fsync(f.fileno())
            if self.is_local:
                target = Path(self._path(name))
                self._mkdir(target.parent)
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
        self._mkdir(path.parent)
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


def _check_folder(uri: str, root: str) -> None:
    """Refuse a local root that is a file, or lies below one (``--output`` naming a file)."""
    path = Path(root)
    for candidate in (path, *path.parents):
        try:
            if not candidate.exists():
                continue
            if candidate.is_dir():
                return
        except OSError:  # unreadable (permissions): the operation itself will say why
            return
        if candidate == path:
            raise OutputError(f"{uri} is a file, not a folder")
        raise OutputError(f"{uri}: {candidate} is a file, not a folder")


def _create_temp(directory: Path, prefix: str, suffix: str) -> tuple[int, str]:
    """Like ``tempfile.mkstemp`` but with mode ``0o666 & ~umask`` (mkstemp's is always 0o600):
    the kernel applies the umask at creation, as for every other file the run writes."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        path = os.path.join(directory, f"{prefix}{secrets.token_hex(6)}{suffix}")
        try:
            return os.open(path, flags, FILE_MODE), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {directory}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
