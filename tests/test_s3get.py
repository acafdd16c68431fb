"""S3Bucket.open_read reads an object's bytes with one signed GET through the client's HTTP session instead
of botocore's get_object (agent/storage/s3get.py, issue 14 item 6: a third of the CPU per object), and
gives the same bytes, the same ObjectInfo and the same errors as get_object did, on a real SeaweedFS."""

from __future__ import annotations

import contextlib
import hashlib
import random
import socket
import threading
from pathlib import Path

import pytest

from bodycam.agent.storage.bucket import ObjectNotFoundError, S3Bucket, open_bucket
from bodycam.drivers.errors import UploadError

from .faultproxy import FaultProxy
from .s3calls import botocore_calls, through_botocore
from .s3server import SeaweedFS

KEY = "dock-01/batch-0001/recordings/CAM123/rec 0001+(a)~.age"


def _s3(server: SeaweedFS, name: str, endpoint: str | None = None) -> S3Bucket:
    bucket = open_bucket(f"s3://{name}/evidence", endpoint or server.endpoint_url, connect_timeout=2, read_timeout=10)
    assert isinstance(bucket, S3Bucket)
    return bucket


def test_open_read_is_one_signed_get_not_get_object(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    bucket = _s3(seaweedfs, s3_bucket)
    data = random.Random(7).randbytes(3 * 1024 * 1024 + 17)
    bucket.put_object(KEY, data)
    calls = botocore_calls(bucket, "GetObject", "Key")
    with bucket.open_read(KEY) as reader:
        assert reader.size == len(data)
        read = b"".join(reader.iter_chunks(256 * 1024))
    assert hashlib.sha256(read).digest() == hashlib.sha256(data).digest()
    assert bucket.get_bytes(KEY, len(data)) == data
    assert calls == []  # before: one get_object per read


def test_the_signed_get_gives_what_get_object_gives(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    """Size, ETag, version, checksum, Last-Modified and Object Lock retention, and an older version by id."""
    name = seaweedfs.make_bucket(f"{s3_bucket}-lock", object_lock=True)
    locked = open_bucket(f"s3://{name}/evidence", seaweedfs.endpoint_url, retention_days=1)
    assert isinstance(locked, S3Bucket)
    first = locked.put_object(KEY, b"first version", create_only=False)
    locked.put_object(KEY, b"second version", create_only=False)
    old = through_botocore(seaweedfs, name)
    calls = botocore_calls(locked, "GetObject", "Key")
    for version in (None, first.version_id):
        with locked.open_read(KEY, version_id=version) as fast, old.open_read(KEY, version_id=version) as slow:
            assert fast.info == slow.info
            assert fast.info.lock_mode == "COMPLIANCE" and fast.info.retain_until is not None
            assert fast.read(100) == slow.read(100)
    assert locked.get_bytes(KEY, 100) == b"second version"
    assert calls == []


def test_errors_are_those_of_get_object(
    seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anything but a 200 is asked again through get_object: its retries, its errors, its messages."""
    bucket = _s3(seaweedfs, s3_bucket)
    old = through_botocore(seaweedfs, s3_bucket)
    with pytest.raises(ObjectNotFoundError) as fast:
        bucket.open_read("nothing/here")
    with pytest.raises(ObjectNotFoundError) as slow:
        old.open_read("nothing/here")
    assert str(fast.value) == str(slow.value)
    bucket.put_object("m.json", b"{}")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    with pytest.raises(UploadError, match="check the S3 credentials"):
        _s3(seaweedfs, s3_bucket).open_read("m.json")
    with FaultProxy(("127.0.0.1", seaweedfs.ports["s3"])) as proxy:
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
        proxied = _s3(seaweedfs, s3_bucket, endpoint=proxy.url)
        proxy.set(refuse=True)
        with pytest.raises(UploadError, match="check that the endpoint is reachable"):
            proxied.open_read("m.json")
        proxy.set()
        assert proxied.get_bytes("m.json", 10) == b"{}"


class _BadLengthServer:
    """An endpoint that answers every request 200 with the Content-Length it is given (raw socket: an
    HTTP library would refuse to send a bad one)."""

    def __init__(self, length: bytes) -> None:
        self._length = length
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                with contextlib.suppress(OSError):
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Length: " + self._length + b"\r\nConnection: close\r\n\r\n{}"
                    )

    def close(self) -> None:
        self._sock.close()


@pytest.mark.parametrize("length", [b"abc", b"-5", b"1e3", b"99999999999999999999999"])
@pytest.mark.parametrize("signed", [True, False], ids=["signed-get", "get_object"])
def test_a_bad_content_length_is_one_line_naming_the_object(
    monkeypatch: pytest.MonkeyPatch, length: bytes, signed: bool
) -> None:
    """A Content-Length that is not a non-negative integer was a bare ValueError from open_read (an
    internal error, a traceback) or a negative size; it is the bucket's one-line error naming the object
    key, through the signed GET and through get_object (a client handed in) alike."""
    import boto3
    from botocore.config import Config

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    server = _BadLengthServer(length)
    try:
        if signed:
            bucket = open_bucket("s3://bad-length/evidence", server.url, connect_timeout=2, read_timeout=5)
        else:
            config = Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5)
            # a session of its own: boto3.client would leave this test's credentials cached in the process's
            # default session for every later test in this pytest-xdist worker
            client = boto3.session.Session().client(
                "s3", endpoint_url=server.url, region_name="us-east-1", config=config
            )
            bucket = S3Bucket("bad-length", "evidence", endpoint_url=server.url, client=client)
        with pytest.raises(UploadError) as err:
            bucket.open_read("dock-01/m.json")
        message = str(err.value)
        assert "\n" not in message and "s3://bad-length/evidence/dock-01/m.json" in message, message
        assert "Content-Length" in message and length.decode() not in message, message
    finally:
        server.close()
