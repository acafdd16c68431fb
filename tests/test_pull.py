"""The one-pass pull into a real local bucket: parts cut in a ring of reused buffers, and its failures.

For the ring the camera is the plaintext in memory (the pull only needs ``iter_read``); for cancel, a
failing part upload and a part that differs on resume it is a virtual camera served over USB/IP on
loopback (tests/sims.py), read through the real driver. The bucket, the age encryption and the stock
``age -d`` that reads the result back are the real ones.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bodycam.agent.formats.agecrypt import Encryptor, generate_identity
from bodycam.agent.pipeline.pull import CancelledError, PartBuffers, PullResult, pull
from bodycam.agent.storage.bucket import LocalBucket, Part, PartBuffer, PartData, UploadError, UploadNotFoundError
from bodycam.agent.storage.wrapper import BucketWrapper
from bodycam.drivers.device.camera import Camera
from bodycam.drivers.errors import IntegrityError
from bodycam.drivers.protocol.messages import Category, RecordingInfo

from . import sims

MiB = 1024 * 1024
KEY = "dock-01/b1/recordings/CAM1/r1.age"


class MemoryCamera:
    """Serves one recording's bytes in 1 MiB frames, as the camera answers READ."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def iter_read(self, recording: RecordingInfo, start: int = 0, span: int = 0, *, lend: int = 0) -> Iterator[bytes]:
        for pos in range(start, len(self.data), MiB):
            yield self.data[pos : pos + MiB]


def _recording(data: bytes) -> RecordingInfo:
    return RecordingInfo(1, len(data), 0, 1, Category.TRAINING, hashlib.sha256(data).digest(), "r1.mp4")


def _pull(bucket: LocalBucket, data: bytes, upload_id: str, recipient: str, part_size: int) -> PullResult:
    """The pull of ``data`` from memory, within a deadline (a hang fails the test instead of blocking it)."""
    camera, rec, enc = MemoryCamera(data), _recording(data), Encryptor([recipient])
    return within_deadline(
        lambda: pull(camera, rec, enc, bucket, KEY, upload_id, part_size=part_size, parts_in_flight=2)
    )


@pytest.mark.parametrize("size", [0, 5 * MiB - 100, 17 * MiB + 12345])
def test_parts_from_reused_buffers_make_the_exact_age_file(tmp_path: Path, size: int) -> None:
    """Many parts through the ring of part buffers (chunks straddling part boundaries, buffers reused
    while earlier parts upload): the object is the age file of the plaintext, stock age reads it back,
    and the digests the manifest records are those of its bytes."""
    identity, recipient = generate_identity()
    data = random.Random(size).randbytes(size)
    bucket = LocalBucket(tmp_path / "bucket")
    upload_id = bucket.start_upload(KEY)
    result = _pull(bucket, data, upload_id, recipient, 5 * MiB)
    info = bucket.complete_upload(KEY, upload_id, result.parts)
    stored = (tmp_path / "bucket" / KEY).read_bytes()
    assert info.size == len(stored) == result.ciphertext_size
    assert [p.size for p in result.parts[:-1]] == [5 * MiB] * (len(result.parts) - 1)
    assert result.ciphertext_sha256 == hashlib.sha256(stored).hexdigest()
    assert result.plaintext_sha256 == hashlib.sha256(data).hexdigest()
    _assert_stock_age_opens(tmp_path, identity, stored, data)


class LendingCamera:
    """Lends its chunks as the wire camera does (``iter_read(..., lend=N)``): views of a ring of exactly
    N + 1 buffers, each refilled (first scribbled over) as soon as the contract allows."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.asked: list[int] = []

    def iter_read(
        self, recording: RecordingInfo, start: int = 0, span: int = 0, *, lend: int = 0
    ) -> Iterator[bytes | memoryview]:
        self.asked.append(lend)
        ring = [bytearray(MiB) for _ in range(lend + 1)]
        for turn, pos in enumerate(range(start, len(self.data), MiB)):
            buf = ring[turn % len(ring)]
            buf[:] = b"\xff" * MiB  # the oldest chunk's bytes are gone before the new ones arrive
            piece = self.data[pos : pos + MiB]
            buf[: len(piece)] = piece
            yield memoryview(buf)[: len(piece)].toreadonly()


@pytest.mark.parametrize("read_ahead", [1, 4])
def test_the_pull_holds_no_lent_chunk_longer_than_it_asked(tmp_path: Path, read_ahead: int) -> None:
    """The pull asks the camera to lend its chunks (no copy per frame) and keeps within what it asked:
    every chunk is hashed and sealed before the camera reuses its buffer."""
    identity, recipient = generate_identity()
    data = random.Random(7).randbytes(23 * MiB + 321)
    camera = LendingCamera(data)
    bucket = LocalBucket(tmp_path / "bucket")
    upload_id = bucket.start_upload(KEY)
    rec, enc = _recording(data), Encryptor([recipient])
    result = within_deadline(
        lambda: pull(camera, rec, enc, bucket, KEY, upload_id, part_size=5 * MiB, read_ahead=read_ahead)
    )
    assert camera.asked and all(lend >= 1 for lend in camera.asked)
    assert result.plaintext_sha256 == hashlib.sha256(data).hexdigest()
    bucket.complete_upload(KEY, upload_id, result.parts)
    stored = (tmp_path / "bucket" / KEY).read_bytes()
    assert result.ciphertext_sha256 == hashlib.sha256(stored).hexdigest()
    _assert_stock_age_opens(tmp_path, identity, stored, data)


def test_a_failed_last_upload_ends_the_pull_with_its_error(tmp_path: Path) -> None:
    """The upload fails after the end of the recording was queued (here: the upload was aborted under
    it): the pull raises that error. It used to wait forever for a second end marker."""
    _, recipient = generate_identity()
    bucket = LocalBucket(tmp_path / "bucket")
    upload_id = bucket.start_upload(KEY)
    bucket.abort_upload(KEY, upload_id)
    with pytest.raises(UploadNotFoundError):
        _pull(bucket, b"a short clip" * 1000, upload_id, recipient, 5 * MiB)


# -- a virtual camera through the real driver ------------------------------------------------------------
PULL_THREADS = ("camera-read", "part-hash", "part-upload")


@contextmanager
def docked(size: int) -> Iterator[tuple[Camera, RecordingInfo]]:
    """One recording of ``size`` bytes on a virtual camera served over USB/IP, opened and authenticated."""
    with sims.serve("usbip", sims.spec("CAM-PULL", recordings=1, training=1, size=size)) as served:
        cam = served.connect(timeout=10)
        cam.open()
        cam.authenticate(served.enrolled_key)
        try:
            yield cam, cam.recordings()[0]
        finally:
            cam.close()


def within_deadline(run: Callable[[], PullResult]) -> PullResult:
    """``run`` in a thread with a generous deadline (a hang fails the test), then every pull thread gone."""
    out: list[PullResult | BaseException] = []

    def target() -> None:
        try:
            out.append(run())
        except BaseException as err:
            out.append(err)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "the pull hung"
    deadline = time.monotonic() + 60
    while any(t.name.startswith(PULL_THREADS) for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [t.name for t in threading.enumerate() if t.name.startswith(PULL_THREADS)], "a pull thread was left"
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


def test_cancel_stops_the_pull_and_every_thread_it_started(tmp_path: Path) -> None:
    """SIGTERM or an eject sets ``cancel``: the pull stops within its poll, says how far it got, and
    leaves no reader or uploader behind (the upload stays open for the next run to resume)."""
    _, recipient = generate_identity()
    bucket = LocalBucket(tmp_path / "bucket")
    upload_id = bucket.start_upload(KEY)
    cancel = threading.Event()
    seen: list[int] = []

    def progress(done: int) -> None:
        seen.append(done)
        if done >= 2 * MiB:
            cancel.set()

    with docked(24 * MiB) as (cam, rec):
        enc = Encryptor([recipient])
        with pytest.raises(CancelledError, match=r"stopped at \d+ bytes; it resumes"):
            within_deadline(
                lambda: pull(
                    cam, rec, enc, bucket, KEY, upload_id, part_size=5 * MiB, on_progress=progress, cancel=cancel
                )
            )
    assert seen and max(seen) < rec.size
    assert [u.upload_id for u in bucket.open_uploads("dock-01/")] == [upload_id]


def test_a_failing_part_upload_ends_the_pull_with_its_error(tmp_path: Path) -> None:
    """A part the bucket refuses mid-recording (here the upload is aborted under it once part 1 is in):
    the pull raises the bucket's error instead of reading the rest of the camera, and ends its threads."""
    _, recipient = generate_identity()
    bucket = LocalBucket(tmp_path / "bucket")
    upload_id = bucket.start_upload(KEY)
    sent: list[int] = []

    def abort_after_the_first(part: Part) -> None:
        sent.append(part.number)
        bucket.abort_upload(KEY, upload_id)

    read: list[int] = []
    with docked(24 * MiB) as (cam, rec):
        enc = Encryptor([recipient])
        with pytest.raises(UploadError):
            within_deadline(
                lambda: pull(
                    cam,
                    rec,
                    enc,
                    bucket,
                    KEY,
                    upload_id,
                    part_size=5 * MiB,
                    parts_in_flight=1,
                    on_part=abort_after_the_first,
                    on_progress=read.append,
                )
            )
    assert sent == [1]
    assert max(read) < rec.size  # stopped early: the rest of the recording was not read for nothing


def test_a_resumed_part_that_differs_is_refused_and_an_equal_one_is_not_sent_again(tmp_path: Path) -> None:
    """Resume compares each part the bucket holds with what this pass produced: the same file key and
    header reproduce the ciphertext, so nothing is sent again; another encryption (the recording or the
    journaled key changed) differs at part 1, an IntegrityError naming the part, never a silent mix."""
    _, recipient = generate_identity()
    bucket = LocalBucket(tmp_path / "bucket")
    upload_id = bucket.start_upload(KEY)
    with docked(12 * MiB) as (cam, rec):
        file_key = os.urandom(16)  # journaled with the header before the first part, as the agent does
        first_enc = Encryptor([recipient], file_key=file_key)
        header = first_enc.header
        first = within_deadline(lambda: pull(cam, rec, first_enc, bucket, KEY, upload_id, part_size=5 * MiB))
        held = {p.number: p for p in bucket.list_parts(KEY, upload_id)}
        assert sorted(held) == [1, 2, 3]
        resent: list[int] = []
        again = within_deadline(
            lambda: pull(
                cam,
                rec,
                Encryptor.resume(header, file_key),
                bucket,
                KEY,
                upload_id,
                part_size=5 * MiB,
                existing_parts=held,
                on_part=lambda p: resent.append(p.number),
            )
        )
        assert resent == [] and again.ciphertext_sha256 == first.ciphertext_sha256
        with pytest.raises(IntegrityError, match=f"part 1 of {KEY} in the bucket differs"):
            within_deadline(
                lambda: pull(
                    cam, rec, Encryptor([recipient]), bucket, KEY, upload_id, part_size=5 * MiB, existing_parts=held
                )
            )
    info = bucket.complete_upload(KEY, upload_id, first.parts)  # the upload itself was left as it was
    assert info.size == first.ciphertext_size


class _BufferCount(BucketWrapper):
    """The real local bucket, noting which part buffers the pull hands it (a part is its buffer, or a view of it)."""

    def __init__(self, inner: LocalBucket) -> None:
        super().__init__(inner)
        self.buffers: set[int] = set()

    def upload_part(
        self, key: str, upload_id: str, part_number: int, data: PartData, *, checksum: str | None = None
    ) -> Part:
        buffer = data.obj if isinstance(data, memoryview) else data
        self.buffers.add(id(buffer))  # the ring keeps each buffer alive for the whole pull: ids are not reused
        return self.inner.upload_part(key, upload_id, part_number, data, checksum=checksum)


@pytest.mark.parametrize("buffers", [1, 2])
def test_a_bay_sharing_the_dock_pulls_through_a_ring_of_its_share(tmp_path: Path, buffers: int) -> None:
    """The daemon's shares for a bay among several (one part in flight; two buffers, one filling while one
    uploads, or one once the bays outnumber the cores): many parts still make the exact age file, cut
    from only that many part buffers."""
    identity, recipient = generate_identity()
    data = random.Random(7).randbytes(23 * MiB + 777)
    bucket = _BufferCount(LocalBucket(tmp_path / "bucket"))
    upload_id = bucket.start_upload(KEY)
    camera, rec, enc = MemoryCamera(data), _recording(data), Encryptor([recipient])
    result = pull(camera, rec, enc, bucket, KEY, upload_id, part_size=5 * MiB, parts_in_flight=1, ring_buffers=buffers)
    bucket.complete_upload(KEY, upload_id, result.parts)
    stored = (tmp_path / "bucket" / KEY).read_bytes()
    assert len(result.parts) == 5 and len(bucket.buffers) == buffers
    assert result.ciphertext_sha256 == hashlib.sha256(stored).hexdigest()
    _assert_stock_age_opens(tmp_path, identity, stored, data)


def test_a_sessions_recordings_reuse_its_part_buffers_within_the_bays_share(tmp_path: Path) -> None:
    """A docking session keeps its part buffers from one recording to the next (a fresh buffer page-faults
    in as it is filled: issue 14, the daemon's CPU): three recordings cut from the first one's buffers,
    and when the bay's share shrinks (2 buffers, then 1) only that many stay; every object is exact."""
    bucket = LocalBucket(tmp_path / "bucket")
    made: list[int] = []

    def allocate(size: int) -> PartBuffer:
        made.append(size)
        return bucket.part_buffer(size)

    buffers = PartBuffers(allocate)
    _identity, recipient = generate_identity()
    for number, share in enumerate([2, 2, 1], 1):
        data = random.Random(number).randbytes(12 * MiB + number)
        key = f"dock-01/b1/recordings/CAM1/r{number}.age"
        upload_id = bucket.start_upload(key)
        enc = Encryptor([recipient])
        result = pull(MemoryCamera(data), _recording(data), enc, bucket, key, upload_id, part_size=5 * MiB,
                      parts_in_flight=1, ring_buffers=share, buffers=buffers)  # fmt: skip
        bucket.complete_upload(key, upload_id, result.parts)
        assert result.ciphertext_sha256 == hashlib.sha256((bucket.root / key).read_bytes()).hexdigest()
        assert len(buffers) <= share
    assert made == [5 * MiB, 5 * MiB]  # the first recording's two buffers, and none since


def test_a_one_buffer_bay_hashes_and_uploads_its_parts_in_its_own_thread(tmp_path: Path) -> None:
    """A bay with a ring of one part buffer (the daemon's share once the bays outnumber the cores) cannot
    overlap a part's upload with anything: each part is hashed, uploaded and journaled (``on_part``) in the
    thread that cut it, with no part or upload thread started (before: a part thread and an upload pool
    thread a bay, two handoffs a part; issue 14). The object is exact; a resumed pass compares its parts
    without sending them, and a part that differs is refused in that same thread; the buffer stays the
    session's throughout."""
    identity, recipient = generate_identity()
    data = random.Random(11).randbytes(17 * MiB + 5)
    bucket = LocalBucket(tmp_path / "bucket")
    upload_id = bucket.start_upload(KEY)
    here = threading.current_thread().name
    seen: list[tuple[str, list[str]]] = []

    def on_part(part: Part) -> None:
        seen.append((threading.current_thread().name, [t.name for t in threading.enumerate()]))

    buffers = PartBuffers(bucket.part_buffer)
    camera, rec = MemoryCamera(data), _recording(data)
    file_key = os.urandom(16)
    enc = Encryptor([recipient], file_key=file_key)
    result = pull(camera, rec, enc, bucket, KEY, upload_id, part_size=5 * MiB, parts_in_flight=1, ring_buffers=1,
                  on_part=on_part, buffers=buffers)  # fmt: skip
    assert len(result.parts) == 4 and [name for name, _ in seen] == [here] * 4
    assert not [n for _, names in seen for n in names if n.startswith(("part-hash", "part-upload"))]
    assert len(buffers) == 1
    held = {p.number: p for p in bucket.list_parts(KEY, upload_id)}
    resent: list[int] = []
    again = pull(camera, rec, Encryptor.resume(enc.header, file_key), bucket, KEY, upload_id, part_size=5 * MiB,
                 parts_in_flight=1, ring_buffers=1, existing_parts=held, on_part=lambda p: resent.append(p.number),
                 buffers=buffers)  # fmt: skip
    assert resent == [] and again.ciphertext_sha256 == result.ciphertext_sha256
    with pytest.raises(IntegrityError, match=f"part 1 of {KEY} in the bucket differs"):
        pull(camera, rec, Encryptor([recipient]), bucket, KEY, upload_id, part_size=5 * MiB, parts_in_flight=1,
             ring_buffers=1, existing_parts=held, buffers=buffers)  # fmt: skip
    assert len(buffers) == 1  # the refused part's buffer came back too
    bucket.complete_upload(KEY, upload_id, result.parts)
    stored = (tmp_path / "bucket" / KEY).read_bytes()
    assert result.ciphertext_sha256 == hashlib.sha256(stored).hexdigest()
    _assert_stock_age_opens(tmp_path, identity, stored, data)


class _InFlight(BucketWrapper):
    """The real local bucket, noting how many part uploads run at once and which buffers they come from.

    Each upload waits (up to ``hold_s``, once) until ``want`` uploads run together, so the count does not
    depend on how fast this machine is: once ``want`` were seen together, or the one wait ran out, no upload
    waits again."""

    def __init__(self, inner: LocalBucket, want: int, hold_s: float = 30.0) -> None:
        super().__init__(inner)
        self.want, self.hold_s = want, hold_s
        self.active = self.most = 0
        self.buffers: set[int] = set()
        self._done_holding = False
        self._cond = threading.Condition()

    def upload_part(
        self, key: str, upload_id: str, part_number: int, data: PartData, *, checksum: str | None = None
    ) -> Part:
        with self._cond:
            self.buffers.add(id(data.obj if isinstance(data, memoryview) else data))
            self.active += 1
            self.most = max(self.most, self.active)
            self._cond.notify_all()
            if not self._done_holding:
                self._cond.wait_for(lambda: self.active >= self.want or self._done_holding, self.hold_s)
                self._done_holding = True  # reached or gave up: the rest of the pull runs unheld
                self._cond.notify_all()
        try:
            return self.inner.upload_part(key, upload_id, part_number, data, checksum=checksum)
        finally:
            with self._cond:
                self.active -= 1


def test_ingest_once_keeps_four_parts_in_flight_from_five_buffers(tmp_path: Path) -> None:
    """`ingest --once` (the Agent outside the daemon) keeps up to 4 parts uploading at once (issue 14's
    peers: SeaweedFS, on the same 2 cores, hashes each part within its request, so 2 requests left a
    core idle between parts) from the 5 part buffers 2 in flight held: its memory is unchanged. Before,
    2 in flight; the recording (a mass-storage camera, 9 parts of 5 MiB) still verifies."""
    from bodycam.agent.pipeline.ingest import Agent
    from bodycam.drivers.device.massstorage import MassStorageCamera
    from bodycam.drivers.virtual.massstorage_writer import write_volume
    from bodycam.drivers.virtual.scenario import make_recordings

    from .dock import make_dock, window

    win = window()
    dock = make_dock(tmp_path / "dock", f"file://{tmp_path / 'bucket'}")  # upload.part_size 5 MiB, 4 workers
    dock.enroll("CAM-P4")
    dock.exercise("EX-P4", win, "CAM-P4")
    recs = make_recordings(1, 1, 44 * MiB + 4321, win, serial="CAM-P4")
    write_volume(tmp_path / "mnt" / "CAM-P4", "CAM-P4", recs)
    bucket = _InFlight(LocalBucket(tmp_path / "bucket"), want=4)
    agent = Agent(dock.config, bucket=bucket)
    try:
        report = agent.session(MassStorageCamera(tmp_path / "mnt" / "CAM-P4"))
        agent.seal_and_publish()
    finally:
        agent.close()
    assert report.errors == [] and report.verified == 1, report
    assert bucket.most == 4, f"at most {bucket.most} parts uploaded at once"
    assert len(bucket.buffers) <= 5, f"{len(bucket.buffers)} part buffers"


def _assert_stock_age_opens(tmp_path: Path, identity: str, stored: bytes, data: bytes) -> None:
    """Stock ``age -d`` with the party's identity gives back exactly the plaintext pulled."""
    age = shutil.which("age")
    if age is not None:
        keyfile = tmp_path / "party.key"
        keyfile.write_text(identity + "\n")
        plain = subprocess.run([age, "-d", "-i", str(keyfile)], input=stored, capture_output=True, check=True).stdout
        assert plain == data
