"""The local Store: file modes, staging directories, a root that is not a folder.

(Store on S3 is tested against SeaweedFS in test_seaweed.py and test_s3.py.)
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vitalflow.errors import OutputError
from vitalflow.run.preprocess import RunOptions, preprocess
from vitalflow.spec import load_config
from vitalflow.store import STAGING, Store


@pytest.fixture
def umask():
    """Set the process umask for one test; the old one comes back afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _run(corpus, out, **options):
    config, spec = load_config()
    return preprocess(corpus, corpus / "clinical.csv", out, config, spec,
                      options=RunOptions(workers=1, commit_every=3, **options))


# -- 1. every file follows the umask --------------------------------------------------------


@pytest.mark.parametrize("mask", [0o022, 0o002], ids=["022", "002"])
def test_every_output_file_follows_the_umask(corpus, tmp_path, umask, mask):
    umask(mask)
    out = tmp_path / "out"
    result = _run(corpus, out, merge=True)
    assert result.complete and result.verify.ok, result.verify.problems
    files = _files(out)
    names = {p.relative_to(out).as_posix() for p in files}
    # parts, merged files, ledger manifest and records, the card, the lock: all of them
    assert {"preprocessing_metadata.json", "_ledger/h0/run.json", "_ledger/h0/commit-00000.json"} <= names, names
    assert any(n.startswith("train-00000-h0.tfrecord") for n in names), names
    assert any(n.startswith("train.tfrecord") for n in names), names
    expected = 0o666 & ~mask
    modes = {p.relative_to(out).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert modes == dict.fromkeys(names, oct(expected))


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077], ids=["022", "002", "077"])
def test_write_bytes_follows_the_umask(tmp_path, umask, mask):
    umask(mask)
    store = Store(tmp_path / "s")
    store.write_bytes("a/b.json", b"{}")
    store.write_bytes("a/b.json", b"{} ")  # replacing keeps the rule
    assert stat.S_IMODE((tmp_path / "s/a/b.json").stat().st_mode) == 0o666 & ~mask
    assert [p.name for p in (tmp_path / "s/a").iterdir()] == ["b.json"]  # no temporary left


# -- 2. no staging leftovers ----------------------------------------------------------------


def test_staging_dir_is_stable_and_removed_when_empty(tmp_path):
    store = Store(tmp_path / "out")
    h0, h1 = store.staging_dir("h0"), store.staging_dir("h1")
    assert h0 == store.staging_dir("h0") == tmp_path / "out" / STAGING / "h0" and h0.is_dir()
    (h1 / "x.incomplete").write_bytes(b"x")
    store.remove_staging("h0")
    assert not h0.exists() and h1.is_dir()  # another owner's directory keeps _staging
    store.remove_staging("h1")
    assert (h1 / "x.incomplete").is_file()  # it holds a file: kept
    store.clear_staging("h1")
    store.remove_staging("h1")
    assert not (tmp_path / "out" / STAGING).exists()
    store.remove_staging("h1")  # nothing to remove: fine
    assert store.staging_dir("h0").is_dir()  # made again when needed


def test_preprocess_leaves_no_staging_folder(corpus, tmp_path):
    out = tmp_path / "out"
    result = _run(corpus, out)
    assert result.complete
    assert not (out / STAGING).exists(), sorted(p.name for p in (out / STAGING).rglob("*"))


# -- 3. a root that is a file ----------------------------------------------------------------


def test_a_file_as_root_is_named(tmp_path):
    f = tmp_path / "taken.txt"
    f.write_text("not a folder")
    with pytest.raises(OutputError, match=f"^{re.escape(str(f))} is a file, not a folder$"):
        Store(f).write_bytes("x.json", b"{}")
    with pytest.raises(OutputError, match=f"^{re.escape(f'{f}/sub: {f}')} is a file, not a folder$"):
        Store(f"{f}/sub").write_bytes("x.json", b"{}")
    assert f.read_text() == "not a folder"


def test_a_root_that_became_a_file_is_named(tmp_path):
    root = tmp_path / "out"
    store = Store(root)  # does not exist yet: fine
    root.write_text("someone else's file")
    for write in (lambda: store.write_bytes("x.json", b"{}"), lambda: store.staging_dir("h0"),
                  lambda: store.lock("_ledger/h0.lock", "test").__enter__()):
        with pytest.raises(OutputError, match=f"^{re.escape(str(root))} is a file, not a folder$"):
            write()


def test_preprocess_into_a_file_says_so(corpus, tmp_path):
    from vitalflow.cli import app

    target = tmp_path / "out.tfrecord"
    target.write_bytes(b"")
    result = CliRunner().invoke(app, ["preprocess", "--input", str(corpus), "--clinical", str(corpus / "clinical.csv"),
                                      "--output", str(target), "--quiet"])
    assert result.exit_code != 0
    assert f"{target} is a file, not a folder" in result.output
    assert "Errno" not in result.output


def test_storage_errors_name_the_location(tmp_path):
    """An OS error under a Store call becomes a StoreError that names the URI and keeps the cause."""
    from vitalflow.errors import StoreError

    store = Store(tmp_path)
    (tmp_path / "dir").mkdir()
    with pytest.raises(StoreError, match=rf"{tmp_path}/dir: reading failed \(IsADirectoryError") as info:
        store.read_bytes("dir")
    assert isinstance(info.value.__cause__, IsADirectoryError)
    with pytest.raises(StoreError, match=rf"{tmp_path}/missing.json: reading failed \(FileNotFoundError"):
        store.read_bytes("missing.json")
    os.chmod(tmp_path / "dir", 0o500)
    try:
        if os.geteuid() != 0:  # root writes anyway
            with pytest.raises(StoreError, match="writing failed"):
                store.write_bytes("dir/x.json", b"{}")
    finally:
        os.chmod(tmp_path / "dir", 0o700)
