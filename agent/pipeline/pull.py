"""The one-pass pull: camera -> SHA-256 -> age encryption -> S3 multipart parts, in bounded memory.

Three stages overlap so that only the slowest sets the pace (README, Performance):

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
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from bodycam.agent.formats.agecrypt import Encryptor
from bodycam.agent.storage.bucket import PART_CHECKSUM, Bucket, PartData, checksum_algorithm, part_checksum
from bodycam.drivers.errors import BodycamError, IntegrityError
from bodycam.drivers.protocol.messages import RecordingInfo

LOG = logging.getLogger(__name__)
READ_SPAN = 4 * 1024 * 1024  # bytes per READ request; the camera answers in frames of up to 1 MiB
MAX_PARTS = 10_000  # S3's limit


class CancelledError(BodycamError):
    """The pull was asked to stop (SIGTERM, eject); it resumes on the next run."""


class ChunkSource(Protocol):
    def iter_read(self, recording: RecordingInfo, start: int = 0, span: int = READ_SPAN) -> Any: ...


@dataclass(frozen=True, slots=True)
class PullResult:
    plaintext_sha256: str
    ciphertext_sha256: str
    ciphertext_size: int
    parts: list[Any]  # the bucket's Part records, in order


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
        emit: Callable[[int, bytearray | memoryview, bytearray], None],
        errors: list[BaseException],
    ) -> None:
        self.part_size = part_size
        self._errors = errors
        self._free: queue.Queue[bytearray] = queue.Queue()
        self._spare = buffers  # allocated on first use: a small recording never needs them all
        self._emit = emit
        self._buf: bytearray | None = None
        self._fill = 0
        self.number = 0

    def _current(self) -> bytearray:
        if self._buf is not None and self._fill == self.part_size:
            self.flush()
        if self._buf is None:
            if self._spare > 0 and self._free.empty():
                self._spare -= 1
                self._buf = bytearray(self.part_size)
            else:
                self._buf = self._take()
            self._fill = 0
        return self._buf

    def _take(self) -> bytearray:
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
        # a full buffer goes as it is (botocore sends a bytearray without a copy); a short last part as a view
        self._emit(self.number, buf if fill == len(buf) else memoryview(buf)[:fill], buf)

    def release(self, buf: bytearray) -> None:
        if len(buf) == self.part_size:
            self._free.put(buf)


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
    existing_parts: dict[int, Any] | None = None,
    parts_in_flight: int = 2,
    on_part: Callable[[Any], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    cancel: threading.Event | None = None,
) -> PullResult:
    """Stream one recording into the multipart upload ``upload_id`` of ``key``.

    Raises CancelledError, IntegrityError (a part in the bucket differs from what this pass
    produced), and whatever the camera or bucket raise (TransportError, UploadError...).
    """
    existing = existing_parts or {}
    algorithm = _upload_algorithm(existing)
    chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=4)
    parts_q: queue.Queue[tuple[int, bytearray | memoryview, bytearray] | None] = queue.Queue(maxsize=1)
    stop = threading.Event()
    results: dict[int, Any] = {}
    ciphertext_hash = hashlib.sha256()
    part_error: list[BaseException] = []

    def read_camera() -> None:
        try:
            for data in camera.iter_read(recording, 0, READ_SPAN):
                while not stop.is_set():
                    try:
                        chunks.put(data, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            chunks.put(None)
        except BaseException as err:
            chunks.put(err)

    def upload_parts() -> None:
        in_flight: list[Future[Any]] = []
        ended = False  # the end marker was taken: an error after it must not wait for another
        with ThreadPoolExecutor(max_workers=parts_in_flight, thread_name_prefix="part-upload") as pool:
            try:
                while True:
                    # wait for an upload slot *before* taking the next part: at most parts_in_flight
                    # parts are held here, whatever the pace of the producer (bounded memory)
                    while len(in_flight) >= parts_in_flight:
                        in_flight.pop(0).result()
                    item = parts_q.get()
                    if item is None:
                        ended = True
                        break
                    number, data, buf = item
                    ciphertext_hash.update(data)
                    checksum = part_checksum(data, algorithm)
                    known = existing.get(number)
                    if known is not None and known.size == len(data) and known.checksum:
                        if known.checksum != checksum:
                            raise IntegrityError(
                                f"part {number} of {key} in the bucket differs from what this pass produced; "
                                "the camera's recording changed since the upload began"
                            )
                        results[number] = known
                        ring.release(buf)
                        continue
                    in_flight.append(pool.submit(_send, number, data, buf, checksum))
                    del data, item, buf
                for fut in in_flight:
                    fut.result()
            except BaseException as err:
                part_error.append(err)
                stop.set()
                for fut in in_flight:
                    fut.cancel()
                while not ended:  # drain so the producer never blocks forever
                    left = parts_q.get()
                    if left is None:
                        break
                    ring.release(left[2])

    def _send(number: int, data: bytearray | memoryview, buf: bytearray, checksum: str) -> Any:
        try:
            part = bucket.upload_part(key, upload_id, number, data, checksum=checksum)
        finally:
            del data
            ring.release(buf)  # the upload (retries included) is over: the buffer takes the next part
        results[number] = part
        if on_part is not None:
            on_part(part)
        return part

    def emit(number: int, view: bytearray | memoryview, buf: bytearray) -> None:
        _put(parts_q, (number, view, buf), part_error)

    # one buffer being filled, one queued, parts_in_flight uploading, one being hashed
    ring = _PartRing(part_size, parts_in_flight + 3, emit, part_error)
    reader = threading.Thread(target=read_camera, name="camera-read", daemon=True)
    uploader = threading.Thread(target=upload_parts, name="part-hash", daemon=True)
    reader.start()
    uploader.start()
    plain_hash = hashlib.sha256()
    done = 0
    try:
        ring.write(encryptor.header)
        while True:
            if cancel is not None and cancel.is_set():
                raise CancelledError(f"pull of {key} stopped at {done} bytes; it resumes on the next run")
            if part_error:
                raise part_error[0]
            try:
                item = chunks.get(timeout=0.5)
            except queue.Empty:
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
            raise IntegrityError(
                f"camera delivered {done} bytes of recording {recording.id}, it listed {recording.size}"
            )
        encryptor.finalize_into(ring)
        ring.flush(final=True)
        _put(parts_q, None, part_error)
        uploader.join()
        if part_error:
            raise part_error[0]
    finally:
        stop.set()
        if uploader.is_alive():
            _put(parts_q, None, [], force=True)
            uploader.join(timeout=60)
        reader.join(timeout=10)
    total = sum(p.size for p in results.values())
    return PullResult(
        plain_hash.hexdigest(),
        ciphertext_hash.hexdigest(),
        total,
        [results[n] for n in sorted(results)],
    )


def _upload_algorithm(existing: dict[int, Any]) -> str:
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
