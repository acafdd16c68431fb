"""A local multipart upload's on-disk record (issue 14 item 3): one data write and one index line per part.

Each test breaks a promise of the layout ``.uploads/<upload_id>/{key,data,parts}`` (agent/storage/partindex.py):
a part costs one write of its bytes and one checked line, both made durable, and nothing else; a record torn
by a crash, damaged or missing never lists a part whose bytes are not there (the part is sent again); an
upload an older agent began with a side file per part still resumes; and a process killed at any moment
resumes without losing an acknowledged part or completing anything but the exact bytes.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bodycam.agent.storage import partindex
from bodycam.agent.storage.bucket import (
    MIN_PART_SIZE,
    ChecksumMismatchError,
    LocalBucket,
    Part,
    b64_crc32c,
    b64_sha256,
)
from bodycam.drivers.crc import crc32c
from bodycam.drivers.errors import UploadError

from .dock import iso_window, make_dock, window
from .sims import SimProcess

KEY = "dock-01/batch-0001/recordings/CAM123/rec-0001.age"
MiB = 1024 * 1024


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def chunks_of(count: int, last: int, seed: int = 0) -> list[bytes]:
    return [blob(MIN_PART_SIZE, seed + n) for n in range(count)] + [blob(last, seed + count)]


def send(bucket: LocalBucket, upload_id: str, number: int, chunk: bytes) -> Part:
    """As the pipeline sends a part: cut in the bucket's own (page-aligned) buffer, with its CRC-32C."""
    buf = bucket.part_buffer(MIN_PART_SIZE)
    buf[: len(chunk)] = chunk
    with memoryview(buf) as view:
        return bucket.upload_part(KEY, upload_id, number, view[: len(chunk)], checksum=b64_crc32c(chunk))


def upload_dir(bucket: LocalBucket, upload_id: str) -> Path:
    return bucket.root / ".uploads" / upload_id


@dataclass
class Sent:
    """An upload every chunk of which was sent, as a crashed agent leaves it for the next one to resume."""

    bucket: LocalBucket
    chunks: list[bytes]
    upload_id: str
    parts: list[Part]

    @property
    def index(self) -> Path:
        return upload_dir(self.bucket, self.upload_id) / "parts"

    def damaged(self, at: int, mask: int) -> LocalBucket:
        """Byte ``at`` of the part index flipped by ``mask``, then the bucket as a restarted agent opens it."""
        raw = bytearray(self.index.read_bytes())
        raw[at] ^= mask
        self.index.write_bytes(bytes(raw))
        return LocalBucket(self.bucket.root)


def sent(tmp_path: Path, count: int, last: int, seed: int) -> Sent:
    """``chunks_of(count, last, seed)`` sent as parts 1.. of one upload into a fresh bucket."""
    bucket = LocalBucket(tmp_path / "bucket")
    chunks = chunks_of(count, last, seed=seed)
    upload_id = bucket.start_upload(KEY)
    return Sent(bucket, chunks, upload_id, [send(bucket, upload_id, n, c) for n, c in enumerate(chunks, 1)])


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The fsync and fdatasync calls made (each still made, on the real file), by the name of the file."""
    calls: list[str] = []
    real_fsync, real_fdatasync = os.fsync, os.fdatasync

    def named(fd: int) -> str:
        return os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))

    def fsync(fd: int) -> None:
        calls.append("fsync " + named(fd))
        real_fsync(fd)

    def fdatasync(fd: int) -> None:
        calls.append("fdatasync " + named(fd))
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    yield calls


def test_a_part_costs_one_data_write_and_one_index_line(tmp_path: Path, syncs: list[str]) -> None:
    """Each part (the short last one too) is written once at its place in ``data`` and recorded by one
    line of the index: two fdatasyncs, no file created, renamed or removed, no directory fsync (before:
    a ``.placed`` and a ``.checksum`` file per part, four fsyncs). Completing links ``data`` as the object."""
    bucket = LocalBucket(tmp_path / "bucket")
    chunks = chunks_of(3, 4321, seed=1)
    upload_id = bucket.start_upload(KEY)
    udir = upload_dir(bucket, upload_id)
    inode = (udir / "data").stat().st_ino
    syncs.clear()
    parts = [send(bucket, upload_id, n, c) for n, c in enumerate(chunks, 1)]
    assert syncs == ["fdatasync data", "fdatasync parts"] * len(chunks)
    assert sorted(p.name for p in udir.iterdir()) == ["data", "key", "parts"]
    lines = (udir / "parts").read_bytes().splitlines()
    assert len(lines) == 1 + len(chunks) and lines[0].startswith(b"S 5242880 ")  # the stride, then one per part
    index = partindex.parse((udir / "parts").read_bytes())
    assert [(r.number, r.size, r.offset, r.checksum) for r in index.parts.values()] == [
        (n, len(c), (n - 1) * MIN_PART_SIZE, b64_crc32c(c)) for n, c in enumerate(chunks, 1)
    ]
    assert LocalBucket(bucket.root).list_parts(KEY, upload_id) == parts  # what a restarted agent finds
    bucket.complete_upload(KEY, upload_id, parts)
    assert (bucket.root / KEY).read_bytes() == b"".join(chunks)
    assert (bucket.root / KEY).stat().st_ino == inode  # no copy at all


def test_a_torn_last_record_is_ignored_and_cut_off_before_the_next(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A crash while appending leaves half a line: it fails its CRC, so its part is not listed (the
    pipeline sends it again), and the next writer cuts it off, so the new record follows whole ones."""
    bucket = LocalBucket(tmp_path / "bucket")
    chunks = chunks_of(2, 999, seed=10)
    upload_id = bucket.start_upload(KEY)
    parts = [send(bucket, upload_id, n, c) for n, c in enumerate(chunks[:2], 1)]
    index = upload_dir(bucket, upload_id) / "parts"
    whole = index.read_bytes()
    record = partindex.part_record(partindex.PartRecord(3, 999, 2 * MIN_PART_SIZE, b64_crc32c(chunks[2])))
    for torn in (record[:17], record[:-1], record[:-2] + b"0\n"):  # cut short, no newline, a wrong CRC
        index.write_bytes(whole + torn)
        again = LocalBucket(bucket.root)
        with caplog.at_level(logging.WARNING):
            assert again.list_parts(KEY, upload_id) == parts
        assert "do not check" in caplog.text
    parts.append(send(again, upload_id, 3, chunks[2]))
    assert index.read_bytes() == whole + record  # the torn bytes are gone, the new record whole
    assert partindex.parse(index.read_bytes()).damaged == 0
    again.complete_upload(KEY, upload_id, parts)
    assert (bucket.root / KEY).read_bytes() == b"".join(chunks)


def test_a_damaged_record_unlists_it_and_every_later_one_until_they_are_sent_again(tmp_path: Path) -> None:
    """One flipped byte in the middle of the index: the parts from that line on are not trusted (none is
    listed with bytes it may not describe), so they are sent again, and the object is exact; a part that
    does not have the listed bytes where it would stand does not complete."""
    up = sent(tmp_path, 3, 5, seed=20)
    bucket, chunks, upload_id, parts = up.bucket, up.chunks, up.upload_id, up.parts
    second = up.index.read_bytes().index(b"\nP 00002 ") + 1
    again = up.damaged(second + 10, 0x04)  # a digit of part 2's size
    assert [p.number for p in again.list_parts(KEY, upload_id)] == [1]
    wrong = Part(2, parts[1].etag, b64_crc32c(b"other bytes"), parts[1].size)
    with pytest.raises(UploadError, match="never uploaded"):
        again.complete_upload(KEY, upload_id, [parts[0], wrong, *parts[2:]])
    resent = [send(again, upload_id, n, chunks[n - 1]) for n in (2, 3, 4)]
    assert resent == parts[1:] and again.list_parts(KEY, upload_id) == parts
    again.complete_upload(KEY, upload_id, parts)
    assert (bucket.root / KEY).read_bytes() == b"".join(chunks)


def test_a_completion_finds_the_parts_a_damaged_index_lost_by_their_checksums(tmp_path: Path) -> None:
    """A recording in ``completing`` needs no camera: its journal lists every part. If the index lost their
    lines (damage), each is looked for where it would stand and taken when its bytes there have the
    journaled checksum, so the upload completes, byte-exact, without anything sent again."""
    up = sent(tmp_path, 3, 4000, seed=25)
    again = up.damaged(3, 0x01)  # the stride's line: nothing is listed any more
    assert again.list_parts(KEY, up.upload_id) == []
    again.complete_upload(KEY, up.upload_id, up.parts)
    assert (up.bucket.root / KEY).read_bytes() == b"".join(up.chunks)


def test_a_missing_index_lists_no_part_and_the_upload_still_completes(tmp_path: Path) -> None:
    up = sent(tmp_path, 1, 77, seed=30)
    bucket, chunks, upload_id, parts = up.bucket, up.chunks, up.upload_id, up.parts
    up.index.unlink()
    again = LocalBucket(bucket.root)
    assert again.list_parts(KEY, upload_id) == []
    assert [send(again, upload_id, n, c) for n, c in enumerate(chunks, 1)] == parts
    again.complete_upload(KEY, upload_id, parts)
    assert (bucket.root / KEY).read_bytes() == b"".join(chunks)


def test_two_bucket_instances_on_one_upload_each_see_the_others_records(tmp_path: Path) -> None:
    """Each instance keeps the index it parsed, and takes it again once the file is not the one it last saw
    (another writer appended): interleaved writers, one replacing the other's part, list and complete the
    same exact object."""
    chunks = chunks_of(2, 10, seed=80)
    a = LocalBucket(tmp_path / "bucket")
    upload_id = a.start_upload(KEY)
    b = LocalBucket(a.root)
    send(a, upload_id, 1, blob(MIN_PART_SIZE, 81))  # replaced by b below
    parts = [send(b, upload_id, 2, chunks[1]), send(b, upload_id, 1, chunks[0])]
    parts.append(send(a, upload_id, 3, chunks[2]))
    parts.sort(key=lambda p: p.number)
    assert a.list_parts(KEY, upload_id) == b.list_parts(KEY, upload_id) == parts
    a.complete_upload(KEY, upload_id, parts)
    assert (a.root / KEY).read_bytes() == b"".join(chunks)


def test_parts_whose_bytes_were_cut_from_the_data_file_do_not_complete(tmp_path: Path) -> None:
    """The index says where each part stands; a ``data`` file cut short under it (a disk that lost its
    tail, a hand) makes the completion refuse, not publish an object with a hole of zeros."""
    up = sent(tmp_path, 2, 100, seed=70)
    os.truncate(upload_dir(up.bucket, up.upload_id) / "data", 2 * MIN_PART_SIZE)
    with pytest.raises(ChecksumMismatchError, match="100 bytes short"):
        up.bucket.complete_upload(KEY, up.upload_id, up.parts)
    assert up.bucket.head(KEY) is None


def _old_layout(udir: Path, key: str, placed: dict[int, bytes], own: dict[int, bytes], sidecar: str) -> None:
    """An upload as the agent before the index left it (bd8b541 and earlier): ``stride`` from part 1,
    placed parts at ``(n - 1) x stride`` in ``data`` with ``NNNNN.placed`` (their size), others in
    ``NNNNN.part``, each with its checksum in ``NNNNN.<sidecar>`` (written after the bytes)."""
    udir.mkdir(parents=True)
    (udir / "key").write_text(key)
    (udir / "stride").write_text(str(MIN_PART_SIZE))
    with open(udir / "data", "wb") as data:
        for n, chunk in placed.items():
            data.seek((n - 1) * MIN_PART_SIZE)
            data.write(chunk)
            (udir / f"{n:05d}.placed").write_text(str(len(chunk)))
    for n, chunk in own.items():
        (udir / f"{n:05d}.part").write_bytes(chunk)
    checksum = b64_sha256 if sidecar == "sha256" else b64_crc32c
    for n, chunk in {**placed, **own}.items():
        if n != 2:  # the old agent died between part 2's .placed and its .checksum
            (udir / f"{n:05d}.{sidecar}").write_text(checksum(chunk))


@pytest.mark.parametrize("sidecar", ["checksum", "sha256"])
def test_an_upload_an_older_agent_began_resumes_from_its_side_files(tmp_path: Path, sidecar: str) -> None:
    """The dock is upgraded with an upload half done in the old layout: its parts are listed as the old
    agent listed them (same size, ETag and checksum, so the journal's rows still match them), part 2's
    missing checksum file is made good from its bytes, the side files become index lines once, and the
    upload completes byte-exact with the parts still to send."""
    bucket = LocalBucket(tmp_path / "bucket")
    chunks = chunks_of(3, 1234, seed=40)
    upload_id = "0123456789abcdef0123456789abcdef"
    udir = bucket.root / ".uploads" / upload_id
    _old_layout(udir, KEY, {1: chunks[0], 2: chunks[1]}, {4: chunks[3]}, sidecar)
    ours = b64_sha256 if sidecar == "sha256" else b64_crc32c
    again = LocalBucket(bucket.root)
    held = again.list_parts(KEY, upload_id)
    expected = {1: ours(chunks[0]), 2: b64_crc32c(chunks[1]), 4: ours(chunks[3])}  # 2: hashed (CRC-32C)
    assert [(p.number, p.size, p.checksum) for p in held] == [(n, len(chunks[n - 1]), c) for n, c in expected.items()]
    assert all(p.etag == '"' + partindex_hex(p.checksum) + '"' for p in held)
    assert sorted(p.name for p in udir.iterdir()) == ["00004.part", "data", "key", "parts"]  # side files gone
    parts = {p.number: p for p in held}
    parts[3] = again.upload_part(KEY, upload_id, 3, chunks[2], checksum=ours(chunks[2]))
    if sidecar == "sha256":  # an older agent's SHA-256 upload: part 2 listed as CRC-32C, completed as SHA-256
        parts[2] = Part(2, '"' + partindex_hex(b64_sha256(chunks[1])) + '"', b64_sha256(chunks[1]), len(chunks[1]))
    again.complete_upload(KEY, upload_id, [parts[n] for n in sorted(parts)])
    assert (bucket.root / KEY).read_bytes() == b"".join(chunks)


def test_a_cut_data_file_is_refused_even_when_a_part_copied_in_after_it_would_cover_its_length(tmp_path: Path) -> None:
    """An older agent's upload keeps its short last part in a file of its own; completing copies it into
    ``data`` after the placed parts, which lengthens a ``data`` cut short over a hole of zeros, so a
    check of the length after the copies passes (before: the object was made with part 2's bytes zeros)."""
    bucket = LocalBucket(tmp_path / "bucket")
    chunks = chunks_of(2, 1234, seed=100)
    upload_id = "fedcba9876543210fedcba9876543210"
    udir = bucket.root / ".uploads" / upload_id
    _old_layout(udir, KEY, {1: chunks[0], 2: chunks[1]}, {3: chunks[2]}, "checksum")
    parts = bucket.list_parts(KEY, upload_id)  # converted and parsed by the bucket that completes it
    parts[1] = Part(2, parts[1].etag, b64_crc32c(chunks[1]), len(chunks[1]))
    os.truncate(udir / "data", MIN_PART_SIZE + 10)
    with pytest.raises(ChecksumMismatchError, match=r"stored part 2 of .* is 5242870 bytes short"):
        bucket.complete_upload(KEY, upload_id, parts)
    assert bucket.head(KEY) is None


def partindex_hex(checksum: str) -> str:
    import base64

    return base64.b64decode(checksum).hex()


@st.composite
def _records(draw: st.DrawFn) -> list[bytes]:
    """Records as writers append them: at most one stride, before any placed part; a placed part at
    ``(number - 1) x stride`` and no longer than it, any other in its own file; drops of any number."""
    stride = draw(st.none() | st.integers(MIN_PART_SIZE, 5 * 1024**3))
    out = [] if stride is None else [partindex.stride_record(stride)]
    for _ in range(draw(st.integers(0, 20))):
        n = draw(st.integers(1, 10_000))
        if draw(st.booleans()):
            out.append(partindex.drop_record(n))
            continue
        placed = stride is not None and draw(st.booleans())
        size = draw(st.integers(0, stride if placed and stride is not None else 5 * 1024**3))
        offset = (n - 1) * stride if placed and stride is not None else None
        out.append(
            partindex.part_record(partindex.PartRecord(n, size, offset, b64_crc32c(draw(st.binary(max_size=8)))))
        )
    return out


_RECORDS = _records()


@given(_RECORDS, st.binary(max_size=64))
def test_the_index_reads_back_what_was_appended_and_never_more(records: list[bytes], tail: bytes) -> None:
    """Whole records read back exactly (the last of a number wins); whatever follows them (a torn record,
    garbage) is counted as damaged, never applied, never an exception."""
    whole = b"".join(records)
    state = partindex.parse(whole)
    assert (state.valid_end, state.damaged) == (len(whole), 0)
    for cut in sorted({0, len(whole) // 2, max(len(whole) - 1, 0)}):
        torn = partindex.parse(whole[:cut])
        assert torn.valid_end + torn.damaged == cut and torn.valid_end <= cut
    after = partindex.parse(whole + tail)
    assert after.valid_end >= len(whole) and after.valid_end + after.damaged == len(whole) + len(tail)
    if after.valid_end == len(whole):
        assert (after.parts, after.stride) == (state.parts, state.stride)


# -- killed at any moment ----------------------------------------------------------------------------------
_WRITER = """
import random, sys
from bodycam.agent.storage.bucket import LocalBucket, b64_crc32c
root, upload_id, key, count, last, seed, round_ = sys.argv[1:8]
count, last, seed, round_ = int(count), int(last), int(seed), int(round_)
MiB5 = 5 * 1024 * 1024
bucket = LocalBucket(root)
rng = random.Random(round_)
buf = bucket.part_buffer(MiB5)
print("ready", flush=True)
while True:  # pass after pass until killed
    held = {p.number for p in bucket.list_parts(key, upload_id)}
    for n in range(1, count + 2):
        if n in held and rng.random() < 0.6:
            continue  # as the pipeline does for a part it journaled; the others are sent again
        size = MiB5 if n <= count else last
        buf[:size] = random.Random(seed + n).randbytes(size)
        with memoryview(buf) as view:
            part = bucket.upload_part(key, upload_id, n, view[:size], checksum=b64_crc32c(view[:size]))
        print(part.number, part.etag, part.checksum, part.size, flush=True)
"""


def test_a_writer_killed_at_any_moment_loses_no_acknowledged_part_and_lists_none_it_does_not_hold(
    tmp_path: Path,
) -> None:
    """SIGKILL at seeded moments while parts are written, sent again and recorded: after each kill every
    part the bucket acknowledged is listed as acknowledged, every listed part's bytes are the ones its
    record names, and the upload finally completes to the exact object."""
    count, last, seed = 8, 3000, 50
    chunks = [blob(MIN_PART_SIZE, seed + n) for n in range(1, count + 1)] + [blob(last, seed + count + 1)]
    bucket = LocalBucket(tmp_path / "bucket")
    upload_id = bucket.start_upload(KEY)
    rng = random.Random(7)
    acked: dict[int, Part] = {}
    for round_ in range(8):
        args = [str(bucket.root), upload_id, KEY, str(count), str(last), str(seed), str(round_)]
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, *args], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.0, 0.6))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        for line in out.splitlines():
            number, etag, checksum, size = line.split()
            acked[int(number)] = Part(int(number), etag, checksum, int(size))
        held = {p.number: p for p in LocalBucket(bucket.root).list_parts(KEY, upload_id)}
        assert set(acked) <= set(held), (round_, sorted(acked), sorted(held))  # nothing acknowledged is lost
        assert all(held[n] == acked[n] for n in acked)
        for n, p in held.items():  # and nothing is listed that is not there
            assert p.checksum == b64_crc32c(chunks[n - 1]) and p.size == len(chunks[n - 1])
            assert _stored(bucket, upload_id, n) == chunks[n - 1]
    final = LocalBucket(bucket.root)
    held = {p.number: p for p in final.list_parts(KEY, upload_id)}
    parts = [held.get(n) or send(final, upload_id, n, chunks[n - 1]) for n in range(1, count + 2)]
    final.complete_upload(KEY, upload_id, parts)
    assert (bucket.root / KEY).read_bytes() == b"".join(chunks)


def test_a_part_sent_again_with_other_bytes_is_dropped_before_they_are_written(tmp_path: Path) -> None:
    """S3 lets a part number be uploaded again with other bytes. Here its place in ``data`` is rewritten,
    so the index first says it is gone (a ``D`` line, durable), then the new record follows: a crash during
    the rewrite leaves the part unlisted, never listed with half its old bytes and half its new ones. The
    same bytes sent again change nothing in the index."""
    bucket = LocalBucket(tmp_path / "bucket")
    upload_id = bucket.start_upload(KEY)
    first = send(bucket, upload_id, 1, blob(MIN_PART_SIZE, 60))
    assert send(bucket, upload_id, 1, blob(MIN_PART_SIZE, 60)) == first
    index = upload_dir(bucket, upload_id) / "parts"
    assert [line[:1] for line in index.read_bytes().splitlines()] == [b"S", b"P"]
    other = send(bucket, upload_id, 1, blob(MIN_PART_SIZE, 61))
    lines = index.read_bytes().splitlines()
    assert [line[:8] for line in lines] == [b"S 524288", b"P 00001 ", b"D 00001 ", b"P 00001 "]
    assert bucket.list_parts(KEY, upload_id) == [other] and other != first
    assert _stored(bucket, upload_id, 1) == blob(MIN_PART_SIZE, 61)


def _stored(bucket: LocalBucket, upload_id: str, number: int) -> bytes:
    udir = upload_dir(bucket, upload_id)
    record = partindex.parse((udir / "parts").read_bytes()).parts[number]
    if record.offset is None:
        return (udir / f"{number:05d}.part").read_bytes()
    with open(udir / "data", "rb") as f:
        f.seek(record.offset)
        return f.read(record.size)


# -- across the upgrade, end to end -------------------------------------------------------------------------
def test_a_dock_upgraded_mid_upload_resumes_the_upload_an_older_agent_began(tmp_path: Path) -> None:
    """The camera is unplugged mid-recording; the upload it left is put back in the layout the agent before
    the part index wrote (``stride``, ``NNNNN.placed``, ``NNNNN.checksum``), as an upgraded dock finds it. The
    next docking resumes that very upload (same upload id: the journaled parts are not sent again), completes
    it, and verify passes with the party's key."""
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    win = window()
    with SimProcess("usbip", "CAM-UP1", "--recordings", "1", "--training", "1", "--size", str(24 * MiB),
                    "--exercise", iso_window(win), "--fault", f"unplug-at={17 * MiB}", truth_dir=tmp_path) as sim:  # fmt: skip
        dock.enroll("CAM-UP1")
        dock.exercise("EX-UP", win, "CAM-UP1")
        rc, report = dock.ingest_json(sim.address)
        assert rc == 1, report
        journal = dock.journal()
        try:
            (row,) = journal.query("SELECT upload_id, object_key FROM recordings WHERE state='uploading'")
            journaled = [
                tuple(r) for r in journal.query("SELECT part_number, size, etag FROM parts ORDER BY part_number")
            ]
        finally:
            journal.close()
        upload_id, object_key = str(row[0]), str(row[1])
        assert len(journaled) >= 2
        udir = tmp_path / "bucket" / ".uploads" / upload_id
        index = partindex.parse((udir / "parts").read_bytes())
        assert index.stride is not None and all(r.offset is not None for r in index.parts.values())
        (udir / "stride").write_text(str(index.stride))  # back to the older agent's layout
        for n, record in index.parts.items():
            (udir / f"{n:05d}.placed").write_text(str(record.size))
            (udir / f"{n:05d}.checksum").write_text(record.checksum)
        (udir / "parts").unlink()
        # what the upgraded agent will list, on a copy (so that the agent itself converts the original):
        # every journaled part, with the size and ETag journaled, so none is sent again
        shutil.copytree(tmp_path / "bucket", tmp_path / "copy")
        listed = LocalBucket(tmp_path / "copy").list_parts(object_key, upload_id)
        assert [(p.number, p.size, p.etag) for p in listed] == journaled
        time.sleep(1.0)  # the camera re-appears
        rc, report = dock.ingest_json(sim.address)
        assert rc == 0, report
    journal = dock.journal()
    try:
        assert [str(r[0]) for r in journal.query("SELECT upload_id FROM recordings")] == [upload_id]
        assert [str(r[0]) for r in journal.query("SELECT state FROM recordings")] == ["verified"]
    finally:
        journal.close()
    assert list((tmp_path / "bucket" / ".uploads").iterdir()) == []
    verified = dock.cli("verify", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers),
                        "--identity", str(dock.identity_path))  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_part_whose_bytes_were_cut_is_never_completed_as_zeros_and_is_sent_again(tmp_path: Path) -> None:
    """``data`` cut after its parts were recorded (no crash does it: bytes are durable before their
    record; a damaged or tampered disk does): completing must not lengthen it with zeros and install an
    object missing parts under the records' composite checksum (before: it did, and ``_complete``'s size
    and checksum checks passed). The bucket that wrote the parts refuses to complete; a restarted one no
    longer lists the parts whose bytes are gone, so they are sent again and the object is exact."""
    up = sent(tmp_path, 2, 999, seed=80)
    bucket, chunks, upload_id, parts = up.bucket, up.chunks, up.upload_id, up.parts
    os.truncate(upload_dir(bucket, upload_id) / "data", MIN_PART_SIZE + 10)  # part 2 cut, part 3 gone
    with pytest.raises(ChecksumMismatchError, match=r"stored part 2 of .* is 5242870 bytes short"):
        bucket.complete_upload(KEY, upload_id, parts)
    assert not (bucket.root / KEY).exists()
    again = LocalBucket(bucket.root)
    assert again.list_parts(KEY, upload_id) == parts[:1]
    with pytest.raises(UploadError, match="never uploaded"):
        again.complete_upload(KEY, upload_id, parts)
    assert [send(again, upload_id, n, chunks[n - 1]) for n in (2, 3)] == parts[1:]
    again.complete_upload(KEY, upload_id, parts)
    assert (bucket.root / KEY).read_bytes() == b"".join(chunks)


def _sealed(body: str) -> bytes:
    """A record with a CRC that checks, whatever it says: what a forged index holds."""
    raw = body.encode("ascii") + b" "
    return raw + f"{crc32c.crc32c(raw):08x}\n".encode("ascii")


@pytest.mark.parametrize(
    "forged",
    [
        "S 9999999999999999",  # a stride beyond any part: parts 2.. would be written terabytes out
        "S 0",
        f"S {MIN_PART_SIZE}|S {2 * MIN_PART_SIZE}",  # the stride changed under placed parts
        f"S {MIN_PART_SIZE}|P 00000 5 - AAAAAA==",  # a part number S3 never takes
        f"S {MIN_PART_SIZE}|P 99999 5 - AAAAAA==",
        f"S {MIN_PART_SIZE}|P 00002 9999999999999999 - AAAAAA==",  # larger than any part
        f"S {MIN_PART_SIZE}|P 00002 5 0 AAAAAA==",  # placed over part 1's bytes
        f"S {MIN_PART_SIZE}|P 00002 {MIN_PART_SIZE + 1} {MIN_PART_SIZE} AAAAAA==",  # longer than its place
        "P 00001 5 0 AAAAAA==",  # placed with no stride
        "D 00000",
    ],
)
def test_a_forged_index_names_no_part_out_of_range_and_every_part_is_still_taken(tmp_path: Path, forged: str) -> None:
    """An index whose records check (CRCs recomputed) but say what no writer records ends at the first
    such record, like a damaged one: nothing out of range or overlapping is listed, and parts sent after
    it are stored and complete exactly (before: such records were listed as they were, and a forged stride
    made ``upload_part`` fail with EFBIG on ext4 or raise a bare ValueError on tmpfs after writing a part
    at 2 x 10^16 bytes)."""
    bucket = LocalBucket(tmp_path / "bucket")
    chunks = chunks_of(2, 999, seed=90)
    upload_id = bucket.start_upload(KEY)
    index = upload_dir(bucket, upload_id) / "parts"
    index.write_bytes(b"".join(_sealed(body) for body in forged.split("|")))
    again = LocalBucket(bucket.root)
    listed = again.list_parts(KEY, upload_id)
    assert all(1 <= p.number <= 10_000 and p.size <= MIN_PART_SIZE for p in listed), listed
    assert all(p.number != 2 for p in listed)
    parts = [send(again, upload_id, n, chunks[n - 1]) for n in (3, 1, 2)]  # the stride set by part 3
    parts.sort(key=lambda p: p.number)
    assert again.list_parts(KEY, upload_id) == parts
    assert os.stat(upload_dir(bucket, upload_id) / "data").st_size <= 3 * MIN_PART_SIZE
    again.complete_upload(KEY, upload_id, parts)
    assert (bucket.root / KEY).read_bytes() == b"".join(chunks)


@pytest.mark.parametrize("chunks", [chunks_of(2, 999, seed=110), chunks_of(0, 777, seed=111)], ids=["placed", "own"])
def test_a_lost_data_file_is_made_again_and_its_parts_sent_again(tmp_path: Path, chunks: list[bytes]) -> None:
    """``data`` removed under an upload whose parts were recorded (damage, a hand; no crash does it): a
    restarted bucket lists none of the parts it held, takes them again and completes the exact object
    (before: every part failed for good with 'No such file or directory', and an upload of one short part,
    which never used ``data``, could not complete)."""
    bucket = LocalBucket(tmp_path / "bucket")
    upload_id = bucket.start_upload(KEY)
    parts = [send(bucket, upload_id, n, c) for n, c in enumerate(chunks, 1)]
    (upload_dir(bucket, upload_id) / "data").unlink()
    again = LocalBucket(bucket.root)
    held = {p.number for p in again.list_parts(KEY, upload_id)}
    assert held == ({1} if len(chunks) == 1 else set())  # a short part 1 alone lives in a file of its own
    assert [p if p.number in held else send(again, upload_id, p.number, chunks[p.number - 1]) for p in parts] == parts
    again.complete_upload(KEY, upload_id, parts)
    assert (bucket.root / KEY).read_bytes() == b"".join(chunks)
