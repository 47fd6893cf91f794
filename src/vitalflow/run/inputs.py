"""The run's inputs, local or on S3: the case recordings and the clinical table."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator, NamedTuple

from vitalflow.errors import ClinicalError, InputError, VitalReadError
from vitalflow.store import Store

_CASE_FILE = re.compile(r"^([0-9]+)\.vital$")


class CaseFile(NamedTuple):
    name: str
    bytes: int
    version: str = ""  # local: "mtime:<seconds>"; S3: the ETag. With the size, what identifies the content
    problem: str | None = None  # why it cannot be read: another file for the case, not a regular file


def find_case_files(input_uri: str | os.PathLike) -> dict[int, CaseFile]:
    """case id -> file, for every ``<digits>.vital`` directly in the input (any zero padding).

    From one listing. Two files for one case (``0119.vital`` and ``119.vital``) and entries that
    are not regular files (a named pipe would block its reader forever) are kept with a
    ``problem``: the case fails at ``read`` naming them, and the other cases go on.
    """
    store = Store(input_uri)
    if store.is_local and not Path(store.root).is_dir():
        raise InputError(f"input folder not found: {input_uri}")
    base = store.root
    files: dict[int, CaseFile] = {}
    for path, info in sorted(store.fs.find(base, maxdepth=1, detail=True).items()):
        name = path.rstrip("/").rpartition("/")[2]
        m = _CASE_FILE.match(name)
        if not m:
            continue
        case_id = int(m.group(1))
        kind = info.get("type")
        problem = None if kind == "file" else f"{name} is not a regular file ({kind}: a named pipe, device or socket?)"
        version = str(info.get("ETag") or info.get("etag") or "").strip('"')
        if not version and info.get("mtime") is not None:
            version = f"mtime:{float(info['mtime']):.6f}"
        this = CaseFile(name, int(info.get("size") or 0), version, problem)
        if case_id in files:
            first = files[case_id]
            both = " and ".join(sorted((first.name, name)))
            this = first._replace(problem=f"two files for case {case_id}: {both}; remove one of them")
        files[case_id] = this
    return files


def input_identity(input_uri: str, files: dict[int, CaseFile], cases: list[int]) -> dict:
    """What a run's output is made from: the input location and each recording's name, size and
    version (mtime or ETag). A rerun into the same output must find the same."""
    return {"uri": str(input_uri),
            "recordings": {str(c): [files[c].name, files[c].bytes, files[c].version] for c in cases}}


def read_input_bytes(uri: str | os.PathLike, what: str) -> bytes:
    """A whole input file (the clinical table, a config) from a local path or s3:// URI."""
    uri = str(uri)
    parent, _, name = uri.rstrip("/").rpartition("/")
    store = Store(parent or ".")
    if not store.exists(name):
        raise ClinicalError(f"{what} not found: {uri}")
    if store.fs.isdir(f"{store.root}/{name}"):
        raise ClinicalError(f"{what} {uri} is a folder, not a file")
    return store.read_bytes(name)


@contextlib.contextmanager
def local_copy(input_uri: str, name: str) -> Iterator[Path]:
    """The recording as a local file: itself when local, else a temporary download."""
    store = Store(input_uri)
    if store.is_local:
        yield store.local_path(name)
        return
    fd, temp = tempfile.mkstemp(suffix=".vital", prefix="vitalflow-")
    os.close(fd)
    try:
        try:
            store.fs.get_file(f"{store.root}/{name}", temp)
        except Exception as exc:  # noqa: BLE001 - botocore, aiohttp and OS errors alike: the object is unreadable
            raise VitalReadError(f"{store.url(name)}: download failed ({type(exc).__name__}: {exc})") from exc
        yield Path(temp)
    finally:
        os.unlink(temp)
