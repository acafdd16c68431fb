"""The bucket API against both implementations: a local directory and a real S3 server (SeaweedFS).

Each test tries to break a promise of ``bodycam.agent.storage.bucket``: resumable multipart uploads, create-only
writes that are still exactly-once after a lost response, checksums the server enforces, keys that
cannot escape, bounded failure when the server is down or the network cuts, Object Lock retention.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from bodycam.agent.storage import partindex
from bodycam.agent.storage.bucket import (
    MIN_PART_SIZE,
    Bucket,
    ChecksumMismatchError,
    LocalBucket,
    ObjectExistsError,
    ObjectNotFoundError,
    Part,
    S3Bucket,
    UploadNotFoundError,
    b64_crc32c,
    b64_sha256,
    checksum_algorithm,
    composite_checksum,
    open_bucket,
    part_checksum,
)
from bodycam.drivers.errors import ConfigError, IntegrityError, StorageError, UploadError

from .faultproxy import FaultProxy
from .s3server import SeaweedFS

KEY = "dock-01/batch-0001/recordings/CAM123/rec-0001.age"


def blob(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def s3_of(
    server: SeaweedFS, name: str, endpoint: str | None = None, max_attempts: int = 3, retention_days: int | None = None
) -> S3Bucket:
    bucket = open_bucket(
        f"s3://{name}/evidence",
        endpoint or server.endpoint_url,
        retention_days=retention_days,
        connect_timeout=2,
        read_timeout=10,
        max_attempts=max_attempts,
    )
    assert isinstance(bucket, S3Bucket)
    return bucket


def reopen(bucket: Bucket) -> Bucket:
    """A new instance on the same storage: what a restarted agent has (no in-memory state)."""
    if isinstance(bucket, LocalBucket):
        return LocalBucket(bucket.root)
    assert isinstance(bucket, S3Bucket)
    return S3Bucket(bucket.bucket, bucket.prefix, endpoint_url=bucket.endpoint_url, connect_timeout=2, read_timeout=10)


@pytest.fixture(params=["local", "s3"])
def bucket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Bucket]:
    if request.param == "local":
        b: Bucket = LocalBucket(tmp_path / "bucket")
    else:
        b = s3_of(request.getfixturevalue("seaweedfs"), request.getfixturevalue("s3_bucket"))
    with b:
        yield b


# -- multipart --------------------------------------------------------------------------------------------
def test_multipart_resumes_from_list_parts_after_forgetting_everything(bucket: Bucket) -> None:
    chunks = [blob(MIN_PART_SIZE, 1), blob(MIN_PART_SIZE + 17, 2), blob(1234, 3)]
    upload_id = bucket.start_upload(KEY)
    first = bucket.upload_part(KEY, upload_id, 1, chunks[0])
    assert first.checksum == b64_crc32c(chunks[0]) and first.size == len(chunks[0])  # parts: CRC-32C
    bucket.upload_part(KEY, upload_id, 2, chunks[1])
    del first  # the agent crashes: the upload id is all its journal kept

    again = reopen(bucket)
    assert [(u.key, u.upload_id) for u in again.open_uploads("dock-01/")] == [(KEY, upload_id)]
    held = again.list_parts(KEY, upload_id)
    assert [(p.number, p.size) for p in held] == [(1, len(chunks[0])), (2, len(chunks[1]))]
    parts: list[Part] = []
    for p in held:  # SeaweedFS's ListParts has no checksums: fill them from our own bytes
        ours = part_checksum(chunks[p.number - 1])
        assert p.checksum in (None, ours)
        parts.append(Part(p.number, p.etag, ours, p.size))
    parts.append(again.upload_part(KEY, upload_id, 3, chunks[2]))
    info = again.complete_upload(KEY, upload_id, parts)

    total = b"".join(chunks)
    assert info.size == len(total)
    assert info.checksum == composite_checksum(parts) and info.checksum.endswith("-3")
    head = again.head(KEY)
    assert head is not None and head.size == len(total) and head.checksum == info.checksum
    if isinstance(bucket, LocalBucket):  # like S3: the composite checksum, the parts not hashed again
        assert head.sha256_hex is None and head.etag == info.etag and head.etag.endswith('-3"')
        assert (bucket.root / KEY).read_bytes() == total
    with again.open_read(KEY) as reader:
        digest, got, biggest = hashlib.sha256(), 0, 0
        for chunk in reader.iter_chunks(256 * 1024):
            digest.update(chunk)
            got += len(chunk)
            biggest = max(biggest, len(chunk))
    assert (got, digest.hexdigest()) == (len(total), hashlib.sha256(total).hexdigest())
    assert biggest <= 256 * 1024
    assert again.open_uploads() == []
    # a retry of the same completion (its response was lost) is success, not a second object
    assert again.complete_upload(KEY, upload_id, parts).checksum == info.checksum


def test_complete_refuses_bad_part_lists(bucket: Bucket) -> None:
    upload_id = bucket.start_upload(KEY)
    small = bucket.upload_part(KEY, upload_id, 1, b"x" * 100)
    last = bucket.upload_part(KEY, upload_id, 2, b"y" * 100)
    with pytest.raises(UploadError, match="5 MiB"):
        bucket.complete_upload(KEY, upload_id, [small, last])
    with pytest.raises(UploadError, match="ascending"):
        bucket.complete_upload(KEY, upload_id, [last, small])
    with pytest.raises(UploadError, match="no checksum"):
        bucket.complete_upload(KEY, upload_id, [Part(1, small.etag, None, 100)])
    with pytest.raises(ChecksumMismatchError):  # a checksum that is not the stored part's
        bucket.complete_upload(KEY, upload_id, [Part(1, small.etag, part_checksum(b"z" * 100), 100)])
    assert bucket.head(KEY) is None
    bucket.abort_upload(KEY, upload_id)


def test_open_uploads_finds_leftovers_and_abort_removes_them(bucket: Bucket) -> None:
    left = bucket.start_upload("dock-01/b1/recordings/CAM1/r1.age")
    other = bucket.start_upload("dock-02/b9/recordings/CAM2/r2.age")
    bucket.upload_part("dock-01/b1/recordings/CAM1/r1.age", left, 1, b"partial")
    assert {u.upload_id for u in bucket.open_uploads()} == {left, other}
    found = bucket.open_uploads("dock-01/")
    assert [(u.key, u.upload_id) for u in found] == [("dock-01/b1/recordings/CAM1/r1.age", left)]
    assert found[0].initiated is not None

    bucket.abort_upload(found[0].key, left)
    bucket.abort_upload(found[0].key, left)  # idempotent
    assert [u.upload_id for u in bucket.open_uploads()] == [other]
    with pytest.raises(UploadNotFoundError):
        bucket.upload_part(found[0].key, left, 2, b"more")
    with pytest.raises(UploadNotFoundError):
        bucket.list_parts(found[0].key, left)
    bucket.abort_upload("dock-02/b9/recordings/CAM2/r2.age", other)
    assert bucket.open_uploads() == []


# -- whole objects ----------------------------------------------------------------------------------------
def test_create_only_put_refuses_a_second_write_but_not_a_retry(bucket: Bucket) -> None:
    key = "dock-01/batch-0001/manifest.json"
    info = bucket.put_object(key, b'{"v":1}')
    assert info.size == 7 and info.sha256_hex == hashlib.sha256(b'{"v":1}').hexdigest()
    assert info.checksum == b64_sha256(b'{"v":1}')  # a whole object: SHA-256
    assert bucket.put_object(key, b'{"v":1}').checksum == info.checksum  # same bytes: retry
    with pytest.raises(ObjectExistsError) as caught:
        bucket.put_object(key, b'{"v":2}')
    assert caught.value.existing is not None and caught.value.existing.size == 7
    assert key in str(caught.value)
    assert bucket.get_bytes(key, 1024) == b'{"v":1}'
    bucket.put_object(key, b'{"v":22}', create_only=False)
    assert bucket.get_bytes(key, 1024) == b'{"v":22}'


def test_head_get_bytes_and_missing_objects(bucket: Bucket) -> None:
    assert bucket.head("nothing/here") is None
    with pytest.raises(ObjectNotFoundError):
        bucket.open_read("nothing/here")
    bucket.put_object("m.json", b"a" * 100)
    head = bucket.head("m.json")
    assert head is not None and head.size == 100 and head.checksum == b64_sha256(b"a" * 100)
    assert bucket.get_bytes("m.json", 100) == b"a" * 100
    with pytest.raises(IntegrityError, match="over 99"):
        bucket.get_bytes("m.json", 99)
    bucket.delete("m.json")
    bucket.delete("m.json")  # idempotent
    assert bucket.head("m.json") is None


def test_wrong_checksum_is_refused(bucket: Bucket) -> None:
    with pytest.raises(ChecksumMismatchError):
        bucket.put_object("x/manifest.json", b"these bytes", sha256_b64=b64_sha256(b"not these bytes"))
    assert bucket.head("x/manifest.json") is None
    upload_id = bucket.start_upload(KEY)
    with pytest.raises(ChecksumMismatchError):
        bucket.upload_part(KEY, upload_id, 1, b"part bytes", checksum=part_checksum(b"not these bytes"))
    assert bucket.list_parts(KEY, upload_id) == []
    bucket.abort_upload(KEY, upload_id)


def test_a_part_corrupted_after_its_crc32c_is_refused_and_never_completes(bucket: Bucket) -> None:
    """The part checksum is a CRC-32C computed where the ciphertext is produced (issue 14 item 2): one byte
    changed on the way is refused by the bucket (SeaweedFS's BadDigest, the local bucket's own check), so
    the upload cannot complete and the recording is never verified, hence never erased from the camera."""
    data = bytearray(blob(MIN_PART_SIZE + 3, 7))
    sent = b64_crc32c(data)
    assert checksum_algorithm(sent) == "CRC32C"
    data[MIN_PART_SIZE // 2] ^= 0x01
    upload_id = bucket.start_upload(KEY)
    with pytest.raises(ChecksumMismatchError):
        bucket.upload_part(KEY, upload_id, 1, data, checksum=sent)
    assert bucket.list_parts(KEY, upload_id) == []
    with pytest.raises(UploadError):
        bucket.complete_upload(KEY, upload_id, [Part(1, '"x"', sent, len(data))])
    assert bucket.head(KEY) is None
    bucket.abort_upload(KEY, upload_id)


def test_an_older_agents_sha256_parts_still_complete(bucket: Bucket) -> None:
    """Parts an agent journaled before CRC-32C (SHA-256) finish their upload with SHA-256 composites."""
    chunks = [blob(MIN_PART_SIZE, 11), blob(99, 12)]
    if isinstance(bucket, S3Bucket):  # as an older agent began it: S3 refuses a second algorithm in one upload
        raw = bucket._client.create_multipart_upload(
            Bucket=bucket.bucket, Key=f"{bucket.prefix}/{KEY}", ChecksumAlgorithm="SHA256"
        )
        upload_id = str(raw["UploadId"])
    else:
        upload_id = bucket.start_upload(KEY)
    parts = [bucket.upload_part(KEY, upload_id, n, c, checksum=b64_sha256(c)) for n, c in enumerate(chunks, 1)]
    assert [checksum_algorithm(p.checksum or "") for p in parts] == ["SHA256", "SHA256"]
    info = bucket.complete_upload(KEY, upload_id, parts)
    assert info.checksum == composite_checksum(parts) and info.size == sum(map(len, chunks))
    with pytest.raises(UploadError, match="mix"):
        composite_checksum([parts[0], Part(2, '"y"', b64_crc32c(chunks[1]), 99)])


def test_iter_objects_pages_in_key_order(bucket: Bucket) -> None:
    keys = ["a/b", "a-c", "a0", "a/c/d", "b", "a/b0/x", *(f"p/{i:03d}" for i in range(20))]
    for key in keys:
        bucket.put_object(key, key.encode())
    listed = list(bucket.iter_objects(page_size=7))
    if isinstance(bucket, LocalBucket):  # S3's order: by UTF-8 bytes ("a-c" < "a/b")
        assert [o.key for o in listed] == sorted(keys)
    else:  # SeaweedFS walks its directory tree instead ("a/b" < "a-c"); each key still exactly once
        assert sorted(o.key for o in listed) == sorted(keys) and len(listed) == len(keys)
    assert all(o.size == len(o.key) for o in listed)
    assert [o.key for o in bucket.iter_objects("a/", page_size=2)] == ["a/b", "a/b0/x", "a/c/d"]
    assert [o.key for o in bucket.iter_objects("a/b")] == ["a/b", "a/b0/x"]
    assert list(bucket.iter_objects("zzz/")) == []


def test_iter_objects_over_a_thousand_keys_on_s3(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    bucket = s3_of(seaweedfs, s3_bucket)
    keys = [f"d/{i:05d}" for i in range(1005)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: bucket.put_object(k, b""), keys))
    assert [o.key for o in bucket.iter_objects("d/")] == keys  # default page 1000: two pages


@pytest.mark.parametrize(
    "bad", ["../escape", "/etc/passwd", "a/../../b", "a//b", "a/./b", "nul\x00x", "back\\slash", ".uploads/x", "", "a/"]
)
def test_keys_that_could_escape_are_refused(bucket: Bucket, bad: str, tmp_path: Path) -> None:
    before = sorted(p.name for p in tmp_path.iterdir())
    attempts: list[Callable[[], object]] = [
        lambda: bucket.put_object(bad, b"x"),
        lambda: bucket.head(bad),
        lambda: bucket.start_upload(bad),
        lambda: bucket.open_read(bad),
        lambda: bucket.delete(bad),
    ]
    for attempt in attempts:
        with pytest.raises(IntegrityError):
            attempt()
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_local_bucket_directories_take_no_write_bits_from_a_permissive_umask(tmp_path: Path) -> None:
    """The embedded bucket is the dock's evidence store: under umask 000 its directories came out 0777, so
    any local user could rename an upload's ``data`` away and put other bytes of the same length in its
    place (a local completion trusts the part index, not a re-read) or remove a verified object. Files
    were already created 0644; the directories, the nested ones of each key included, are now 0755."""
    old = os.umask(0)
    try:
        bucket = LocalBucket(tmp_path / "srv" / "bucket")
        upload_id = bucket.start_upload(KEY)
        part = bucket.upload_part(KEY, upload_id, 1, blob(777, 5))
        bucket.complete_upload(KEY, upload_id, [part])
        bucket.put_object("dock-01/b-1/log/tile/0/000.p/1", b"tile")
        bucket.upload_part(KEY + ".2", bucket.start_upload(KEY + ".2"), 1, blob(777, 6))
    finally:
        os.umask(old)
    dirs = [p for p in (tmp_path / "srv").rglob("*") if p.is_dir()]
    assert len(dirs) >= 9
    loose = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in dirs if p.stat().st_mode & 0o022}
    assert loose == {}


@pytest.fixture
def no_xattr_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on ramfs, which keeps no user xattrs (as vfat, many NFS mounts, tmpfs before Linux 6.6)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a ramfs")
    where = tmp_path / "ramfs"
    where.mkdir()
    subprocess.run(["mount", "-t", "ramfs", "ramfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def test_a_completion_repeated_after_a_crash_finds_its_object_without_xattrs(no_xattr_dir: Path) -> None:
    """Where the bucket's filesystem keeps no xattrs an object has no stored checksum, and a completion
    repeated after a crash (the object in place, the journal not yet 'verified') took the object for
    other content: refused for good when the crash left the upload directory (the batch never sealed),
    or taken for an upload the bucket lost when it did not (the recording read again into a new batch,
    the object left behind: twice in the bucket). The object's bytes now answer for it."""
    bucket = LocalBucket(no_xattr_dir / "bucket")
    chunks = [blob(MIN_PART_SIZE, 31), blob(999, 32)]
    upload_id = bucket.start_upload(KEY)
    parts = [bucket.upload_part(KEY, upload_id, n, c) for n, c in enumerate(chunks, 1)]
    udir = bucket.root / ".uploads" / upload_id
    kept = no_xattr_dir / "kept-upload"
    shutil.copytree(udir, kept)
    first = bucket.complete_upload(KEY, upload_id, parts)
    assert bucket.head(KEY) is not None and bucket.head(KEY).checksum is None  # type: ignore[union-attr]
    # the crash came before the upload directory was removed
    shutil.copytree(kept, udir)
    again = LocalBucket(bucket.root).complete_upload(KEY, upload_id, parts)
    assert (again.size, again.checksum) == (first.size, first.checksum)
    # the crash came after it was removed
    again = LocalBucket(bucket.root).complete_upload(KEY, upload_id, parts)
    assert (again.size, again.checksum) == (first.size, first.checksum)
    # other bytes at the key are still other content
    (bucket.root / KEY).write_bytes(b"x" * first.size)
    shutil.copytree(kept, udir)
    with pytest.raises(ObjectExistsError):
        LocalBucket(bucket.root).complete_upload(KEY, upload_id, parts)
    with pytest.raises(UploadNotFoundError):
        LocalBucket(bucket.root).complete_upload(KEY, "0" * 32, parts)
    # a single put repeated is the same write, a different one is refused
    LocalBucket(bucket.root).put_object("dock-01/b/manifest.json", b"{}")
    LocalBucket(bucket.root).put_object("dock-01/b/manifest.json", b"{}")
    with pytest.raises(ObjectExistsError):
        LocalBucket(bucket.root).put_object("dock-01/b/manifest.json", b"[]")


def test_local_uniform_parts_are_written_once_in_place(tmp_path: Path) -> None:
    """Parts of part 1's size go straight to their place in the upload's data file, so completing copies
    only the short last part and the object is that very file (issue 14): the same inode, no second copy.
    Out of order, re-sent, resumed by a new instance: the bytes are still exactly the parts in order."""
    bucket = LocalBucket(tmp_path / "bucket")
    chunks = [blob(MIN_PART_SIZE, 21), blob(MIN_PART_SIZE, 22), blob(MIN_PART_SIZE, 23), blob(777, 24)]
    upload_id = bucket.start_upload(KEY)
    udir = bucket.root / ".uploads" / upload_id
    parts = {4: bucket.upload_part(KEY, upload_id, 4, chunks[3])}  # the last part first
    parts[1] = bucket.upload_part(KEY, upload_id, 1, chunks[0])
    parts[3] = bucket.upload_part(KEY, upload_id, 3, blob(MIN_PART_SIZE, 99))  # replaced below
    parts[3] = bucket.upload_part(KEY, upload_id, 3, chunks[2])
    again = LocalBucket(bucket.root)  # a restarted agent resumes
    parts[2] = again.upload_part(KEY, upload_id, 2, chunks[1])
    # no side file per part: the placed ones are lines of the index; the short last part, sent before any
    # part set the stride, has a file of its own
    assert sorted(p.name for p in udir.iterdir()) == ["00004.part", "data", "key", "parts"]
    index = partindex.parse((udir / "parts").read_bytes())
    assert index.stride == MIN_PART_SIZE and index.damaged == 0
    assert {n: r.offset for n, r in index.parts.items()} == {1: 0, 2: MIN_PART_SIZE, 3: 2 * MIN_PART_SIZE, 4: None}
    held = again.list_parts(KEY, upload_id)
    assert [(p.number, p.size, p.checksum) for p in held] == [
        (n, parts[n].size, parts[n].checksum) for n in sorted(parts)
    ]
    inode = (udir / "data").stat().st_ino
    info = again.complete_upload(KEY, upload_id, [parts[n] for n in sorted(parts)])
    assert (bucket.root / KEY).read_bytes() == b"".join(chunks)
    assert (bucket.root / KEY).stat().st_ino == inode and info.size == sum(map(len, chunks))
    assert not udir.exists()


def _cached_bytes(path: Path) -> int:
    """How many bytes of the file the page cache holds (util-linux fincore)."""
    fincore = shutil.which("fincore")
    assert fincore is not None
    out = subprocess.run([fincore, "--bytes", "--noheadings", "--raw", "--output", "RES", str(path)],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return int(out.split()[0])


def _direct_io(directory: Path) -> bool:
    try:
        fd = os.open(directory / "direct-probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
    except OSError:
        return False
    os.close(fd)
    return True


def test_local_parts_cut_in_the_buckets_own_buffers_bypass_the_page_cache(tmp_path: Path) -> None:
    """Parts the pipeline cuts in the local bucket's own (page-aligned) buffers are written with O_DIRECT:
    copying each byte into the page cache cost the daemon's bay workers more CPU than encrypting it
    (issue 14). The page cache holds none of them (only the page of the short last part, whose length is not
    aligned), where a part sent as bytes (written through the cache, as before) stays there; both complete
    into the same exact object."""
    if shutil.which("fincore") is None or not _direct_io(tmp_path):
        pytest.skip("needs util-linux fincore and a filesystem with O_DIRECT")
    chunks = [blob(MIN_PART_SIZE, 41), blob(MIN_PART_SIZE, 42), blob(999, 43)]
    bucket = LocalBucket(tmp_path / "bucket")
    direct_id, cached_id = bucket.start_upload(KEY), bucket.start_upload(KEY + ".cached")
    direct, cached = [], []
    for number, chunk in enumerate(chunks, 1):
        buf = bucket.part_buffer(MIN_PART_SIZE)
        buf[: len(chunk)] = chunk
        direct.append(bucket.upload_part(KEY, direct_id, number, memoryview(buf)[: len(chunk)]))
        cached.append(bucket.upload_part(KEY + ".cached", cached_id, number, chunk))
    uploads = bucket.root / ".uploads"
    assert _cached_bytes(uploads / direct_id / "data") <= 4096  # the short last part's one page, written through it
    assert _cached_bytes(uploads / cached_id / "data") >= 2 * MIN_PART_SIZE
    bucket.complete_upload(KEY, direct_id, direct)
    bucket.complete_upload(KEY + ".cached", cached_id, cached)
    assert (bucket.root / KEY).read_bytes() == (bucket.root / (KEY + ".cached")).read_bytes() == b"".join(chunks)


def test_local_parts_out_of_place_are_copied_into_a_new_object(tmp_path: Path) -> None:
    """Part numbers with a gap (1, 3): part 3 stands at 2 x stride in the data file but belongs right after
    part 1, so the object is built by copying; a corrupted placed part is refused by its checksum."""
    bucket = LocalBucket(tmp_path / "bucket")
    chunks = [blob(MIN_PART_SIZE, 31), blob(MIN_PART_SIZE, 32)]
    upload_id = bucket.start_upload(KEY)
    first = bucket.upload_part(KEY, upload_id, 1, chunks[0])
    third = bucket.upload_part(KEY, upload_id, 3, chunks[1])
    with pytest.raises(ChecksumMismatchError):
        bucket.upload_part(KEY, upload_id, 2, blob(MIN_PART_SIZE, 33), checksum=b64_crc32c(b"other bytes"))
    assert [p.number for p in bucket.list_parts(KEY, upload_id)] == [1, 3]
    bucket.complete_upload(KEY, upload_id, [first, third])
    assert (bucket.root / KEY).read_bytes() == chunks[0] + chunks[1]


def test_local_bucket_does_not_follow_symlinks_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    bucket = LocalBucket(tmp_path / "bucket")
    (bucket.root / "link").symlink_to(outside)
    (bucket.root / "file-link").symlink_to(outside / "secret")
    with pytest.raises(IntegrityError):
        bucket.put_object("link/x", b"x")
    with pytest.raises(IntegrityError):
        bucket.open_read("link/secret")
    with pytest.raises((ObjectNotFoundError, StorageError)):
        bucket.open_read("file-link")
    assert bucket.head("file-link") is None
    assert list(outside.iterdir()) == [outside / "secret"]
    assert [o.key for o in bucket.iter_objects()] == []


def test_local_bucket_write_is_all_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = LocalBucket(tmp_path / "bucket")

    def no_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_fsync)
    with pytest.raises(StorageError, match="No space left"):
        bucket.put_object("dock/m.json", b"data")
    monkeypatch.undo()
    assert bucket.head("dock/m.json") is None
    assert list((bucket.root / ".uploads").iterdir()) == []  # no temp file left behind
    bucket.put_object("dock/m.json", b"data")
    assert sorted(str(p.relative_to(bucket.root)) for p in bucket.root.rglob("*")) == [
        ".uploads",
        "dock",
        "dock/m.json",
    ]


def test_both_buckets_share_one_layout(seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path) -> None:
    local = LocalBucket(tmp_path / "bucket")
    remote = s3_of(seaweedfs, s3_bucket)
    for b in (local, remote):
        b.put_object("dock-01/b1/manifest.json", b"{}")
    assert (local.root / "dock-01/b1/manifest.json").read_bytes() == b"{}"
    raw = seaweedfs.client().list_objects_v2(Bucket=s3_bucket)
    assert [o["Key"] for o in raw["Contents"]] == ["evidence/dock-01/b1/manifest.json"]


# -- the S3 server itself ---------------------------------------------------------------------------------
def test_server_checks_checksums_sent_around_the_api(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    """Prove the server, not our code, refuses a wrong ChecksumSHA256 or ChecksumCRC32C (raw boto3 calls)."""
    s3 = seaweedfs.client()
    wrong = b64_sha256(b"something else")
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket=s3_bucket, Key="k", Body=b"data", ChecksumSHA256=wrong)
    assert caught.value.response["Error"]["Code"] == "BadDigest"
    upload = s3.create_multipart_upload(Bucket=s3_bucket, Key="m", ChecksumAlgorithm="SHA256")["UploadId"]
    with pytest.raises(ClientError) as caught:
        s3.upload_part(Bucket=s3_bucket, Key="m", UploadId=upload, PartNumber=1, Body=b"p", ChecksumSHA256=wrong)
    assert caught.value.response["Error"]["Code"] == "BadDigest"
    good = s3.upload_part(
        Bucket=s3_bucket, Key="m", UploadId=upload, PartNumber=1, Body=b"p", ChecksumSHA256=b64_sha256(b"p")
    )
    with pytest.raises(ClientError) as caught:  # completion with a part checksum that is not the stored one
        s3.complete_multipart_upload(
            Bucket=s3_bucket,
            Key="m",
            UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": good["ETag"], "ChecksumSHA256": wrong}]},
        )
    assert caught.value.response["Error"]["Code"] == "BadDigest"
    # the same for the CRC-32C our parts carry: UploadPart and the completion's part list are checked
    crc_wrong = b64_crc32c(b"something else")
    upload = s3.create_multipart_upload(Bucket=s3_bucket, Key="c", ChecksumAlgorithm="CRC32C")["UploadId"]
    with pytest.raises(ClientError) as caught:
        s3.upload_part(Bucket=s3_bucket, Key="c", UploadId=upload, PartNumber=1, Body=b"p", ChecksumCRC32C=crc_wrong)
    assert caught.value.response["Error"]["Code"] == "BadDigest"
    good = s3.upload_part(
        Bucket=s3_bucket, Key="c", UploadId=upload, PartNumber=1, Body=b"p", ChecksumCRC32C=b64_crc32c(b"p")
    )
    with pytest.raises(ClientError) as caught:
        s3.complete_multipart_upload(
            Bucket=s3_bucket,
            Key="c",
            UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": good["ETag"], "ChecksumCRC32C": crc_wrong}]},
        )
    assert caught.value.response["Error"]["Code"] == "BadDigest"


def test_stopped_server_gives_upload_error_quickly_then_works_again(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    bucket = s3_of(seaweedfs, s3_bucket)
    upload_id = bucket.start_upload(KEY)
    parts = [bucket.upload_part(KEY, upload_id, 1, blob(MIN_PART_SIZE))]
    seaweedfs.stop()
    try:
        started = time.monotonic()
        with pytest.raises(UploadError, match=r"endpoint.*reachable") as caught:
            bucket.upload_part(KEY, upload_id, 2, b"tail")
        elapsed = time.monotonic() - started
        assert elapsed < 30, elapsed
        assert s3_bucket in str(caught.value) and KEY in str(caught.value)
        with pytest.raises(UploadError):
            bucket.head(KEY)
    finally:
        seaweedfs.start()
    parts.append(bucket.upload_part(KEY, upload_id, 2, b"tail"))  # the same upload resumes
    info = bucket.complete_upload(KEY, upload_id, parts)
    assert info.size == MIN_PART_SIZE + 4
    assert bucket.get_bytes(KEY, MIN_PART_SIZE + 4)[-4:] == b"tail"
    print(f"outage detected in {elapsed:.2f} s")


def test_fault_proxy_cut_upload_is_upload_error(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    with FaultProxy(("127.0.0.1", seaweedfs.ports["s3"])) as proxy:
        bucket = s3_of(seaweedfs, s3_bucket, endpoint=proxy.url)
        upload_id = bucket.start_upload(KEY)
        data = blob(MIN_PART_SIZE)
        proxy.set(cut_after=256 * 1024)
        started = time.monotonic()
        with pytest.raises(UploadError, match="part 1"):
            bucket.upload_part(KEY, upload_id, 1, data)
        assert time.monotonic() - started < 30
        assert proxy.stats.cuts >= 1
        proxy.set()
        part = bucket.upload_part(KEY, upload_id, 1, data)
        assert bucket.complete_upload(KEY, upload_id, [part]).size == len(data)
        with bucket.open_read(KEY) as reader:
            assert hashlib.sha256(b"".join(reader.iter_chunks())).digest() == hashlib.sha256(data).digest()


def test_fault_proxy_refuse_and_delay(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    with FaultProxy(("127.0.0.1", seaweedfs.ports["s3"])) as proxy:
        bucket = s3_of(seaweedfs, s3_bucket, endpoint=proxy.url, max_attempts=2)
        proxy.set(refuse=True)
        with pytest.raises(UploadError):
            bucket.put_object("a", b"a")
        assert proxy.stats.refused >= 2  # botocore retried, bounded
        proxy.set(delay_ms=50)
        started = time.monotonic()
        bucket.put_object("a", b"a")
        assert time.monotonic() - started >= 0.1  # request and response each waited
        assert bucket.get_bytes("a", 10) == b"a"


def test_lost_responses_still_give_exactly_one_object(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    """The server commits, the client never hears it, botocore retries: create-only must not fail or double."""
    with FaultProxy(("127.0.0.1", seaweedfs.ports["s3"])) as proxy:
        bucket = s3_of(seaweedfs, s3_bucket, endpoint=proxy.url)
        proxy.set(drop_responses=1)
        info = bucket.put_object("dock/manifest.json", b"{}")
        assert proxy.stats.dropped_responses == 1
        assert info.size == 2
        upload_id = bucket.start_upload(KEY)
        part = bucket.upload_part(KEY, upload_id, 1, b"only part")
        proxy.set(drop_responses=1)
        done = bucket.complete_upload(KEY, upload_id, [part])
        assert proxy.stats.dropped_responses == 2
        assert done.size == 9 and done.checksum == composite_checksum([part])
    direct = s3_of(seaweedfs, s3_bucket)
    assert sorted(o.key for o in direct.iter_objects()) == [KEY, "dock/manifest.json"]
    assert direct.open_uploads() == []


def test_object_lock_retention_is_applied_and_enforced(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    locked_name = seaweedfs.make_bucket(f"{s3_bucket}-lock", object_lock=True)
    locked = s3_of(seaweedfs, locked_name, retention_days=1)
    assert locked.object_lock_enabled()
    info = locked.put_object("dock/manifest.json", b"{}")
    assert info.version_id and info.lock_mode == "COMPLIANCE"
    head = locked.head("dock/manifest.json")
    assert head is not None and head.lock_mode == "COMPLIANCE" and head.retain_until is not None
    assert abs(head.retain_until - (datetime.now(UTC) + timedelta(days=1))) < timedelta(minutes=5)
    upload_id = locked.start_upload(KEY)
    done = locked.complete_upload(KEY, upload_id, [locked.upload_part(KEY, upload_id, 1, b"footage")])
    head = locked.head(KEY)
    assert head is not None and head.lock_mode == "COMPLIANCE" and head.version_id == done.version_id
    with pytest.raises(UploadError, match=r"credentials|AccessDenied"):  # COMPLIANCE: not even the owner
        locked.delete(KEY, version_id=done.version_id)
    assert locked.head(KEY, version_id=done.version_id) is not None

    plain = s3_of(seaweedfs, s3_bucket, retention_days=1)
    assert not plain.object_lock_enabled()
    assert plain.put_object("m.json", b"{}").lock_mode is None


class NoConditionalWrites:
    """A client for a server that answers 501 to If-None-Match (some S3-compatible servers do)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.real, name)

        def call(**kwargs: Any) -> Any:
            if "IfNoneMatch" in kwargs:
                self.refused += 1
                response: Any = {
                    "Error": {"Code": "NotImplemented", "Message": "If-None-Match"},
                    "ResponseMetadata": {"HTTPStatusCode": 501},
                }
                raise ClientError(response, name)
            return method(**kwargs)

        return call


def test_create_only_falls_back_to_head_when_if_none_match_is_not_implemented(
    seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    client = NoConditionalWrites(seaweedfs.client())
    bucket = S3Bucket(s3_bucket, "evidence", endpoint_url=seaweedfs.endpoint_url, client=client)
    bucket.put_object("m.json", b"1")
    assert client.refused == 1  # asked once, then HEAD before each create-only write
    bucket.put_object("m.json", b"1")
    with pytest.raises(ObjectExistsError):
        bucket.put_object("m.json", b"2")
    upload_id = bucket.start_upload(KEY)
    part = bucket.upload_part(KEY, upload_id, 1, b"footage")
    assert bucket.complete_upload(KEY, upload_id, [part]).size == 7
    other = bucket.start_upload(KEY)
    with pytest.raises(ObjectExistsError):
        bucket.complete_upload(KEY, other, [bucket.upload_part(KEY, other, 1, b"different")])
    assert client.refused == 1 and bucket.get_bytes(KEY, 100) == b"footage"


def test_credentials_and_missing_bucket_errors_say_what_to_check(
    seaweedfs: SeaweedFS, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(UploadError, match=r"create bucket 'no-such-bucket-here'"):
        s3_of(seaweedfs, "no-such-bucket-here").start_upload(KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    with pytest.raises(UploadError, match="check the S3 credentials") as caught:
        s3_of(seaweedfs, s3_bucket).put_object("m.json", b"{}")
    assert s3_bucket in str(caught.value) and "wrong-secret" not in str(caught.value)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ConfigError, match="no S3 credentials"):
        s3_of(seaweedfs, s3_bucket).put_object("m.json", b"{}")


def test_connection_cut_while_streaming_a_read_is_upload_error(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    data = blob(24 * 1024 * 1024)
    s3_of(seaweedfs, s3_bucket).put_object(KEY, data)
    with FaultProxy(("127.0.0.1", seaweedfs.ports["s3"])) as proxy:
        bucket = s3_of(seaweedfs, s3_bucket, endpoint=proxy.url)
        with bucket.open_read(KEY) as reader:
            assert reader.size == len(data)
            chunks = reader.iter_chunks(64 * 1024)
            assert next(chunks) == data[: 64 * 1024]
            proxy.set()  # resets the connection the body is streaming over
            with pytest.raises(UploadError, match="mid-stream"):
                for _ in chunks:
                    pass


# -- configuration ----------------------------------------------------------------------------------------
def test_open_bucket_parses_urls(tmp_path: Path) -> None:
    local = open_bucket(f"file://{tmp_path}/b")
    assert isinstance(local, LocalBucket) and local.root == tmp_path / "b"
    s3 = open_bucket("s3://evidence/training/force-a", "http://127.0.0.1:9")
    assert isinstance(s3, S3Bucket) and (s3.bucket, s3.prefix) == ("evidence", "training/force-a")
    assert isinstance(open_bucket("s3://evidence"), S3Bucket)
    for url in ("http://x/y", "s3://", "s3://Bad_Name", "file://host/x", "file:relative", "s3://b/../x", "nonsense"):
        with pytest.raises(ConfigError, match=r"bucket\.url"):
            open_bucket(url)
    with pytest.raises(ConfigError, match=r"bucket\.endpoint_url"):
        open_bucket(f"file://{tmp_path}", "http://127.0.0.1:9")
    with pytest.raises(ConfigError, match=r"bucket\.endpoint_url"):
        open_bucket("s3://evidence", "127.0.0.1:9000")
    with pytest.raises(ConfigError, match="retention_days"):
        open_bucket("s3://evidence", retention_days=0)
