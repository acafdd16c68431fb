"""The one-pass pull: camera -> SHA-256 -> age encryption -> S3 multipart parts, in bounded memory.

Three stages overlap so that only the slowest sets the pace (DESIGN §6):

    reader thread      camera.read() chunks ------------------------> chunk queue (bounded)
    calling thread     SHA-256(plaintext) + age encrypt -> parts ---> part queue (bounded)
    part thread        SHA-256(ciphertext), per-part SHA-256, upload (a few parts in flight)

Resume: the age file key and header are journaled before the first part, so re-reading a
recording from byte 0 reproduces the very same ciphertext; parts the bucket already holds with the
same SHA-256 are not uploaded again (docs/crash-safety.md).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from bodycam.drivers.errors import BodycamError, IntegrityError
from bodycam.drivers.messages import RecordingInfo

from .agecrypt import Encryptor

LOG = logging.getLogger(__name__)
READ_SPAN = 4 * 1024 * 1024  # bytes per READ request; the camera answers in frames of up to 1 MiB
MAX_PARTS = 10_000  # S3's limit


class CancelledError(BodycamError):
    """The pull was asked to stop (SIGTERM, eject); it resumes on the next run."""


class UploadTarget(Protocol):
    """What the pull needs from a bucket: multipart parts of one object."""

    def upload_part(
        self, key: str, upload_id: str, part_number: int, data: bytes, *, sha256_b64: str | None = None
    ) -> Any: ...


class ChunkSource(Protocol):
    def iter_read(self, recording: RecordingInfo, start: int = 0, span: int = READ_SPAN) -> Any: ...


@dataclass(frozen=True, slots=True)
class PullResult:
    plaintext_sha256: str
    ciphertext_sha256: str
    ciphertext_size: int
    parts: list[Any]  # the bucket's Part records, in order


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
    bucket: UploadTarget,
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
    chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=4)
    parts_q: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize=1)
    stop = threading.Event()
    results: dict[int, Any] = {}
    ciphertext_hash = hashlib.sha256()
    part_digests: list[bytes] = []
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
        with ThreadPoolExecutor(max_workers=parts_in_flight, thread_name_prefix="part-upload") as pool:
            try:
                while True:
                    # wait for an upload slot *before* taking the next part: at most parts_in_flight
                    # parts are held here, whatever the pace of the producer (bounded memory)
                    while len(in_flight) >= parts_in_flight:
                        in_flight.pop(0).result()
                    item = parts_q.get()
                    if item is None:
                        break
                    number, data = item
                    ciphertext_hash.update(data)
                    digest = hashlib.sha256(data).digest()
                    part_digests.append(digest)
                    checksum = base64.b64encode(digest).decode()
                    known = existing.get(number)
                    if known is not None and known.size == len(data) and known.sha256_b64:
                        if known.sha256_b64 != checksum:
                            raise IntegrityError(
                                f"part {number} of {key} in the bucket differs from what this pass produced; "
                                "the camera's recording changed since the upload began"
                            )
                        results[number] = known
                        continue
                    in_flight.append(pool.submit(_send, number, data, checksum))
                    del data, item
                for fut in in_flight:
                    fut.result()
            except BaseException as err:
                part_error.append(err)
                stop.set()
                for fut in in_flight:
                    fut.cancel()
                while parts_q.get() is not None:  # drain so the producer never blocks forever
                    pass

    def _send(number: int, data: bytes, checksum: str) -> Any:
        part = bucket.upload_part(key, upload_id, number, data, sha256_b64=checksum)
        results[number] = part
        if on_part is not None:
            on_part(part)
        return part

    reader = threading.Thread(target=read_camera, name="camera-read", daemon=True)
    uploader = threading.Thread(target=upload_parts, name="part-hash", daemon=True)
    reader.start()
    uploader.start()
    plain_hash = hashlib.sha256()
    buffer = bytearray(encryptor.header)
    number = 0
    done = 0
    try:
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
            buffer += encryptor.update(item)
            done += len(item)
            if on_progress is not None:
                on_progress(done)
            while len(buffer) >= part_size:
                number += 1
                with memoryview(buffer) as view:
                    part = bytes(view[:part_size])  # one copy, not a slice and then a copy
                del buffer[:part_size]
                _put(parts_q, (number, part), part_error)
                del part
        if done != recording.size:
            raise IntegrityError(
                f"camera delivered {done} bytes of recording {recording.id}, it listed {recording.size}"
            )
        buffer += encryptor.finalize()
        if buffer or number == 0:
            number += 1
            _put(parts_q, (number, bytes(buffer)), part_error)
        buffer = bytearray()
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
