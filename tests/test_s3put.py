"""S3Bucket.upload_part sends each part as one SigV4-signed PUT through the client's HTTP session, from the
caller's memoryview, instead of botocore's upload_part (agent/storage/s3put.py, issue 14: ~2.3 ms of
botocore CPU and a copy of every 8 MiB part), and the server still checks its CRC-32C; anything but a 200
goes through upload_part, so errors and messages are botocore's as before. On a real SeaweedFS."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from bodycam.agent.storage.bucket import (
    MIN_PART_SIZE,
    ChecksumMismatchError,
    UploadNotFoundError,
    b64_crc32c,
)
from bodycam.agent.storage.s3http import Credentials, S3Http
from bodycam.agent.storage.s3put import SignedPut
from bodycam.drivers.errors import UploadError

from .faultproxy import FaultProxy
from .s3calls import botocore_calls, through_botocore
from .s3server import SeaweedFS
from .test_s3get import KEY, _s3  # the same key (spaces and +()~) and the same bucket the signed GET is tested on


def test_parts_are_signed_puts_not_upload_part(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    bucket = _s3(seaweedfs, s3_bucket)
    rng = random.Random(5)
    chunks = [bytearray(rng.randbytes(MIN_PART_SIZE)), rng.randbytes(3 * 1024 + 7)]
    calls = botocore_calls(bucket, "UploadPart", "PartNumber")
    upload_id = bucket.start_upload(KEY)
    parts = [
        bucket.upload_part(KEY, upload_id, 1, memoryview(chunks[0])),  # a view, as the pipeline sends them
        bucket.upload_part(KEY, upload_id, 2, chunks[1]),
    ]
    assert [p.checksum for p in parts] == [b64_crc32c(c) for c in chunks]
    assert [(p.number, p.size) for p in bucket.list_parts(KEY, upload_id)] == [(1, MIN_PART_SIZE), (2, 3 * 1024 + 7)]
    info = bucket.complete_upload(KEY, upload_id, parts)
    data = bytes(chunks[0]) + chunks[1]
    assert info.size == len(data)
    assert hashlib.sha256(bucket.get_bytes(KEY, len(data))).digest() == hashlib.sha256(data).digest()
    assert calls == []  # before: one upload_part per part


def test_a_corrupted_part_is_still_refused_by_its_crc32c(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    """SeaweedFS's BadDigest is raised at once, with upload_part's message, and not sent again: botocore
    does not retry it either (tests/test_ingest.py's part flipped in transit relies on that)."""
    bucket = _s3(seaweedfs, s3_bucket)
    old = through_botocore(seaweedfs, s3_bucket)
    data = bytearray(random.Random(6).randbytes(MIN_PART_SIZE + 3))
    sent = b64_crc32c(data)
    data[12345] ^= 0x01
    calls = botocore_calls(bucket, "UploadPart", "PartNumber")
    upload_id = bucket.start_upload(KEY)
    with pytest.raises(ChecksumMismatchError, match="part 1") as fast:
        bucket.upload_part(KEY, upload_id, 1, memoryview(data), checksum=sent)
    with pytest.raises(ChecksumMismatchError) as slow:
        old.upload_part(KEY, upload_id, 1, data, checksum=sent)
    assert str(fast.value) == str(slow.value)
    assert calls == []
    assert bucket.list_parts(KEY, upload_id) == []
    assert bucket._signed_put is not None  # a refusal of the bytes says nothing about the endpoint
    bucket.abort_upload(KEY, upload_id)


def test_errors_are_those_of_upload_part(
    seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anything but a 200 is sent again through upload_part: its retries, its errors, its messages."""
    bucket = _s3(seaweedfs, s3_bucket)
    old = through_botocore(seaweedfs, s3_bucket)
    with pytest.raises(UploadNotFoundError) as fast:
        bucket.upload_part(KEY, "no-such-upload", 1, b"bytes")
    with pytest.raises(UploadNotFoundError) as slow:
        old.upload_part(KEY, "no-such-upload", 1, b"bytes")
    assert str(fast.value) == str(slow.value)
    upload_id = bucket.start_upload(KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    with pytest.raises(UploadError, match="check the S3 credentials"):
        _s3(seaweedfs, s3_bucket).upload_part(KEY, upload_id, 1, b"bytes")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    with FaultProxy(("127.0.0.1", seaweedfs.ports["s3"])) as proxy:
        proxied = _s3(seaweedfs, s3_bucket, endpoint=proxy.url)
        proxy.set(refuse=True)
        with pytest.raises(UploadError, match=r"part 1 .*check that the endpoint is reachable"):
            proxied.upload_part(KEY, upload_id, 1, b"bytes")
        proxy.set()
        part = proxied.upload_part(KEY, upload_id, 1, b"bytes")
    assert bucket.complete_upload(KEY, upload_id, [part]).size == 5


def test_an_endpoint_that_refuses_the_signed_put_keeps_to_upload_part(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    """Refused as a signed PUT, taken from botocore (here: the signed PUT aimed at a bucket that is not
    there): the part is stored once and later parts skip the signed PUT instead of being sent twice."""
    bucket = _s3(seaweedfs, s3_bucket)
    http = bucket._http
    assert http is not None and bucket._signed_put is not None
    elsewhere = http.base.replace(f"/{s3_bucket}/", f"/{s3_bucket}-elsewhere/")
    credentials = Credentials(seaweedfs.access_key, seaweedfs.secret_key)
    bucket._signed_put = SignedPut(S3Http(elsewhere, credentials, http.region, 2, 10))
    calls = botocore_calls(bucket, "UploadPart", "PartNumber")
    upload_id = bucket.start_upload(KEY)
    part = bucket.upload_part(KEY, upload_id, 1, b"only part")
    assert calls == [1] and bucket._signed_put is None
    assert bucket.complete_upload(KEY, upload_id, [part]).size == 9
