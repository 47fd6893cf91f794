"""The SeaweedFS test server itself: that it is real S3 for boto3 and s3fs, and survives outages."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

boto3 = pytest.importorskip("boto3")
s3fs = pytest.importorskip("s3fs")

from botocore import UNSIGNED  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError  # noqa: E402
from seaweed import SeaweedError, SeaweedS3, find_weed, s3_environment  # noqa: E402

MB = 1024 * 1024


def _key(name: str) -> str:
    return f"test-seaweed/{uuid.uuid4().hex[:8]}/{name}"


def _error_code(exc: ClientError) -> str:
    return exc.response["Error"]["Code"]


def _fs(**kwargs) -> s3fs.S3FileSystem:
    # skip_instance_cache: fsspec hands back a cached instance (with the endpoint it was
    # built with) for equal arguments, which would hide whether the environment is read.
    return s3fs.S3FileSystem(skip_instance_cache=True, **kwargs)


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """A private server for the tests that take it down, so the session one stays up."""
    server = SeaweedS3(tmp_path_factory.mktemp("seaweed-own"))
    server.start()
    server.make_bucket("outage")
    yield server
    server.kill()


def _quick(server: SeaweedS3):
    """A client that fails at once instead of retrying through an outage."""
    return server.client(config=Config(connect_timeout=1, read_timeout=3, retries={"max_attempts": 1}))


# -- setup ------------------------------------------------------------------------------


def test_weed_binary_comes_from_the_venv():
    weed = find_weed()
    assert os.access(weed, os.X_OK)
    assert Path(weed).parent == Path(sys.executable).parent  # pip put it next to python
    out = subprocess.run([weed, "version"], capture_output=True, text=True, timeout=30).stdout
    assert "version" in out


def test_environment_points_clients_at_the_server(s3_server):
    assert s3_server.running
    assert s3_server.endpoint == f"http://127.0.0.1:{s3_server.port}"
    for name, value in s3_server.env().items():
        assert os.environ[name] == value
    assert os.environ["AWS_DEFAULT_REGION"] == "us-east-1"
    assert boto3.client("s3").meta.endpoint_url == s3_server.endpoint
    names = [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]]
    assert s3_server.bucket in names


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_every_listening_port_is_loopback_only(s3_server):
    listening = []
    for pid in s3_server.pids.values():
        inodes = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        for table in ("tcp", "tcp6", "udp", "udp6"):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                listens = state == "0A" if table.startswith("tcp") else state == "07"  # LISTEN / UDP bound
                if listens and inode in inodes:
                    listening.append((table, local))
    assert len(s3_server.pids) == 2
    assert len(listening) == 8, listening  # master, volume, filer, s3 and their gRPC ports
    for table, local in listening:
        addr, port = local.split(":")
        assert table == "tcp" and addr == "0100007F", f"weed listens on {table} {local}"  # 127.0.0.1
    assert sorted(int(local.split(":")[1], 16) for _, local in listening) == sorted(s3_server.ports.values())


# -- S3 semantics -------------------------------------------------------------------------


def test_make_bucket_and_boto3_write_s3fs_read(s3_server):
    bucket = s3_server.make_bucket("made-" + uuid.uuid4().hex[:8])
    assert s3_server.make_bucket(bucket) == bucket  # idempotent
    key = _key("hello.txt")
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=b"hello seaweed")

    fs = _fs()  # no endpoint, no credentials: all from the environment
    assert fs.s3.meta.endpoint_url == s3_server.endpoint
    assert fs.cat(f"{bucket}/{key}") == b"hello seaweed"
    with fs.open(f"{bucket}/{key}", "rb") as f:
        assert f.read(5) == b"hello"
    assert fs.ls(f"{bucket}/{key.rsplit('/', 1)[0]}", detail=False) == [f"{bucket}/{key}"]
    assert fs.info(f"{bucket}/{key}")["size"] == len(b"hello seaweed")


def test_s3fs_write_boto3_read_and_copy(s3_server):
    fs = _fs()
    key = _key("data.bin")
    payload = os.urandom(3 * MB)
    with fs.open(f"{s3_server.bucket}/{key}", "wb") as f:
        f.write(payload)
    got = boto3.client("s3").get_object(Bucket=s3_server.bucket, Key=key)["Body"].read()
    assert got == payload
    fs.mv(f"{s3_server.bucket}/{key}", f"{s3_server.bucket}/{key}.moved")  # copy + delete
    assert not fs.exists(f"{s3_server.bucket}/{key}")
    assert fs.cat(f"{s3_server.bucket}/{key}.moved") == payload


def test_put_into_missing_bucket_fails(s3_server):
    with pytest.raises(ClientError) as e:
        boto3.client("s3").put_object(Bucket="no-such-bucket-" + uuid.uuid4().hex[:8], Key="k", Body=b"x")
    assert _error_code(e.value) == "NoSuchBucket"


def test_multipart_upload_is_invisible_until_completed(s3_server):
    s3 = boto3.client("s3")
    bucket, key = s3_server.bucket, _key("big.bin")
    payload = os.urandom(20 * MB)
    part_size = 5 * MB  # the S3 minimum for all but the last part
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = []
    for number, start in enumerate(range(0, len(payload), part_size), start=1):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number,
                           Body=payload[start:start + part_size])
        parts.append({"PartNumber": number, "ETag": r["ETag"]})
    assert len(parts) == 4

    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key=key)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", [])
    assert listed == []
    assert not _fs().exists(f"{bucket}/{key}")
    pending = s3.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])
    assert [u["UploadId"] for u in pending] == [upload]

    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload,
                                 MultipartUpload={"Parts": parts})
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == len(payload)
    assert head["ETag"].strip('"').endswith("-4")  # S3's multipart ETag form
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(payload).digest()
    assert _fs().cat(f"{bucket}/{key}") == payload
    assert s3.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", []) == []


def test_aborted_multipart_upload_leaves_nothing(s3_server):
    s3 = boto3.client("s3")
    bucket, key = s3_server.bucket, _key("aborted.bin")
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=os.urandom(5 * MB))
    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
    assert s3.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", []) == []
    assert s3.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", []) == []


def test_deleted_objects_leave_flat_listings_empty(s3_server):
    s3 = boto3.client("s3")
    bucket, prefix = s3_server.bucket, _key("gone/")
    for name in ("a/1", "a/2", "b"):
        s3.put_object(Bucket=bucket, Key=prefix + name, Body=b"x")
    _fs().rm(f"{bucket}/{prefix}", recursive=True)
    assert s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []) == []
    found = _fs().find(f"{bucket}/{prefix}", detail=True)
    assert [name for name, info in found.items() if info["type"] == "file"] == []
    # SeaweedFS quirks (not asserted, AWS differs): the emptied "directories" live on in
    # the filer, so a listing *with* Delimiter="/" keeps returning prefix/a/ as a
    # CommonPrefix (seen for minutes), HEAD "prefix/" answers 200 (application/x-directory),
    # and s3fs's exists()/find() report the directory. Test emptiness with flat listings.


def test_wrong_credentials_are_refused(s3_server):
    bucket = s3_server.bucket

    def attempt(client):
        with pytest.raises(ClientError) as e:
            client.list_objects_v2(Bucket=bucket)
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        return _error_code(e.value)

    assert attempt(s3_server.client(aws_secret_access_key="wrong")) == "SignatureDoesNotMatch"
    assert attempt(s3_server.client(aws_access_key_id="nobody")) == "InvalidAccessKeyId"
    assert attempt(s3_server.client(config=Config(signature_version=UNSIGNED))) == "AccessDenied"
    with pytest.raises(PermissionError):
        _fs(key=s3_server.access_key, secret="wrong").cat(f"{bucket}/anything")
    s3_server.client().list_objects_v2(Bucket=bucket)  # the right ones still work


# -- outages (a private server) --------------------------------------------------------------


def test_restart_keeps_the_data(own):
    s3 = own.client()
    small, big = os.urandom(1000), os.urandom(9 * MB)  # big spans several weed chunks
    s3.put_object(Bucket="outage", Key="a/small", Body=small)
    s3.upload_fileobj(__import__("io").BytesIO(big), "outage", "a/big",
                      Config=boto3.s3.transfer.TransferConfig(multipart_chunksize=5 * MB))
    endpoint = own.endpoint

    took = own.restart()
    assert took < 15, took
    assert own.endpoint == endpoint
    s3 = own.client()
    assert s3.get_object(Bucket="outage", Key="a/small")["Body"].read() == small
    assert s3.get_object(Bucket="outage", Key="a/big")["Body"].read() == big
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="outage", Prefix="a/")["Contents"]] == ["a/big", "a/small"]
    s3.put_object(Bucket="outage", Key="a/after", Body=b"new")  # writable again at once
    with s3_environment(own):
        assert _fs().cat("outage/a/after") == b"new"


def test_killed_server_refuses_connections(own):
    own.kill()
    assert not own.running
    with pytest.raises(EndpointConnectionError):
        _quick(own).list_buckets()
    own.start()
    assert _quick(own).get_object(Bucket="outage", Key="a/small")["Body"].read()


def test_requests_fail_during_graceful_stop_and_work_after_start(own):
    s3 = _quick(own)
    s3.put_object(Bucket="outage", Key="b/kept", Body=b"kept")
    stopped = threading.Thread(target=own.stop)
    stopped.start()
    failures = []
    deadline = time.monotonic() + 40
    while stopped.is_alive() and time.monotonic() < deadline:
        try:
            s3.get_object(Bucket="outage", Key="b/kept")["Body"].read()
        except (EndpointConnectionError, ConnectionClosedError) as e:  # refused, or closed mid-request
            failures.append(type(e).__name__)
        except ClientError as e:  # weed answers 500 while its components shut down
            failures.append(str(e.response["ResponseMetadata"]["HTTPStatusCode"]))
        else:
            failures.append("ok")
        time.sleep(0.3)
    stopped.join()
    assert own.last_stop_seconds is not None and own.last_stop_seconds < 30
    assert failures and "ok" not in failures[1:], failures  # the first may beat the signal
    with pytest.raises(EndpointConnectionError):
        s3.get_object(Bucket="outage", Key="b/kept")

    assert own.start() < 15
    assert _quick(own).get_object(Bucket="outage", Key="b/kept")["Body"].read() == b"kept"


def test_start_failure_reports_the_log(tmp_path):
    fake = tmp_path / "weed"
    fake.write_text("#!/bin/sh\necho 'fatal: pretend weed could not start' >&2\nexit 3\n")
    fake.chmod(0o755)
    server = SeaweedS3(tmp_path / "srv", weed=str(fake), start_timeout=10)
    with pytest.raises(SeaweedError, match="pretend weed could not start"):
        server.start()
    assert not server.running


# -- vitalflow's Store on this server: staging directories (appended) --------------------------

import tempfile  # noqa: E402

from vitalflow.store import Store  # noqa: E402


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """tempfile's directory for this test only, so leftovers of vitalflow are visible."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return temp


def _leftovers(temp: Path) -> list[str]:
    return sorted(p.name for p in temp.iterdir() if p.name.startswith("vitalflow-"))


def test_store_staging_dir_is_one_per_owner_and_removed(s3_server, private_tmp):
    store = Store(f"s3://{s3_server.bucket}/{_key('staging')}")
    h0 = store.staging_dir("h0")
    assert h0 == store.staging_dir("h0") and h0.parent == private_tmp and h0.is_dir()
    h1 = store.staging_dir("h1")
    assert h1 != h0 and _leftovers(private_tmp) == sorted([h0.name, h1.name])

    (h0 / "train-00000-h0.tfrecord.incomplete").write_bytes(b"records")
    store.publish(h0 / "train-00000-h0.tfrecord.incomplete", "train-00000-h0.tfrecord")
    assert store.read_bytes("train-00000-h0.tfrecord") == b"records"
    assert store.staging_dir("h0") == h0  # still the same after a publish

    (h1 / "left.incomplete").write_bytes(b"x")
    store.remove_staging("h1")
    assert h1.is_dir()  # holds a file: kept
    store.clear_staging("h1")
    store.remove_staging("h1")
    store.remove_staging("h0")
    assert _leftovers(private_tmp) == []
    store.remove_staging("h0")  # twice: fine
    again = store.staging_dir("h0")  # made anew when needed
    assert again.is_dir()
    store.remove_staging("h0")
    assert _leftovers(private_tmp) == []


def test_preprocess_to_s3_leaves_no_temporary_files(s3_server, corpus, private_tmp):
    from vitalflow.run.preprocess import RunOptions, preprocess
    from vitalflow.spec import load_config

    config, spec = load_config()
    out = f"s3://{s3_server.bucket}/{_key('out')}"
    result = preprocess(corpus, corpus / "clinical.csv", out, config, spec,
                        options=RunOptions(workers=1, commit_every=3))
    assert result.complete and result.verify.ok, result.verify.problems
    assert any(n.startswith("train-00000-h0") for n in Store(out).list())
    assert _leftovers(private_tmp) == []
