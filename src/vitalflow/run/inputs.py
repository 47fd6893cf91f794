"""The run's inputs, local or on S3: the case recordings and the clinical table."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator

from vitalflow.errors import ClinicalError, OutputError
from vitalflow.store import Store

_CASE_FILE = re.compile(r"^(\d+)\.vital$")


def find_case_files(input_uri: str | os.PathLike) -> dict[int, str]:
    """case id -> file name, for every ``<digits>.vital`` directly in the input (any zero padding)."""
    store = Store(input_uri)
    if store.is_local and not Path(store.root).is_dir():
        raise OutputError(f"input directory not found: {input_uri}")
    files: dict[int, str] = {}
    for name in store.list():
        m = _CASE_FILE.match(name)
        if m:
            files.setdefault(int(m.group(1)), name)
    return files


def read_input_bytes(uri: str | os.PathLike, what: str) -> bytes:
    """A whole input file (the clinical table, a config) from a local path or s3:// URI."""
    uri = str(uri)
    parent, _, name = uri.rstrip("/").rpartition("/")
    store = Store(parent or ".")
    if not store.exists(name):
        raise ClinicalError(f"{what} not found: {uri}")
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
        store.fs.get_file(f"{store.root}/{name}", temp)
        yield Path(temp)
    finally:
        os.unlink(temp)
