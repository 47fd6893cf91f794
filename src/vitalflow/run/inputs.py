"""The run's inputs, local or on S3: the case recordings and the clinical table."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator, NamedTuple

from vitalflow.errors import ClinicalError, OutputError
from vitalflow.store import Store

_CASE_FILE = re.compile(r"^(\d+)\.vital$")


class CaseFile(NamedTuple):
    name: str
    bytes: int


def find_case_files(input_uri: str | os.PathLike) -> dict[int, CaseFile]:
    """case id -> file, for every ``<digits>.vital`` directly in the input (any zero padding)."""
    store = Store(input_uri)
    if store.is_local and not Path(store.root).is_dir():
        raise OutputError(f"input directory not found: {input_uri}")
    files: dict[int, CaseFile] = {}
    for name, size in sorted(store.sizes().items()):
        m = _CASE_FILE.match(name)
        if m:
            files.setdefault(int(m.group(1)), CaseFile(name, size))
    return files


def largest_first(cases: list[int], files: dict[int, CaseFile]) -> list[int]:
    """The order to start cases in: largest file first, so that the last case to finish is a small
    one and workers run out of work together (cases without a file, which fail at once, last).

    >>> files = {1: CaseFile("1.vital", 10), 2: CaseFile("2.vital", 30), 3: CaseFile("3.vital", 20)}
    >>> largest_first([1, 2, 3, 4], files)
    [2, 3, 1, 4]
    """
    return sorted(cases, key=lambda c: -files[c].bytes if c in files else 1)


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
