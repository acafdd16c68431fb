"""The one-pass pull: camera -> SHA-256 -> age encryption -> S3 multipart parts, in bounded memory.

Three stages overlap so that only the slowest sets the pace (docs/performance.md):

    reader thread      camera.read() chunks ------------------------> chunk queue (bounded)
    calling thread     SHA-256(plaintext) + age encrypt -> parts ---> part queue (bounded)
    part thread        SHA-256(ciphertext), per-part CRC-32C, upload (a few parts in flight)

The ciphertext is SHA-256'd once, for the manifest (what ``sha256sum`` of the object gives); each part
carries a CRC-32C the bucket checks (hardware, about a tenth of a SHA-256 pass: docs/decisions.md).

Resume: the age file key and header are journaled before the first part, so re-reading a
recording from byte 0 reproduces the very same ciphertext; parts the bucket already holds with the
same checksum are not uploaded again (docs/crash-safety.md).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from bodycam.agent.formats.agecrypt import Encryptor
from bodycam.agent.storage.bucket import (
    PART_CHECKSUM,
    Bucket,
    Part,
    PartBuffer,
    PartData,
    checksum_algorithm,
    part_checksum,
)
from bodycam.drivers.errors import BodycamError, IntegrityError
from bodycam.drivers.protocol.messages import RecordingInfo

LOG = logging.getLogger(__name__)
READ_SPAN = 4 * 1024 * 1024  # bytes per READ request; the camera answers in frames of up to 1 MiB
MAX_PARTS = 10_000  # S3's limit


class CancelledError(BodycamError):
    """The pull was asked to stop (SIGTERM, eject); it resumes on the next run."""


class ChunkSource(Protocol):
    def iter_read(
        self, recording: RecordingInfo, start: int = 0, span: int = READ_SPAN, *, lend: int = 0
    ) -> Iterator[bytes | memoryview]:
        """The recording's chunks; with ``lend=N`` a chunk may be a view of the camera's reused receive
        buffers, intact only while the next N are yielded (drivers/device/camera.py, ``Camera.iter_read``)."""
        ...


@dataclass(frozen=True, slots=True)
class PullResult:
    """What one pull proved: both SHA-256s, the ciphertext's size and the parts the bucket holds."""

    plaintext_sha256: str
    ciphertext_sha256: str
    ciphertext_size: int
    parts: list[Part]  # the bucket's Part records, in order


class PartBuffers:
    """Part buffers a docking session keeps from one recording's pull to the next (Agent._session).

    A fresh part buffer costs a page fault every 4 KiB as it is first filled (and a bytearray a memset
    on top): a ring's worth per recording was 0.1-0.2 CPU s for every 128 MiB recording of the bays bench
    (issue 14, the daemon's CPU). A pull takes its ring's buffers here and gives back those the uploader
    has finished with; each pull first trims what is kept to its own ring's count, so a bay whose share of
    the dock's buffers shrank since its last recording never holds more than its new share.
    """

    def __init__(self, allocate: Callable[[int], PartBuffer]) -> None:
        self._allocate = allocate
        self._kept: list[PartBuffer] = []
        self._lock = threading.Lock()

    def trim(self, count: int) -> None:
        with self._lock:
            del self._kept[max(0, count) :]

    def take(self, size: int) -> PartBuffer:
        """A kept buffer of ``size`` bytes, else a new one (kept ones of another size are dropped)."""
        with self._lock:
            while self._kept:
                buf = self._kept.pop()
                if len(buf) == size:
                    return buf
        return self._allocate(size)

    def give(self, buffers: list[PartBuffer]) -> None:
        with self._lock:
            self._kept.extend(buffers)

    def __len__(self) -> int:
        return len(self._kept)


class _PartRing:
    """Cuts the ciphertext into parts inside a small ring of preallocated part buffers.

    The encryptor seals each age chunk straight into the current buffer (``reserve``); a full buffer
    goes to the part queue and comes back through :meth:`release` once uploaded. With a fixed set of
    buffers no part-sized allocation is made per part (each fresh multi-MiB buffer was a new mmap,
    page-faulted in and unmapped again: a third of the CLI's CPU, issue 14).
    """

    def __init__(
        self,
        part_size: int,
        buffers: int,
        emit: Callable[[int, PartData, PartBuffer], None],
        errors: list[BaseException],
        allocate: Callable[[int], PartBuffer] = bytearray,
    ) -> None:
        self.part_size = part_size
        self._errors = errors
        self._allocate = allocate
        self._free: queue.Queue[PartBuffer] = queue.Queue()
        self._spare = buffers  # allocated on first use: a small recording never needs them all
        self._emit = emit
        self._buf: PartBuffer | None = None
        self._fill = 0
        self.number = 0

    def _current(self) -> PartBuffer:
        if self._buf is not None and self._fill == self.part_size:
            self.flush()
        if self._buf is None:
            if self._spare > 0 and self._free.empty():
                self._spare -= 1
                self._buf = self._allocate(self.part_size)
            else:
                self._buf = self._take()
            self._fill = 0
        return self._buf

    def _take(self) -> PartBuffer:
        """A buffer the uploader has finished with; gives up once the uploader has reported an error
        (parts it cancelled never come back)."""
        while True:
            if self._errors:
                raise self._errors[0]
            try:
                return self._free.get(timeout=0.2)
            except queue.Empty:
                continue

    def reserve(self, size: int) -> memoryview | None:
        buf = self._current()
        if self._fill + size > self.part_size:
            return None
        view = memoryview(buf)[self._fill : self._fill + size]
        self._fill += size
        return view

    def reserve_run(self, unit: int, count: int) -> memoryview | None:
        buf = self._current()
        fits = min(count, (self.part_size - self._fill) // unit)
        if fits <= 0:
            return None
        start = self._fill
        self._fill += fits * unit
        return memoryview(buf)[start : self._fill]

    def write(self, data: PartData) -> None:
        with memoryview(data) as view:
            pos = 0
            while pos < len(view):
                buf = self._current()
                n = min(len(view) - pos, self.part_size - self._fill)
                buf[self._fill : self._fill + n] = view[pos : pos + n]
                self._fill += n
                pos += n

    def flush(self, *, final: bool = False) -> None:
        """Hand the current buffer on as the next part (the last one may be short; a final empty
        object still gets its one part)."""
        if self._buf is None:
            if not (final and self.number == 0):
                return
            self._buf, self._fill = bytearray(0), 0
        buf, fill = self._buf, self._fill
        self._buf, self._fill = None, 0
        self.number += 1
        # a full bytearray goes as it is (botocore sends it without a copy); anything else as a view
        data: PartData = buf if isinstance(buf, bytearray) and fill == len(buf) else memoryview(buf)[:fill]
        self._emit(self.number, data, buf)

    def release(self, buf: PartBuffer) -> None:
        if len(buf) == self.part_size:
            self._free.put(buf)

    def finished_buffers(self) -> list[PartBuffer]:
        """The buffers the uploader has given back (and one never handed on): free for another pull."""
        done = [] if self._buf is None else [self._buf]
        self._buf = None
        while True:
            try:
                done.append(self._free.get_nowait())
            except queue.Empty:
                return done


def part_size_for(ciphertext_size: int, minimum: int) -> int:
    """The configured part size, grown (in MiB steps) so a huge recording fits in S3's 10,000 parts."""
    size = minimum
    while ciphertext_size > size * MAX_PARTS:
        size += 1024 * 1024
    return size


def pull(
    camera: ChunkSource,
    recording: RecordingInfo,
    encryptor: Encryptor,
    bucket: Bucket,
    key: str,
    upload_id: str,
    *,
    part_size: int,
    existing_parts: dict[int, Part] | None = None,
    parts_in_flight: int = 2,
    ring_buffers: int | None = None,
    read_ahead: int = 4,
    on_part: Callable[[Part], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    cancel: threading.Event | None = None,
    buffers: PartBuffers | None = None,
) -> PullResult:
    """Stream one recording into the multipart upload ``upload_id`` of ``key``; its part buffers come from
    ``buffers`` (and go back there) when given, else from the bucket.

    Raises CancelledError, IntegrityError (a part in the bucket differs from what this pass
    produced), and whatever the camera or bucket raise (TransportError, UploadError...).
    """
    stop = threading.Event()
    reader = _Reader(camera, recording, stop, read_ahead)
    uploader = _Uploader(
        bucket, key, upload_id, existing_parts or {}, parts_in_flight, part_size, on_part, stop, ring_buffers, buffers
    )
    reader.start()
    uploader.start()
    try:
        plaintext_sha256 = _encrypt(reader, uploader, encryptor, recording, key, on_progress, cancel)
        uploader.finish()
    finally:
        stop.set()
        uploader.close()
        reader.join()
        if buffers is not None:
            buffers.give(uploader.ring.finished_buffers())
    return uploader.result(plaintext_sha256)


def _encrypt(
    reader: _Reader,
    uploader: _Uploader,
    encryptor: Encryptor,
    recording: RecordingInfo,
    key: str,
    on_progress: Callable[[int], None] | None,
    cancel: threading.Event | None,
) -> str:
    """The calling thread's stage: hash the plaintext and seal it into the uploader's part buffers, until
    the camera's last byte; returns the plaintext SHA-256. Stops at ``cancel`` or the first error of
    either other stage."""
    ring = uploader.ring
    plain_hash = hashlib.sha256()
    done = 0
    ring.write(encryptor.header)
    while True:
        if cancel is not None and cancel.is_set():
            raise CancelledError(f"pull of {key} stopped at {done} bytes; it resumes on the next run")
        uploader.raise_error()
        item = reader.next(timeout=0.5)
        if isinstance(item, _Waiting):
            continue
        if item is None:
            break
        if isinstance(item, BaseException):
            raise item
        plain_hash.update(item)
        encryptor.update_into(item, ring)
        done += len(item)
        if on_progress is not None:
            on_progress(done)
    if done != recording.size:
        raise IntegrityError(f"camera delivered {done} bytes of recording {recording.id}, it listed {recording.size}")
    encryptor.finalize_into(ring)
    ring.flush(final=True)
    return plain_hash.hexdigest()


class _Waiting:
    """No chunk yet: the reader is still waiting for the camera."""


_WAITING = _Waiting()
Chunk = bytes | memoryview


class _Reader:
    """The reader stage: the camera's READ answers, in a thread of their own, into a small queue (4
    frames), so the camera is read while the calling thread encrypts. ``None`` marks the end; an error
    of the camera is handed on in the queue.

    The chunks are *lent* by the camera (``iter_read(..., lend=depth + 1)``): views of its receive
    buffers, not copies, each intact only while the camera yields its next ``depth + 1`` chunks. That is
    what this stage holds at most: ``depth`` in the queue and the one the calling thread is hashing and
    sealing (``Encryptor.update_into`` copies any tail it keeps). A chunk must not be kept past that, so
    nothing downstream may hold on to one (issue 14: no 1 MiB allocation and copy per frame).
    """

    def __init__(self, camera: ChunkSource, recording: RecordingInfo, stop: threading.Event, depth: int = 4) -> None:
        self._camera, self._recording, self._stop = camera, recording, stop
        self._chunks: queue.Queue[Chunk | BaseException | None] = queue.Queue(maxsize=max(1, depth))
        self._thread = threading.Thread(target=self._run, name="camera-read", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def next(self, timeout: float) -> Chunk | BaseException | _Waiting | None:
        """The next chunk, None at the end, an error, or ``_WAITING`` after ``timeout`` seconds."""
        try:
            return self._chunks.get(timeout=timeout)
        except queue.Empty:
            return _WAITING

    def join(self) -> None:
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            lend = self._chunks.maxsize + 1  # the queue and the chunk being encrypted
            for data in self._camera.iter_read(self._recording, 0, READ_SPAN, lend=lend):
                if not self._offer(data):
                    return
            self._offer(None)
        except BaseException as err:
            self._offer(err)

    def _offer(self, item: Chunk | BaseException | None) -> bool:
        """Queue ``item`` unless the pull stopped meanwhile (False). The end marker and errors wait the
        same way: a pull that failed after the camera's last chunk once left this thread blocked on a
        full queue for good (tests/test_pull.py, the differing resumed part)."""
        while not self._stop.is_set():
            try:
                self._chunks.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False


class _Uploader:
    """The uploader stage: takes each full part from the ring (a queue of one), hashes the ciphertext and
    the part, and uploads it with at most ``parts_in_flight`` in flight; a part the bucket already holds
    (resume) is compared instead of sent. The first error stops the pull.

    With a ring of one buffer (the daemon's share once the bays outnumber the cores) nothing can overlap:
    the encrypting thread waits for that buffer to come back before it seals another byte. The part is
    then hashed and uploaded *inline*, in the thread that cut it, with no part thread and no upload
    thread: the same work in the same order, without two thread handoffs a part and two threads a bay
    taking turns on the worker's interpreter (issue 14: eight bays on two cores).
    """

    def __init__(
        self,
        bucket: Bucket,
        key: str,
        upload_id: str,
        existing: dict[int, Part],
        parts_in_flight: int,
        part_size: int,
        on_part: Callable[[Part], None] | None,
        stop: threading.Event,
        ring_buffers: int | None = None,
        buffers: PartBuffers | None = None,
    ) -> None:
        self._bucket, self._key, self._upload_id, self._existing = bucket, key, upload_id, existing
        self._in_flight, self._on_part, self._stop = parts_in_flight, on_part, stop
        self._algorithm = _upload_algorithm(existing)
        self._parts: queue.Queue[tuple[int, PartData, PartBuffer] | None] = queue.Queue(maxsize=1)
        self._errors: list[BaseException] = []
        self._results: dict[int, Part] = {}
        self._ciphertext = hashlib.sha256()
        # one buffer being filled, one queued, parts_in_flight uploading, one being hashed; the daemon passes
        # fewer (ring_buffers; 1: a part uploads before the next is cut) to share a dock's budget among its bays
        count = max(1, ring_buffers or parts_in_flight + 3)
        self._inline = count == 1
        if buffers is not None:
            buffers.trim(count)
        allocate = buffers.take if buffers is not None else bucket.part_buffer
        self.ring = _PartRing(part_size, count, self._emit, self._errors, allocate)
        self._thread = threading.Thread(target=self._run, name="part-hash", daemon=True)

    def start(self) -> None:
        if not self._inline:
            self._thread.start()

    def raise_error(self) -> None:
        if self._errors:
            raise self._errors[0]

    def finish(self) -> None:
        """After the last part: wait for every upload, raising the first error."""
        if self._inline:  # every part was uploaded as it was cut
            self.raise_error()
            return
        _put(self._parts, None, self._errors)
        self._thread.join()
        self.raise_error()

    def close(self) -> None:
        """Unblock and end the thread whatever happened (it drains what is left)."""
        if self._thread.is_alive():
            _put(self._parts, None, [], force=True)
            self._thread.join(timeout=60)

    def result(self, plaintext_sha256: str) -> PullResult:
        parts = [self._results[n] for n in sorted(self._results)]
        return PullResult(plaintext_sha256, self._ciphertext.hexdigest(), sum(p.size for p in parts), parts)

    def _emit(self, number: int, view: PartData, buf: PartBuffer) -> None:
        if self._inline:
            self._part_here(number, view, buf)
            return
        _put(self._parts, (number, view, buf), self._errors)

    def _part_here(self, number: int, data: PartData, buf: PartBuffer) -> None:
        """A part of a one-buffer ring, in the thread that cut it: hashed, then compared or uploaded; its
        buffer goes back to the ring whatever happens (the next part, or the session's next pull, takes it)."""
        sending = False
        try:
            self._ciphertext.update(data)
            checksum = part_checksum(data, self._algorithm)
            if self._known(number, len(data), checksum):
                self.ring.release(buf)
            else:
                sending = True
                self._send(number, data, buf, checksum)  # gives the buffer back itself
        except BaseException as err:
            if not sending:
                self.ring.release(buf)
            self._errors.append(err)
            self._stop.set()
            raise

    def _run(self) -> None:
        in_flight: list[Future[Part]] = []
        ended = False  # the end marker was taken: an error after it must not wait for another
        with ThreadPoolExecutor(max_workers=self._in_flight, thread_name_prefix="part-upload") as pool:
            try:
                while True:
                    # wait for an upload slot *before* taking the next part: at most parts_in_flight
                    # parts are held here, whatever the pace of the producer (bounded memory)
                    while len(in_flight) >= self._in_flight:
                        in_flight.pop(0).result()
                    item = self._parts.get()
                    if item is None:
                        ended = True
                        break
                    number, data, buf = item
                    self._ciphertext.update(data)
                    checksum = part_checksum(data, self._algorithm)
                    if not self._known(number, len(data), checksum):
                        in_flight.append(pool.submit(self._send, number, data, buf, checksum))
                    else:
                        self.ring.release(buf)
                    del data, item, buf
                for fut in in_flight:
                    fut.result()
            except BaseException as err:
                self._errors.append(err)
                self._stop.set()
                for fut in in_flight:
                    fut.cancel()
                while not ended:  # drain so the producer never blocks forever
                    left = self._parts.get()
                    if left is None:
                        break
                    self.ring.release(left[2])

    def _known(self, number: int, size: int, checksum: str) -> bool:
        """True when the bucket already holds this part (a resumed upload); IntegrityError when it holds
        other bytes under its number."""
        known = self._existing.get(number)
        if known is None or known.size != size or not known.checksum:
            return False
        if known.checksum != checksum:
            raise IntegrityError(
                f"part {number} of {self._key} in the bucket differs from what this pass produced; "
                "the camera's recording changed since the upload began"
            )
        self._results[number] = known
        return True

    def _send(self, number: int, data: PartData, buf: PartBuffer, checksum: str) -> Part:
        try:
            part = self._bucket.upload_part(self._key, self._upload_id, number, data, checksum=checksum)
        finally:
            del data
            self.ring.release(buf)  # the upload (retries included) is over: the buffer takes the next part
        self._results[number] = part
        if self._on_part is not None:
            self._on_part(part)
        return part


def _upload_algorithm(existing: dict[int, Part]) -> str:
    """The part checksum of an upload being resumed: SHA-256 when an older agent sent its parts so (one
    multipart upload cannot mix algorithms), else CRC-32C."""
    for part in existing.values():
        if part.checksum and checksum_algorithm(part.checksum) != PART_CHECKSUM:
            return str(checksum_algorithm(part.checksum))
    return PART_CHECKSUM


def _put(q: queue.Queue[Any], item: Any, errors: list[BaseException], *, force: bool = False) -> None:
    """Put without deadlocking when the consumer died: give up once it has reported an error."""
    while True:
        if errors and not force:
            raise errors[0]
        try:
            q.put(item, timeout=0.2)
            return
        except queue.Full:
            if force:
                try:
                    q.get_nowait()
                except queue.Empty:
                    pass
