"""The evidence bucket: one typed API over S3 (boto3, any S3-compatible endpoint) and a local directory.

Both implementations share one layout (docs/formats.md) and one behaviour at their edges, so the pipeline and
``verify`` never ask which one they hold:

* keys are relative to the bucket URL's prefix and checked by :func:`check_key` (no ``..``, absolute
  paths, NUL, backslash or control characters) *before* any I/O, on S3 too;
* every part carries a CRC-32C and every single-request object a SHA-256 the server checks
  (``ChecksumCRC32C``/``ChecksumSHA256``; a local bucket checks them itself), and a mismatch is
  :class:`ChecksumMismatchError`. Parts are CRC-32C, not SHA-256, so the ciphertext is SHA-256'd once, for
  the manifest (docs/decisions.md, issue 14 item 2); parts an older agent journaled keep their SHA-256;
* writes are create-only by default (``IfNoneMatch="*"`` on S3, ``link(2)`` locally): an existing key is
  :class:`ObjectExistsError`, except that re-sending the very same bytes (a retry after a lost response)
  succeeds, which is what exactly-once needs;
* whatever S3 would refuse (unknown upload id, parts out of order, a non-final part under 5 MiB) is an
  :class:`~bodycam.drivers.errors.UploadError` from both.

SeaweedFS 4.48 (the test server) honours ``IfNoneMatch="*"`` on PutObject and CompleteMultipartUpload
(412), checks ``ChecksumSHA256`` and ``ChecksumCRC32C`` on PutObject, UploadPart and the part list of
CompleteMultipartUpload (``BadDigest``), returns composite multipart checksums
(``base64(crc32c(part CRCs))-N``, or with SHA-256 for an upload started so), and with
Object Lock (a bucket created with ``ObjectLockEnabledForBucket``, versioning on) enforces COMPLIANCE
retention: deleting a version or shortening retention is AccessDenied. Its quirks, handled here:
ListParts omits the part checksums (AWS reports them), yet CompleteMultipartUpload requires them, so a
resumed upload supplies them from its own bytes or journal (:func:`part_checksum`) and the server checks
them; ListMultipartUploads sends no NextKeyMarker; listings come in directory-tree order (``a/b``
before ``a-c``), not byte order, so callers must not rely on order across "directories".
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import hashlib
import io
import logging
import mmap
import os
import random
import re
import secrets
import stat
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeAlias, TypeVar, cast
from urllib.parse import unquote, urlsplit

from bodycam.agent.formats.times import iso_utc
from bodycam.drivers.crc import crc32c
from bodycam.drivers.errors import BodycamError, ConfigError, IntegrityError, StorageError, UploadError
from bodycam.drivers.files import make_dirs

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer
    from botocore.exceptions import ClientError
    from botocore.loaders import Loader
    from mypy_boto3_s3 import S3Client

    from bodycam.agent.storage import partindex  # a local bucket's: imported where used (issue 14, start-up)
    from bodycam.agent.storage.s3get import BadContentLength, SignedGet
    from bodycam.agent.storage.s3http import Answer, Request, S3Http
    from bodycam.agent.storage.s3put import SignedPut
    from bodycam.agent.storage.s3xml import ObjectVersion, Page

LOG = logging.getLogger(__name__)
_T = TypeVar("_T")

MIN_PART_SIZE: Final = 5 * 1024 * 1024  # S3: every part but the last
MAX_PARTS: Final = 10_000
MAX_KEY_BYTES: Final = 1024
MAX_OBJECT: Final = 5 << 40  #: S3's largest object, 5 TiB
MAX_VERSIONS: Final = 64  #: versions of one key erased at most (create-only writes leave one)
#: empty pages in a row a listing may give before it counts as not moving on (S3 may give a few)
MAX_EMPTY_PAGES: Final = 16
#: objects one listing may give: 1,000 times the 100,000 recordings a force's verify is sized for (issue 14);
#: with the page size it bounds the pages of a listing, which a hostile endpoint could otherwise make endless
MAX_LISTED_OBJECTS: Final = 100_000_000
#: the most recent continuation tokens (or markers) a listing remembers, to tell one that goes round in a
#: small circle; a longer circle is ended by the page bound, and memory stays bounded either way
TOKEN_WINDOW: Final = 64
#: multipart uploads one listing of a dock's open uploads may give (each is kept until the listing ends)
MAX_OPEN_UPLOADS: Final = 100_000
CHUNK: Final = 1024 * 1024
UPLOADS_DIR: Final = ".uploads"  # hidden staging area of a LocalBucket; a reserved first key component
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_XATTR_SHA256: Final = "user.bodycam.sha256"  # whole-object SHA-256, hex
_XATTR_CHECKSUM: Final = "user.bodycam.checksum"  # S3-style checksum: SHA-256, or composite CRC-32C "...-N"
#: the checksum of every part of a multipart upload started now (docs/decisions.md, issue 14 item 2)
PART_CHECKSUM: Final = "CRC32C"
#: a checksum's algorithm, told by the length of its digest: base64 of 4 bytes is a CRC-32C, of 32 a SHA-256
_ALGORITHM_BY_LENGTH: Final = {4: "CRC32C", 32: "SHA256"}
#: a local upload's part bytes and its part index (agent/storage/partindex.py), in ``.uploads/<upload_id>/``
_UPLOAD_DATA: Final = "data"
_UPLOAD_INDEX: Final = "parts"
_XATTR_RETAIN_UNTIL: Final = "user.bodycam.retain_until"  # ISO 8601 UTC, from the covering agreements

#: the bytes of one part: a part buffer is sent as it is, without a copy (agent/pipeline/pull.py)
PartData: TypeAlias = bytes | bytearray | memoryview
#: a part buffer the pipeline fills and hands back (Bucket.part_buffer): a bytearray, or page-aligned memory
PartBuffer: TypeAlias = bytearray | mmap.mmap
#: what O_DIRECT asks of a write's memory, offset and length: a page covers any logical block size up to 4 KiB
DIRECT_ALIGN: Final = 4096


# -- errors -------------------------------------------------------------------------------------------
class ObjectExistsError(StorageError):
    """A create-only write found the key taken by different content; ``existing`` describes it."""

    def __init__(self, message: str, existing: ObjectInfo | None = None) -> None:
        super().__init__(message)
        self.existing = existing


class ObjectNotFoundError(StorageError):
    """The key (or version) is not in the bucket."""


class UploadNotFoundError(UploadError):
    """The multipart upload id is unknown: aborted, completed or expired; start the upload again."""


class ChecksumMismatchError(UploadError):
    """The bucket refused bytes whose checksum is not the one sent with them (S3 ``BadDigest``)."""


# -- results ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Part:
    """One uploaded part. ``checksum`` is its base64 CRC-32C (SHA-256 for a part an older agent sent: see
    :func:`checksum_algorithm`), None when the server does not report it (SeaweedFS ListParts)."""

    number: int
    etag: str
    checksum: str | None
    size: int


@dataclass(frozen=True)
class ObjectInfo:
    """What the bucket says about one object.

    ``checksum`` is the server's checksum: base64 of the SHA-256 for a single PUT, but for a multipart
    object the *composite* ``base64(crc32c(part CRCs))-N`` (``sha256`` of the part SHA-256s for an upload an
    older agent began); ``sha256_hex`` is the whole-object SHA-256 when it is known cheaply (returned by
    ``put_object``). A multipart object's SHA-256 is the manifest's ``ciphertext_sha256``, not the bucket's.
    """

    key: str
    size: int
    etag: str
    version_id: str | None = None
    checksum: str | None = None
    sha256_hex: str | None = None
    last_modified: datetime | None = None
    lock_mode: str | None = None
    retain_until: datetime | None = None


@dataclass(frozen=True)
class PendingUpload:
    """A multipart upload that was started and neither completed nor aborted."""

    key: str
    upload_id: str
    initiated: datetime | None = None


# -- helpers ------------------------------------------------------------------------------------------
def b64_sha256(data: PartData) -> str:
    """The ``ChecksumSHA256`` of ``data``: base64 of its SHA-256 digest."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def b64_crc32c(data: PartData) -> str:
    """The ``ChecksumCRC32C`` of ``data``: base64 of its big-endian CRC-32C (hardware, GIL released)."""
    return base64.b64encode(crc32c.crc32c(data).to_bytes(4, "big")).decode("ascii")


def part_checksum(data: PartData, algorithm: str = PART_CHECKSUM) -> str:
    """The checksum of one part with ``algorithm`` (``CRC32C``, or ``SHA256`` for an older agent's upload)."""
    return b64_sha256(data) if algorithm == "SHA256" else b64_crc32c(data)


def checksum_algorithm(value: str) -> str:
    """``CRC32C`` or ``SHA256``: what a base64 checksum is, told by its length (ChecksumMismatchError else)."""
    return _ALGORITHM_BY_LENGTH[len(_b64_digest(value))]


class _Crc32c:
    """CRC-32C with hashlib's ``update``/``digest`` (big-endian, as S3 encodes it)."""

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: PartData) -> None:
        self._value = crc32c.crc32c(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")


def _hasher(algorithm: str) -> _Crc32c | hashlib._Hash:
    return hashlib.sha256() if algorithm == "SHA256" else _Crc32c()


def composite_checksum(parts: Sequence[Part]) -> str:
    """S3's composite multipart checksum: ``base64(crc32c(crc1 || crc2 ...))-N`` for CRC-32C parts,
    ``base64(sha256(digest1 || digest2 ...))-N`` for SHA-256 parts.

    Raises UploadError when a part has no checksum or the parts mix algorithms.
    """
    algorithms = {checksum_algorithm(_require_checksum(p)) for p in parts}
    if len(algorithms) > 1:
        raise UploadError(f"the parts mix checksum algorithms ({', '.join(sorted(algorithms))})")
    outer = _hasher(algorithms.pop() if algorithms else PART_CHECKSUM)
    for part in parts:
        outer.update(_b64_digest(_require_checksum(part)))
    return f"{base64.b64encode(outer.digest()).decode('ascii')}-{len(parts)}"


def _b64_digest(value: str) -> bytes:
    """The raw digest of a base64 CRC-32C (4 bytes) or SHA-256 (32 bytes); ChecksumMismatchError else."""
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError as err:
        raise ChecksumMismatchError(f"{value!r} is not a base64 CRC-32C or SHA-256 checksum") from err
    if len(raw) not in _ALGORITHM_BY_LENGTH:
        raise ChecksumMismatchError(
            f"{value!r} is not a base64 CRC-32C or SHA-256 checksum (decodes to {len(raw)} bytes)"
        )
    return raw


def _require_checksum(part: Part) -> str:
    if part.checksum is None:
        raise UploadError(
            f"part {part.number} has no checksum; compute it from the part's bytes with part_checksum() "
            "(some servers' ListParts does not report part checksums)"
        )
    return part.checksum


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe object key, else raise IntegrityError naming it.

    Refused: empty, longer than 1024 UTF-8 bytes, absolute, empty/``.``/``..`` components, NUL, backslash,
    control characters, a component over 255 bytes, or the reserved first component ``.uploads``.
    """
    if not isinstance(key, str) or not key:
        raise IntegrityError(f"object key {key!r} is empty or not text")
    _check_chars(key, "object key")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise IntegrityError(f"object key {key[:64]!r}... is longer than {MAX_KEY_BYTES} bytes")
    if key.startswith("/"):
        raise IntegrityError(f"object key {key!r} is absolute; keys are relative to the bucket prefix")
    parts = key.split("/")
    for comp in parts:
        if comp in ("", ".", ".."):
            raise IntegrityError(f"object key {key!r} has an empty, '.' or '..' component")
        if len(comp.encode("utf-8", "surrogatepass")) > 255:
            raise IntegrityError(f"object key {key!r} has a component longer than 255 bytes")
    if parts[0] == UPLOADS_DIR:
        raise IntegrityError(f"object key {key!r} uses the reserved name {UPLOADS_DIR!r}")
    return key


def _check_prefix(prefix: str) -> str:
    """A listing prefix: '' or a key prefix (a trailing '/' allowed), same characters as keys."""
    if not prefix:
        return ""
    check_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


#: what no key or name may hold: a backslash, NUL and the other C0 controls, DEL
_BAD_CHARS: Final = re.compile(r"[\\\x00-\x1f\x7f]")


def _check_chars(text: str, what: str) -> None:
    """One regular-expression scan (a Python loop over the characters cost verify 20-40 µs per object read)."""
    if _BAD_CHARS.search(text):
        raise IntegrityError(f"{what} {text!r} contains a backslash, NUL or control character")


def _check_part_number(number: int) -> None:
    if not 1 <= number <= MAX_PARTS:
        raise UploadError(f"part number {number} is outside 1..{MAX_PARTS}")


def _check_parts(parts: Sequence[Part], min_part_size: int) -> None:
    if not parts:
        raise UploadError("a multipart upload needs at least one part")
    last = 0
    for part in parts:
        _check_part_number(part.number)
        if part.number <= last:
            raise UploadError(f"parts must be in ascending order without repeats (part {part.number})")
        last = part.number
    for part in parts[:-1]:
        if part.size < min_part_size:
            raise UploadError(f"part {part.number} is {part.size} bytes; every part but the last needs 5 MiB")
    for part in parts:
        _require_checksum(part)


def _matches(existing: ObjectInfo, size: int, checksum: str) -> bool:
    """True when ``existing`` holds the content we meant to write (same size and checksum)."""
    return existing.size == size and existing.checksum == checksum


class ObjectReader(io.RawIOBase):
    """A streaming reader over one object: ``read(n)``/``readinto`` or ``iter_chunks()``, never all at once.

    Errors while streaming (connection cut, short body) are StorageError/UploadError naming the key.
    """

    def __init__(
        self,
        info: ObjectInfo,
        read: Callable[[int], bytes],
        close: Callable[[], None],
        wrap: Callable[[BaseException], BodycamError],
        errors: tuple[type[BaseException], ...] = (OSError,),
        readinto: Callable[[memoryview], int] | None = None,
    ) -> None:
        """``readinto``: the source's own read into the caller's memory (a signed GET's), so that
        :meth:`readinto` costs no allocation and no copy; without, it copies what ``read`` gives."""
        super().__init__()
        self.info = info
        self._read = read
        self._readinto = readinto
        self._close = close
        self._wrap = wrap
        #: what reading or closing may raise besides ValueError (an S3 body: botocore's and urllib3's
        #: errors too, passed by S3Bucket so that a local bucket never imports them)
        self._errors = errors
        self._read_errors: tuple[type[BaseException], ...] = (*errors, ValueError)

    @property
    def size(self) -> int:
        return self.info.size

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (``b""`` at the end); no size reads the rest, so only for small objects."""
        if size is None or size < 0:
            return b"".join(self.iter_chunks())
        return self._read_some(size)

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._readinto is None:
            data = self._read_some(len(view))
            view[: len(data)] = data
            return len(data)
        if self.closed:
            raise StorageError(f"object {self.info.key!r}: read after close")
        try:
            return self._readinto(view)
        except BodycamError:
            raise
        except self._read_errors as err:
            raise self._wrap(err) from err

    def _read_some(self, size: int) -> bytes:
        if self.closed:
            raise StorageError(f"object {self.info.key!r}: read after close")
        try:
            return self._read(size)
        except BodycamError:
            raise
        except self._read_errors as err:
            raise self._wrap(err) from err

    def iter_chunks(self, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """Yield the object's bytes in chunks of at most ``chunk_size``, until the end."""
        while True:
            data = self._read_some(chunk_size)
            if not data:
                return
            yield data

    def close(self) -> None:
        if not self.closed:
            try:
                self._close()
            except self._errors as err:
                LOG.debug("closing %s: %s", self.info.key, err)
        super().close()


# -- the abstraction ----------------------------------------------------------------------------------
class Bucket(ABC):
    """Object storage for evidence. Implementations: :class:`S3Bucket`, :class:`LocalBucket`.

    Thread-safe: the pipeline uploads parts from several threads.
    """

    #: what messages call this bucket, e.g. ``s3://evidence/training`` or ``file:///srv/bucket``
    url: str
    min_part_size: int = MIN_PART_SIZE

    # multipart, for a streaming, resumable uploader
    @abstractmethod
    def start_upload(self, key: str, *, retain_until: float | None = None) -> str:
        """Start a multipart upload of ``key``; return its upload id (keep it to resume after a crash).

        ``retain_until`` (epoch s, from the covering agreements: agent/formats/retention.py) becomes the
        object's COMPLIANCE Object Lock date on S3 where the bucket has Object Lock (the later of it and
        ``retention_days``), and is recorded in a local bucket's metadata (no enforcement there)."""

    @abstractmethod
    def upload_part(
        self, key: str, upload_id: str, part_number: int, data: PartData, *, checksum: str | None = None
    ) -> Part:
        """Upload one part (1..10000); re-uploading a number replaces it.

        ``checksum`` (base64 CRC-32C, or SHA-256 to continue an older agent's upload; default: the CRC-32C
        computed here) is sent for the server to check, so a checksum computed where the bytes were
        produced proves them end to end. Raises ChecksumMismatchError, UploadNotFoundError, UploadError.
        """

    @abstractmethod
    def list_parts(self, key: str, upload_id: str) -> list[Part]:
        """The parts the server holds for an upload, ascending; to resume after a crash."""

    @abstractmethod
    def complete_upload(self, key: str, upload_id: str, parts: Sequence[Part]) -> ObjectInfo:
        """Assemble ``parts`` (ascending, each with its checksum) into ``key``, create-only.

        Idempotent: when ``key`` already holds exactly these parts (an earlier attempt's response was lost)
        it returns that object. Raises ObjectExistsError (other content), ChecksumMismatchError,
        UploadNotFoundError, UploadError.
        """

    @abstractmethod
    def abort_upload(self, key: str, upload_id: str) -> None:
        """Discard an upload and its parts; an unknown upload id is not an error."""

    @abstractmethod
    def open_uploads(self, prefix: str = "", *, page_size: int = 1000) -> list[PendingUpload]:
        """Uploads started under ``prefix`` and never completed or aborted (to resume or abort)."""

    # whole objects
    @abstractmethod
    def put_object(
        self, key: str, data: bytes, *, create_only: bool = True, sha256_b64: str | None = None, retain: bool = True
    ) -> ObjectInfo:
        """Store a small object in one request. Raises ObjectExistsError, ChecksumMismatchError, UploadError.
        ``retain=False``: no Object Lock retention (a partial log tile, deleted once its full tile exists)."""

    @abstractmethod
    def head(self, key: str, *, version_id: str | None = None) -> ObjectInfo | None:
        """The object's metadata (with its checksum), or None when it does not exist."""

    @abstractmethod
    def iter_objects(self, prefix: str = "", *, page_size: int = 1000) -> Iterator[ObjectInfo]:
        """Every object under ``prefix`` in key order, one page at a time (memory does not grow).

        Keys are yielded as stored, even ones :func:`check_key` refuses, so ``verify`` can name them.
        """

    @abstractmethod
    def open_read(self, key: str, *, version_id: str | None = None) -> ObjectReader:
        """A streaming reader over the object. Raises ObjectNotFoundError, StorageError."""

    @abstractmethod
    def delete(self, key: str, *, version_id: str | None = None) -> None:
        """Remove an object (tests and tamper simulation); a missing key is not an error."""

    def erase_every_version(self, key: str, *, max_versions: int = MAX_VERSIONS) -> None:
        """Delete every version of ``key``: a versioned (Object Lock) bucket keeps a deleted object's data
        behind a delete marker. Nothing to do when it is already gone. Raises what ``delete`` raises (an
        unexpired COMPLIANCE lock: UploadError), StorageError if versions remain after ``max_versions``."""
        for _ in range(max_versions):
            info = self.head(key)
            if info is None:
                return
            version = info.version_id if info.version_id not in (None, "null") else None
            self.delete(key, version_id=version)
            if version is None and self.head(key) is not None:
                raise StorageError(f"{key} is still in the bucket after deleting it")
        if self.head(key) is not None:
            raise StorageError(f"{key} still has versions after {max_versions} deletions; erase it by hand and rerun")

    def get_bytes(self, key: str, max_size: int) -> bytes:
        """The whole of a small object (a manifest); IntegrityError if it is larger than ``max_size``."""
        with self.open_read(key) as reader:
            if reader.size > max_size:
                raise IntegrityError(f"{self.url}: object {key!r} is {reader.size} bytes, over {max_size}")
            buf = bytearray()
            for chunk in reader.iter_chunks(min(CHUNK, max_size + 1)):
                buf += chunk
                if len(buf) > max_size:
                    raise IntegrityError(f"{self.url}: object {key!r} is larger than {max_size} bytes")
            return bytes(buf)

    def part_buffer(self, size: int) -> PartBuffer:
        """A buffer for the pipeline to cut parts into (agent/pipeline/pull.py's ring): a bytearray, which
        botocore sends without a copy; the local bucket gives page-aligned memory it writes without one."""
        return bytearray(size)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> Bucket:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_bucket(
    url: str,
    endpoint_url: str | None = None,
    *,
    retention_days: int | None = None,
    connect_timeout: float = 10.0,
    read_timeout: float | None = None,
    max_attempts: int = 3,
    read_only: bool = False,
    max_dir_entries: int | None = None,
) -> Bucket:
    """Open ``s3://BUCKET[/PREFIX]`` or ``file:///DIR`` (config ``bucket.url``). Raises ConfigError.

    ``read_only`` (verify): a file bucket is neither created nor tidied, and refuses writes;
    ``max_dir_entries`` bounds a file bucket's listing (:class:`LocalBucket`; S3 lists in pages).
    ``read_timeout`` (default ``$BODYCAM_S3_TIMEOUT_S``, else 30 s): each read, and an answer's status
    line and headers as a whole; its body is due at 64 KiB/s on top (agent/storage/s3http.py).
    """
    if read_timeout is None:
        read_timeout = s3_timeout(os.environ)
    if retention_days is not None and retention_days < 1:
        raise ConfigError(f"bucket.retention_days must be at least 1, got {retention_days}")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.query or parts.fragment:
        raise ConfigError(f"bucket.url must be s3://BUCKET[/PREFIX] or file:///DIR, got {url!r}")
    if parts.scheme == "file":
        if endpoint_url:
            raise ConfigError("bucket.endpoint_url applies only to s3:// buckets; remove it or use s3://")
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigError(f"bucket.url {url!r}: a file URL needs an absolute path, like file:///srv/bucket")
        return LocalBucket(unquote(parts.path), read_only=read_only, max_dir_entries=max_dir_entries)
    if parts.scheme == "s3":
        if endpoint_url is not None:
            ep = urlsplit(endpoint_url)
            if ep.scheme not in ("http", "https") or not ep.netloc:
                raise ConfigError(f"bucket.endpoint_url must be http(s)://HOST[:PORT], got {endpoint_url!r}")
        return S3Bucket(
            parts.netloc,
            parts.path.strip("/"),
            endpoint_url=endpoint_url,
            retention_days=retention_days,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_attempts=max_attempts,
        )
    raise ConfigError(f"bucket.url must be s3://BUCKET[/PREFIX] or file:///DIR, got {url!r}")


#: the environment variable that sets S3's read timeout for every command (verify and receive take no
#: config file), and its bounds: a drip-fed answer is given up by a deadline built on it
S3_TIMEOUT_ENV: Final = "BODYCAM_S3_TIMEOUT_S"
S3_TIMEOUT_RANGE: Final = (1.0, 600.0)
_S3_TIMEOUT_TEXT: Final = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3})?")


def s3_timeout(env: Mapping[str, str]) -> float:
    """``$BODYCAM_S3_TIMEOUT_S`` in seconds (1 .. 600), 30 when unset. Raises ConfigError."""
    text = env.get(S3_TIMEOUT_ENV)
    if not text:
        return 30.0
    low, high = S3_TIMEOUT_RANGE
    if not _S3_TIMEOUT_TEXT.fullmatch(text) or not low <= float(text) <= high:
        raise ConfigError(
            f"{S3_TIMEOUT_ENV} must be a number of seconds from {low:g} to {high:g}, like 30; unset it for 30"
        )
    return float(text)


# -- S3 -----------------------------------------------------------------------------------------------
#: the botocore data loader every S3Bucket of this process shares: it caches the parsed S3 service model and
#: endpoint data (a gzipped JSON document, about 0.1 CPU s to load), so a second bucket's client costs ~0.02 s
_LOADER: Loader | None = None
_LOADER_GUARD = threading.Lock()


def _s3_client(endpoint_url: str | None, connect_timeout: float, read_timeout: float, max_attempts: int) -> S3Client:
    """A botocore S3 client from a session of its own (credentials and region from the standard chain, read
    now), sharing the process's data loader.

    botocore is imported here, when an S3 bucket is opened, not with this module: a command on a local
    bucket never loads it (about 0.2 CPU s). boto3 is not needed for a client, and importing it would add
    s3transfer, concurrent.futures and multiprocessing.managers that the agent never uses."""
    global _LOADER
    import botocore.session
    from botocore.config import Config

    with _LOADER_GUARD:  # a botocore session is not thread-safe while it creates a client
        session = botocore.session.Session()
        if _LOADER is None:
            _LOADER = _s3_loader(session.get_config_variable("data_path"))
        session.register_component("data_loader", _LOADER)
        # Listings carry a LastModified per key: dateutil's parser took ~10 % of verify's CPU
        session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_parse_timestamp)
        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "standard", "max_attempts": max_attempts},
            # The ChecksumSHA256 header is signed and the server checks the body against it, so
            # botocore need not hash every part body again to sign it (it does over plain http).
            s3={"addressing_style": "path" if endpoint_url else "auto", "payload_signing_enabled": False},
        )
        region = session.get_config_variable("region") or ("us-east-1" if endpoint_url else None)
        client = session.create_client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
    return cast("S3Client", client)


def preload_s3() -> None:
    """Import botocore and load S3's models into the process's data loader, without credentials or a request.

    For the forkserver of a daemon whose bucket is S3 (agent/storage/s3preload.py): each bay worker forked
    from it then finds botocore imported and the models parsed, and only builds its client (~0.05 CPU s)
    where it imported and parsed them afresh (0.27-0.48 CPU s a docking, issue 14). The client made here
    only fills the cache; it is dropped, and its placeholder keys stop the credential chain being asked.

    Under static keys (the environment systemd gives the daemon from /etc/bodycam/environment) a docking's
    requests are the agent's own (agent/storage/s3http.py) and botocore is not needed: then only those
    modules are loaded, and botocore (some 30 MB in the forkserver, in every worker's PSS) not at all."""
    global _LOADER
    from bodycam.agent.storage import s3get, s3put  # noqa: F401 - what each worker's S3 requests use
    from bodycam.agent.storage.s3http import botocore_free

    if botocore_free(os.environ):
        return
    import botocore.session

    with _LOADER_GUARD:
        session = botocore.session.Session()
        if _LOADER is None:
            _LOADER = _s3_loader(session.get_config_variable("data_path"))
        session.register_component("data_loader", _LOADER)
        placeholder = "preload"  # never sent: the client makes no request
        session.create_client(
            "s3", region_name="us-east-1", aws_access_key_id=placeholder, aws_secret_access_key=placeholder
        )


def _s3_loader(data_path: str | None) -> Loader:
    """botocore's data loader (the same search path as a session's own), for S3 alone: botocore's
    ``list_available_services`` walks the directory of every AWS service (about 400, once for the model and
    once for the endpoint rules: 25-35 ms of CPU) only to check that ``s3`` is among them."""
    from botocore.loaders import Loader

    class S3Loader(Loader):
        def list_available_services(self, type_name: str) -> list[str]:
            return ["s3"]

    paths = [os.path.expanduser(os.path.expandvars(p)) for p in data_path.split(os.pathsep)] if data_path else None
    return S3Loader(extra_search_paths=paths)


def _s3_errors() -> tuple[type[BaseException], ...]:
    """What reading an S3 object's body may raise (imported only once an S3 bucket is open)."""
    import urllib3.exceptions
    from botocore.exceptions import BotoCoreError

    return (BotoCoreError, OSError, urllib3.exceptions.HTTPError)


_S3_XMLNS: Final = "http://s3.amazonaws.com/doc/2006-03-01/"
_UNSIGNED_PAYLOAD: Final = "UNSIGNED-PAYLOAD"


def _lock_headers(lock: dict[str, Any]) -> dict[str, str]:
    """The Object Lock headers of :meth:`S3Bucket._lock_kwargs`, serialised as botocore does (ISO 8601,
    microseconds when there are any)."""
    if not lock:
        return {}
    until: datetime = lock["ObjectLockRetainUntilDate"]
    text = until.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if until.microsecond else "%Y-%m-%dT%H:%M:%SZ")
    return {"x-amz-object-lock-mode": str(lock["ObjectLockMode"]), "x-amz-object-lock-retain-until-date": text}


def _valid_length(headers: dict[str, str]) -> bool:
    from bodycam.agent.storage.s3get import content_length

    return content_length(headers) is not None


_CHECKSUM_CODES: Final = frozenset(
    {"BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch", "XAmzContentSHA256Mismatch"}
)
#: refusals botocore retries as transient: a signed PUT refused so says nothing unusual about the endpoint
_TRANSIENT_CODES: Final = frozenset({"RequestTimeout", "SlowDown", "RequestTimeoutException", "Throttling"})
_AUTH_CODES: Final = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}
)


class S3Bucket(Bucket):
    """A bucket (and key prefix) on AWS S3 or any S3-compatible server; credentials from boto3's chain.

    Retries are botocore's ``standard`` mode with ``max_attempts``; with the connect/read timeouts an
    outage fails within bounded time as UploadError. ``retention_days`` puts COMPLIANCE Object Lock
    retention on every new object when the bucket has Object Lock enabled (asked once).
    ``conditional_writes=False`` replaces ``IfNoneMatch`` by a HEAD before writing, for servers that
    ignore it; it is also switched off by itself if the server answers that it does not implement it.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        retention_days: int | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        max_attempts: int = 3,
        conditional_writes: bool = True,
        client: S3Client | None = None,
    ) -> None:
        if not _BUCKET_NAME.fullmatch(bucket or ""):
            raise ConfigError(f"bucket.url: {bucket!r} is not a valid S3 bucket name (3-63 of a-z 0-9 . -)")
        if prefix:
            try:
                check_key(prefix)
            except IntegrityError as err:
                raise ConfigError(f"bucket.url: prefix {prefix!r} is not usable: {err}") from err
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self.retention_days = retention_days
        self._conditional = conditional_writes
        self._lock_state: bool | None = None
        self._lock_guard = threading.Lock()
        self._client_guard = threading.Lock()
        self._client_args = (endpoint_url, connect_timeout, read_timeout, max_attempts)
        self._botocore: S3Client | None = client
        #: the bucket's own signed requests (agent/storage/s3http.py), None where botocore alone knows how
        self._http: S3Http | None = None
        self._signed_get: SignedGet | None = None
        self._signed_put: SignedPut | None = None
        if client is None:  # an injected client (tests) is used as it is, for every call
            self._http = _s3_http(bucket, endpoint_url, connect_timeout, read_timeout)
            if self._http is not None:
                if not self._http.static:  # a role, SSO, an instance role: botocore's chain resolves them
                    self._http.credentials_from(self._client)
                self._signed_get, self._signed_put = _signed_requests(self._http)

    @property
    def _client(self) -> S3Client:
        """The botocore client, created on first use: an ingest whose requests all go through
        :attr:`_http` never imports botocore (about 0.3 CPU s a run); errors, retries and anything
        :attr:`_http` does not do still go through it."""
        client = self._botocore
        if client is None:
            with self._client_guard:
                if self._botocore is None:
                    self._botocore = _s3_client(*self._client_args)
                client = self._botocore
        return client

    # -- plumbing ---------------------------------------------------------------------------------
    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _send(self, request: Request) -> Answer | None:
        """One request on the bucket's own signed connections (agent/storage/s3http.py); None when it has
        none, no answer came or it was over the limit. Any answer the caller does not take is asked again
        through botocore."""
        if self._http is None:
            return None
        try:
            answer = self._http.send(request)
        except _answer_timeout() as err:
            raise self._late(request.method, request.full_key, err) from None
        return answer if answer is not None and answer.whole else None

    def _exchange(self, action: str, key: str | None, request: Request, limit: int | None = None) -> Answer | None:
        """``request`` on the bucket's own signed connections, as botocore's ``standard`` mode would make
        it: sent again after no answer, a 5xx, 408, 429 or throttling (at most ``max_attempts`` in all,
        jittered exponential back-off); a refusal raised as the BodycamError botocore's ClientError
        becomes (:meth:`_refused`, the same message), so an error answer never loads botocore. The 2xx
        answer, or None where botocore must make the request (no signed connections or no credentials
        to sign with: botocore names the problem; AWS's redirect to the bucket's region)."""
        if self._http is None or not self._http.can_sign():
            return None
        from bodycam.agent.storage.s3http import MAX_BODY, error_of

        limit = MAX_BODY if limit is None else limit
        attempts = max(1, self._client_args[3])
        answer: Answer | None = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(random.random() * (2**attempt), 20.0))
            try:
                answer = self._http.send(request, limit)
            except _answer_timeout() as err:
                raise self._late(action, request.full_key, err) from None
            if answer is not None and not answer.whole:
                raise UploadError(
                    f"{action} {self._where(key)} failed: the answer is over {limit} bytes; "
                    "check that the endpoint is an S3 service"
                )
            if answer is None:
                continue
            if 200 <= answer.status < 300:
                return answer
            if 300 <= answer.status < 400:
                if self.endpoint_url is None:
                    return None  # AWS's redirect to the bucket's region: botocore follows it
                # an S3-compatible endpoint has no region to redirect to; botocore would read what it points
                # at without s3xml's bounds (a listing of any size), so a hostile endpoint could use it to
                # get past every one of them
                raise UploadError(
                    f"{action} {self._where(key)} failed: the endpoint answered a redirect (HTTP "
                    f"{answer.status}); check the endpoint URL"
                )
            code, message = error_of(answer.body)
            if not _transient(answer.status, code):
                raise self._refused(action, key, code, answer.status, message) from _Refused(code, answer.status)
        if answer is None:
            raise UploadError(
                f"{action} {self._where(key)} failed: no answer after {attempts} attempts; "
                "check that the endpoint is reachable and up"
            )
        code, message = error_of(answer.body)
        raise self._refused(action, key, code, answer.status, message) from _Refused(code, answer.status)

    def _where(self, key: str | None) -> str:
        where = f"s3://{self.bucket}/{self._full(key)}" if key is not None else self.url
        return f"{where} (endpoint {self.endpoint_url or 'AWS'})"

    def _late(self, action: str, full_key: str | None, err: BaseException) -> UploadError:
        """An answer not through by its deadline (agent/storage/s3http.py ``Alarm``): an outage, in one
        line naming the key (keys name no one), never asked again through botocore, whose reads have
        only a per-read timeout."""
        where = f"s3://{self.bucket}/{full_key}" if full_key is not None else self.url
        return UploadError(
            f"{action} {where} (endpoint {self.endpoint_url or 'AWS'}) failed: {err}; check that the "
            "endpoint is up and not overloaded (BODYCAM_S3_TIMEOUT_S sets the read timeout)"
        )

    def _call(self, action: str, key: str | None, method: Callable[..., _T], /, **kwargs: Any) -> _T:
        """``method`` of the boto3 client on this bucket, its errors turned into the BodycamError tree."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

        try:
            return method(Bucket=self.bucket, **kwargs)
        except ClientError as err:
            raise self._client_error(action, key, err) from err
        except (NoCredentialsError, PartialCredentialsError) as err:
            raise ConfigError(
                f"{action} {self._where(key)}: no S3 credentials; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, a profile or an instance role"
            ) from err
        except BotoCoreError as err:
            raise UploadError(
                f"{action} {self._where(key)} failed: {err}; check that the endpoint is reachable and up"
            ) from err

    def _client_error(self, action: str, key: str | None, err: ClientError) -> BodycamError:
        error = err.response.get("Error", {})
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return self._refused(action, key, str(error.get("Code", "")), status, str(error.get("Message", "")))

    def _refused(self, action: str, key: str | None, code: str, status: int, message: str) -> BodycamError:
        """An S3 refusal (botocore's ClientError or the bucket's own answer) as one line of the BodycamError
        tree: the action, the bucket and key the agent named, the code, and the endpoint's message made
        one bounded line (it is the endpoint's text)."""
        from bodycam.agent.storage.s3http import one_line

        text = f"{action} {self._where(key)} refused: {code or status} {one_line(message)}".rstrip()
        if code in _CHECKSUM_CODES:
            return ChecksumMismatchError(f"{text}; the bytes do not match their checksum (corrupted in transit?)")
        if code == "PreconditionFailed" or status == 412:
            return ObjectExistsError(f"{text}; the key already exists")
        if code == "NoSuchUpload":
            return UploadNotFoundError(f"{text}; the upload was aborted, completed or expired: start again")
        if code == "NoSuchBucket":
            return UploadError(f"{text}; create bucket {self.bucket!r} or fix bucket.url")
        if code in ("NoSuchKey", "NoSuchVersion", "NotFound") or status == 404:
            return ObjectNotFoundError(f"{text}; no such object")
        if code in _AUTH_CODES or status == 403:
            return UploadError(f"{text}; check the S3 credentials (AWS_ACCESS_KEY_ID, profile) and bucket policy")
        return UploadError(text)

    @staticmethod
    def _is_not_implemented(err: BodycamError) -> bool:
        cause = err.__cause__
        if isinstance(cause, _Refused):
            return cause.code == "NotImplemented" or cause.status == 501
        if "botocore.exceptions" not in sys.modules:
            return False  # no botocore request was made
        from botocore.exceptions import ClientError

        return isinstance(cause, ClientError) and (
            _error_code(cause) == "NotImplemented"
            or cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 501
        )

    def object_lock_enabled(self) -> bool:
        """Whether the bucket has Object Lock enabled (asked once, then remembered).

        Raises UploadError when the bucket cannot be reached or does not exist (asked again next time).
        """
        with self._lock_guard:
            if self._lock_state is None:
                enabled = self._lock_state_answered()
                if enabled is None:
                    enabled = self._lock_state_of_botocore()
                self._lock_state = enabled
                if not enabled:  # one line, once: retention then stands in the signed manifests only
                    LOG.warning(
                        "%s: the bucket has no Object Lock: retain-until dates are recorded in the manifests but "
                        "not enforced by the server%s",
                        self.url,
                        " (bucket.retention_days is set)" if self.retention_days else "",
                    )
            return self._lock_state

    def _lock_state_of_botocore(self) -> bool:
        try:
            conf = self._call("get Object Lock configuration of", None, self._client.get_object_lock_configuration)
            return conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
        except UploadError as err:
            code = _error_code(err.__cause__)
            if code is None or code == "NoSuchBucket":
                raise
            if code != "ObjectLockConfigurationNotFoundError":
                LOG.warning("%s: cannot read Object Lock configuration, assuming none: %s", self.url, err)
            return False
        except ObjectNotFoundError:  # ObjectLockConfigurationNotFoundError (404): no lock
            return False

    def _lock_state_answered(self) -> bool | None:
        """Object Lock enabled or not, as the bucket's own GET ?object-lock answers it; None otherwise."""
        answer = self._send(_request("GET", None, [("object-lock", "")]))
        if answer is None:
            return None
        if answer.status == 200:
            fields = _fields(answer.body, "ObjectLockConfiguration")
            return None if fields is None else fields.get("ObjectLockEnabled") == "Enabled"
        if answer.status == 404 and _error_of()(answer.body)[0] == "ObjectLockConfigurationNotFoundError":
            return False
        return None

    def _lock_kwargs(self, retain_until: float | None = None) -> dict[str, Any]:
        """COMPLIANCE Object Lock headers: until the later of ``retention_days`` from now and
        ``retain_until`` (a date already past sets none: S3 refuses a retain-until in the past)."""
        now = datetime.now(UTC)
        dates = [now + timedelta(days=self.retention_days)] if self.retention_days else []
        if retain_until is not None and retain_until > now.timestamp() + 1:
            dates.append(datetime.fromtimestamp(retain_until, UTC))
        if not dates or not self.object_lock_enabled():
            return {}
        return {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": max(dates)}

    def _info(self, key: str, r: Any, **extra: Any) -> ObjectInfo:
        fields: dict[str, Any] = {
            "key": key,
            "size": int(r.get("ContentLength", 0)),
            "etag": str(r.get("ETag", "")),
            "version_id": r.get("VersionId") or None,
            "checksum": r.get("ChecksumCRC32C") or r.get("ChecksumSHA256") or None,
            "last_modified": r.get("LastModified"),
            "lock_mode": r.get("ObjectLockMode"),
            "retain_until": r.get("ObjectLockRetainUntilDate"),
        }
        fields.update(extra)
        return ObjectInfo(**fields)

    def _create_only(self, action: str, key: str, size: int, checksum: str, write: Callable[[bool], Any]) -> Any:
        """Run ``write(conditional)`` create-only; a lost-response retry of the same bytes is success.

        Returns the server's response, or the existing ObjectInfo when the same content is already there.
        """
        if not self._conditional:
            existing = self.head(key)
            if existing is not None:
                return self._existing_or_raise(action, key, size, checksum, existing)
        try:
            return write(self._conditional)
        except ObjectExistsError as err:
            existing = self.head(key)
            if existing is None:
                raise
            return self._existing_or_raise(action, key, size, checksum, existing, err)
        except UploadError as err:
            if not (self._conditional and self._is_not_implemented(err)):
                raise
            LOG.warning("%s ignores IfNoneMatch; falling back to HEAD before each create-only write", self.url)
            self._conditional = False
            return self._create_only(action, key, size, checksum, write)

    def _existing_or_raise(
        self, action: str, key: str, size: int, checksum: str, existing: ObjectInfo, cause: Exception | None = None
    ) -> ObjectInfo:
        if _matches(existing, size, checksum):
            return existing
        raise ObjectExistsError(
            f"{action} {self._where(key)}: the key already holds other content "
            f"({existing.size} bytes, checksum {existing.checksum})",
            existing,
        ) from cause

    # -- multipart --------------------------------------------------------------------------------
    def start_upload(self, key: str, *, retain_until: float | None = None) -> str:
        check_key(key)
        lock = self._lock_kwargs(retain_until)
        headers = {"x-amz-checksum-algorithm": PART_CHECKSUM, **_lock_headers(lock)}
        request = _request("POST", self._full(key), [("uploads", "")], headers, b"")
        answer = self._exchange("start upload of", key, request)
        if answer is not None:
            upload_id = (_fields(answer.body, "InitiateMultipartUploadResult") or {}).get("UploadId")
            if upload_id:
                return upload_id
        r = self._call(
            "start upload of", key, self._client.create_multipart_upload,
            Key=self._full(key), ChecksumAlgorithm=PART_CHECKSUM, **lock,
        )  # fmt: skip
        return str(r["UploadId"])

    def upload_part(
        self, key: str, upload_id: str, part_number: int, data: PartData, *, checksum: str | None = None
    ) -> Part:
        check_key(key)
        _check_part_number(part_number)
        checksum = checksum if checksum is not None else part_checksum(data)
        algorithm = checksum_algorithm(checksum)
        sent = self._put_part(key, upload_id, part_number, data, algorithm, checksum)
        if isinstance(sent, tuple):
            etag, returned = sent
            self._check_returned(key, part_number, checksum, returned)
            return Part(part_number, etag, checksum, len(data))
        r = self._call(
            f"upload part {part_number} of", key, self._client.upload_part,
            Key=self._full(key), UploadId=upload_id, PartNumber=part_number,
            Body=data.tobytes() if isinstance(data, memoryview) else data,  # botocore takes no memoryview
            ContentLength=len(data), ChecksumAlgorithm=algorithm, **{f"Checksum{algorithm}": checksum},
        )  # fmt: skip
        if sent is True:
            # the endpoint took from botocore what it refused as a signed PUT (a redirect, a signature it
            # does not take): every part would be sent twice, so this bucket's parts keep to botocore
            LOG.debug("%s: signed part PUTs refused but upload_part worked; parts go through botocore", self.url)
            self._signed_put = None
        self._check_returned(key, part_number, checksum, cast("str | None", r.get(f"Checksum{algorithm}")))
        return Part(part_number, str(r["ETag"]), checksum, len(data))

    def _put_part(
        self, key: str, upload_id: str, number: int, data: PartData, algorithm: str, checksum: str
    ) -> tuple[str, str | None] | bool | None:
        """The ETag and returned checksum of the part sent as one signed PUT (agent/storage/s3put.py: no
        botocore request machinery, no copy of the part). Otherwise ``upload_part`` sends the part again
        through botocore, whose retries, error mapping and messages are the only ones a caller sees: True
        when the answer was a refusal that is not transient (so the endpoint is unusual if botocore's
        request then succeeds), False or None otherwise. A checksum refusal (the bytes were corrupted on
        the way) is raised at once, as botocore's ChecksumMismatchError, which botocore does not retry."""
        if self._signed_put is None:
            return None
        view = data if isinstance(data, memoryview) else memoryview(data)
        if not view.c_contiguous:
            return None
        try:
            answer = self._signed_put.put_part(self._full(key), upload_id, number, view.cast("B"), algorithm, checksum)
        except _answer_timeout() as late:
            raise self._late(f"upload part {number} of", self._full(key), late) from None
        if answer is None:
            return None
        status, headers, body = answer
        etag = headers.get("etag")
        if status == 200 and etag:
            return etag, headers.get(f"x-amz-checksum-{algorithm.lower()}")
        code, message = _error_of()(body)
        if code in _CHECKSUM_CODES:
            from botocore.exceptions import ClientError

            error = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
            err = ClientError(cast("Any", error), "UploadPart")
            raise self._client_error(f"upload part {number} of", key, err) from err
        LOG.debug("signed PUT of part %d of %s: HTTP %d %s; through upload_part instead", number, key, status, code)
        return 300 <= status < 500 and not _transient(status, code)

    def _check_returned(self, key: str, number: int, sent: str, returned: str | None) -> None:
        if returned and returned != sent:
            raise ChecksumMismatchError(
                f"upload part {number} of {self._where(key)}: server stored checksum {returned}, sent {sent}"
            )

    def list_parts(self, key: str, upload_id: str) -> list[Part]:
        check_key(key)
        parts: list[Part] = []
        marker = 0
        while True:
            query = [("uploadId", upload_id), ("max-parts", "1000"), ("part-number-marker", str(marker))]
            page = self._page("list parts of", key, _request("GET", self._full(key), query), _parts_page)
            if page is None:
                page = self._parts_of_botocore(key, upload_id, marker)
            parts.extend(cast("list[Part]", page.items))
            if len(parts) > MAX_PARTS:  # a hostile endpoint's pages would otherwise be kept without end
                raise UploadError(
                    f"list parts of {self._where(key)} failed: the bucket lists more than the {MAX_PARTS} "
                    "parts an upload can have; check that the endpoint is an S3 service"
                )
            nxt = int(page.next[0]) if page.next else (parts[-1].number if parts else 0)
            if not page.truncated or nxt <= marker or nxt >= MAX_PARTS:
                return parts
            marker = nxt

    def _parts_of_botocore(self, key: str, upload_id: str, marker: int) -> Page:
        from bodycam.agent.storage.s3xml import Page

        r = self._call(
            "list parts of",
            key,
            self._client.list_parts,
            Key=self._full(key),
            UploadId=upload_id,
            PartNumberMarker=marker,
            MaxParts=1000,
        )
        parts = [
            Part(
                int(p["PartNumber"]), str(p["ETag"]), p.get("ChecksumCRC32C") or p.get("ChecksumSHA256"), int(p["Size"])
            )
            for p in r.get("Parts", [])
        ]
        nxt = r.get("NextPartNumberMarker")
        return Page(parts, bool(r.get("IsTruncated")), (str(nxt),) if nxt else ())

    def _page(
        self, action: str, key: str | None, request: Request, read: Callable[[bytes], Page], limit: int | None = None
    ) -> Page | None:
        """One page of a listing as the bucket's own request (:meth:`_exchange`), read by ``read``
        (agent/storage/s3xml.py); None where botocore must ask. A page that is not taken (malformed,
        hostile, past a bound) is an UploadError naming the bucket and the reason, never a key listed."""
        answer = self._exchange(action, key, request, limit)
        if answer is None:
            return None
        from bodycam.agent.storage.s3xml import BadAnswer

        try:
            return read(answer.body)
        except BadAnswer as err:
            raise UploadError(
                f"{action} {self._where(key)} failed: {err}; check that the endpoint is an S3 service"
            ) from None

    def complete_upload(self, key: str, upload_id: str, parts: Sequence[Part]) -> ObjectInfo:
        check_key(key)
        _check_parts(parts, self.min_part_size)
        size = sum(p.size for p in parts)
        checksum = composite_checksum(parts)
        algorithm = checksum_algorithm(_require_checksum(parts[0]))
        body = {
            "Parts": [
                {"PartNumber": p.number, "ETag": p.etag, f"Checksum{algorithm}": _require_checksum(p)} for p in parts
            ]
        }

        def write(conditional: bool) -> Any:
            answered = self._complete_answered(key, upload_id, parts, algorithm, conditional)
            if answered is not None:
                return answered
            extra = {"IfNoneMatch": "*"} if conditional else {}
            return self._call(
                "complete upload of", key, self._client.complete_multipart_upload,
                Key=self._full(key), UploadId=upload_id, MultipartUpload=body, **extra,
            )  # fmt: skip

        try:
            r = self._create_only("complete upload of", key, size, checksum, write)
        except UploadNotFoundError:
            existing = self.head(key)  # completed by an earlier attempt whose response was lost?
            if existing is not None and _matches(existing, size, checksum):
                return existing
            raise
        if isinstance(r, ObjectInfo):  # the same parts were already assembled there
            self.abort_upload(key, upload_id)
            return r
        return self._info(key, r, size=size, checksum=r.get(f"Checksum{algorithm}") or checksum)

    def _complete_answered(
        self, key: str, upload_id: str, parts: Sequence[Part], algorithm: str, conditional: bool
    ) -> dict[str, Any] | None:
        """CompleteMultipartUpload as the bucket's own POST: what botocore would have parsed of a success
        (ETag, version, checksum); a refusal raised as botocore's would be (:meth:`_exchange`); None for
        anything else (S3 may also answer 200 with an error in it)."""
        if self._http is None:
            return None
        from bodycam.agent.storage.s3http import xml_escape

        tag = f"Checksum{algorithm}"
        listed = "".join(
            f"<Part><ETag>{xml_escape(p.etag)}</ETag><{tag}>{xml_escape(_require_checksum(p))}</{tag}>"
            f"<PartNumber>{p.number}</PartNumber></Part>"
            for p in parts
        )
        body = f'<CompleteMultipartUpload xmlns="{_S3_XMLNS}">{listed}</CompleteMultipartUpload>'.encode()
        headers = {"if-none-match": "*"} if conditional else {}
        request = _request("POST", self._full(key), [("uploadId", upload_id)], headers, body)
        answer = self._exchange("complete upload of", key, request)
        fields = _fields(answer.body, "CompleteMultipartUploadResult") if answer is not None else None
        if answer is None or fields is None:
            return None  # a redirect, or S3's 200 with an error in it: botocore asks again
        return {
            "ETag": fields.get("ETag", ""),
            "VersionId": answer.headers.get("x-amz-version-id"),
            tag: fields.get(tag),
        }

    def abort_upload(self, key: str, upload_id: str) -> None:
        check_key(key)
        request = _request("DELETE", self._full(key), [("uploadId", upload_id)])
        try:
            if self._exchange("abort upload of", key, request) is None:
                self._call(
                    "abort upload of", key, self._client.abort_multipart_upload, Key=self._full(key), UploadId=upload_id
                )
        except UploadNotFoundError:
            pass

    def open_uploads(self, prefix: str = "", *, page_size: int = 1000) -> list[PendingUpload]:
        _check_prefix(prefix)
        full = self._full(prefix) if self.prefix else prefix
        strip = f"{self.prefix}/" if self.prefix else ""
        out: list[PendingUpload] = []
        key_marker, id_marker = "", ""
        progress = _Progress(f"list uploads in {self._where(None)} failed", page_size)
        while True:
            r = self._uploads_answered(full, key_marker, id_marker, page_size) or self._call(
                "list uploads in", None, self._client.list_multipart_uploads,
                Prefix=full, KeyMarker=key_marker, UploadIdMarker=id_marker, MaxUploads=page_size,
            )  # fmt: skip
            uploads = r.get("Uploads", [])
            for u in uploads:
                k = str(u["Key"])
                if k.startswith(strip):
                    out.append(PendingUpload(k[len(strip) :], str(u["UploadId"]), u.get("Initiated")))
            if not r.get("IsTruncated") or not uploads:
                return out
            # SeaweedFS sends NextUploadIdMarker without NextKeyMarker: continue after the last one seen
            nxt = (str(r.get("NextKeyMarker") or uploads[-1]["Key"]), str(r.get("NextUploadIdMarker") or ""))
            if nxt == (key_marker, id_marker):
                return out
            if len(out) > MAX_OPEN_UPLOADS:
                raise UploadError(f"{progress.failed}: the bucket lists more than {MAX_OPEN_UPLOADS} open uploads")
            progress.moved_on(nxt, len(uploads))
            key_marker, id_marker = nxt

    def _uploads_answered(self, prefix: str, key_marker: str, id_marker: str, page_size: int) -> dict[str, Any] | None:
        """One page of ListMultipartUploads as the bucket's own GET (agent/storage/s3xml.py reads it with
        bounds), in botocore's shape; None where botocore must ask."""
        query = [("uploads", ""), ("prefix", prefix), ("max-uploads", str(page_size))]
        query += [("key-marker", key_marker)] if key_marker else []
        query += [("upload-id-marker", id_marker)] if id_marker else []
        from bodycam.agent.storage.s3xml import uploads_page

        page = self._page(
            "list uploads in", None, _request("GET", None, query), lambda b: uploads_page(b, prefix, page_size)
        )
        if page is None:
            return None
        uploads = [
            {"Key": k, "UploadId": u, "Initiated": when}
            for k, u, when in cast("list[tuple[str, str, Any]]", page.items)
        ]
        nxt = page.next or ("", "")
        return {
            "Uploads": uploads,
            "IsTruncated": page.truncated,
            "NextKeyMarker": nxt[0],
            "NextUploadIdMarker": nxt[1],
        }

    # -- objects ----------------------------------------------------------------------------------
    def put_object(
        self, key: str, data: bytes, *, create_only: bool = True, sha256_b64: str | None = None, retain: bool = True
    ) -> ObjectInfo:
        check_key(key)
        checksum = sha256_b64 if sha256_b64 is not None else b64_sha256(data)
        lock = self._lock_kwargs() if retain else {}

        def write(conditional: bool) -> Any:
            headers = {"x-amz-sdk-checksum-algorithm": "SHA256", "x-amz-checksum-sha256": checksum}
            headers |= _lock_headers(lock)
            if create_only and conditional:
                headers["if-none-match"] = "*"
            # the body is covered by its signed SHA-256 checksum header, as botocore sends it
            request = _request("PUT", self._full(key), (), headers, data, payload=_UNSIGNED_PAYLOAD)
            answer = self._exchange("put", key, request)
            if answer is not None:
                return {"ETag": answer.headers.get("etag", ""), "VersionId": answer.headers.get("x-amz-version-id")}
            extra: dict[str, Any] = {"IfNoneMatch": "*"} if create_only and conditional else {}
            return self._call(
                "put", key, self._client.put_object,
                Key=self._full(key), Body=data, ContentLength=len(data),
                ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum, **lock, **extra,
            )  # fmt: skip

        r = self._create_only("put", key, len(data), checksum, write) if create_only else write(False)
        if isinstance(r, ObjectInfo):
            return r
        return ObjectInfo(
            key=key,
            size=len(data),
            etag=str(r.get("ETag", "")),
            version_id=r.get("VersionId") or None,
            checksum=checksum,
            sha256_hex=_b64_digest(checksum).hex(),
            lock_mode=lock.get("ObjectLockMode"),
            retain_until=lock.get("ObjectLockRetainUntilDate"),
        )

    def head(self, key: str, *, version_id: str | None = None) -> ObjectInfo | None:
        check_key(key)
        query = [("versionId", version_id)] if version_id else []
        request = _request("HEAD", self._full(key), query, {"x-amz-checksum-mode": "ENABLED"})
        try:
            answer = self._exchange("head", key, request)
        except ObjectNotFoundError:
            return None
        if answer is not None and answer.status == 200 and _valid_length(answer.headers):
            return ObjectInfo(key=key, **_info_fields()(answer.headers))
        extra = {"VersionId": version_id} if version_id else {}
        try:
            r = self._call("head", key, self._client.head_object, Key=self._full(key), ChecksumMode="ENABLED", **extra)
        except ObjectNotFoundError:
            return None
        return self._info(key, r)

    def iter_objects(self, prefix: str = "", *, page_size: int = 1000) -> Iterator[ObjectInfo]:
        """ListObjectsV2, page after page, as the bucket's own GETs (agent/storage/s3xml.py reads each
        page with bounds); through botocore only where the bucket has no signed connections."""
        _check_prefix(prefix)
        for page in self._pages("list objects in", "list-type", prefix, page_size):
            yield from cast("list[ObjectInfo]", page.items)

    def iter_versions(self, prefix: str = "", *, page_size: int = 1000) -> Iterator[ObjectVersion]:
        """Every version and delete marker under ``prefix`` (ListObjectVersions), key by key, newest first."""
        _check_prefix(prefix)
        for page in self._pages("list versions in", "versions", prefix, page_size):
            yield from cast("list[ObjectVersion]", page.items)

    def _pages(self, action: str, kind: str, prefix: str, page_size: int) -> Iterator[Page]:
        """The pages of a listing of objects (``kind`` list-type) or versions (``versions``); one that does
        not move on or goes on without end is an UploadError (:class:`_Progress`)."""
        from bodycam.agent.storage import s3xml

        strip = f"{self.prefix}/" if self.prefix else ""
        full = strip + prefix
        base = [(kind, "2" if kind == "list-type" else ""), ("prefix", full), ("encoding-type", "url")]
        base.append(("max-keys", str(page_size)))
        reader = s3xml.objects_page if kind == "list-type" else s3xml.versions_page
        names = ("continuation-token",) if kind == "list-type" else ("key-marker", "version-id-marker")
        progress = _Progress(f"{action} {self._where(None)} failed", page_size)
        at: tuple[str, ...] = ()
        while True:
            query = base + [(n, v) for n, v in zip(names, at, strict=False) if v]
            request = _request("GET", None, query)
            page = self._page(action, None, request, lambda body: reader(body, full, strip, page_size))
            if page is None:
                page = self._listing_of_botocore(kind, full, strip, page_size, at)
            yield page
            if not page.truncated or not page.next:
                return
            progress.moved_on(page.next, len(page.items))
            at = page.next

    def _listing_of_botocore(self, kind: str, full: str, strip: str, page_size: int, at: tuple[str, ...]) -> Page:
        """One page of a listing through botocore (credentials or routing only botocore knows, a redirect)."""
        from bodycam.agent.storage.s3xml import ObjectVersion, Page

        if kind == "list-type":
            kwargs: dict[str, Any] = {"Prefix": full, "MaxKeys": page_size}
            kwargs |= {"ContinuationToken": at[0]} if at else {}
            r = self._call("list objects in", None, self._client.list_objects_v2, **kwargs)
            objects = [
                ObjectInfo(
                    key=str(o["Key"])[len(strip) :],
                    size=int(o.get("Size", 0)),
                    etag=str(o.get("ETag", "")),
                    last_modified=o.get("LastModified"),
                )
                for o in r.get("Contents", [])
            ]
            token = r.get("NextContinuationToken")
            return Page(objects, bool(r.get("IsTruncated")), (str(token),) if token else ())
        markers = {"KeyMarker": at[0], "VersionIdMarker": at[1]} if at else {}
        v = self._call(
            "list versions in", None, self._client.list_object_versions,
            Prefix=full, MaxKeys=page_size, **{k: m for k, m in markers.items() if m},
        )  # fmt: skip
        versions = [
            ObjectVersion(
                str(e["Key"])[len(strip) :],
                str(e["VersionId"]),
                bool(e.get("IsLatest")),
                tag == "DeleteMarkers",
                int(e.get("Size", 0)),
                e.get("LastModified"),
            )
            for tag in ("Versions", "DeleteMarkers")
            for e in cast("list[dict[str, Any]]", v.get(tag, []))
        ]
        nxt = (str(v.get("NextKeyMarker") or ""), str(v.get("NextVersionIdMarker") or ""))
        return Page(versions, bool(v.get("IsTruncated")), nxt if nxt[0] else ())

    def open_read(self, key: str, *, version_id: str | None = None) -> ObjectReader:
        """A signed GET straight through the client's HTTP session (agent/storage/s3get.py: a third of the
        CPU of ``get_object``); a refusal is the error ``get_object``'s would have been (:meth:`_refused`),
        anything else but a 200 is asked again through ``get_object``, whose retries it keeps."""
        check_key(key)
        where = self._where(key)

        def wrap(err: BaseException) -> BodycamError:
            if isinstance(err, _answer_timeout()):
                return self._late("reading", self._full(key), err)
            return UploadError(f"reading {where} failed mid-stream: {err}; check that the endpoint is up")

        bad_length = UploadError(
            f"reading {where} failed: the endpoint answered with an invalid Content-Length; check that the "
            "endpoint is an S3 service"
        )
        try:
            opened = self._signed_get.open(self._full(key), version_id) if self._signed_get is not None else None
        except _bad_content_length():
            raise bad_length from None
        except _answer_timeout() as err:
            raise self._late("reading", self._full(key), err) from None
        if opened is not None and not isinstance(opened, tuple):
            code, message = _error_of()(opened.body)
            if not _transient(opened.status, code):
                raise self._refused("read", key, code, opened.status, message) from _Refused(code, opened.status)
            opened = None  # botocore's retries
        if opened is not None:
            headers, signed = opened
            info = ObjectInfo(key=key, **_info_fields()(headers))
            return ObjectReader(info, signed.read, signed.close, wrap, _read_errors(), signed.readinto)
        extra = {"VersionId": version_id} if version_id else {}
        try:  # botocore's parser raises a bare ValueError on a Content-Length that is not a number
            r = self._call("read", key, self._client.get_object, Key=self._full(key), **extra)
        except ValueError:
            raise bad_length from None
        body = r["Body"]
        size = r.get("ContentLength", 0)
        if not isinstance(size, int) or not 0 <= size <= MAX_OBJECT:
            body.close()
            raise bad_length
        return ObjectReader(self._info(key, r), body.read, body.close, wrap, _s3_errors())

    def delete(self, key: str, *, version_id: str | None = None) -> None:
        check_key(key)
        query = [("versionId", version_id)] if version_id else []
        if self._exchange("delete", key, _request("DELETE", self._full(key), query)) is not None:
            return
        extra = {"VersionId": version_id} if version_id else {}
        self._call("delete", key, self._client.delete_object, Key=self._full(key), **extra)

    def erase_every_version(self, key: str, *, max_versions: int = MAX_VERSIONS) -> None:
        """Delete every version and delete marker of ``key``, as ListObjectVersions lists them. Asking
        HEAD for the newest version, as :meth:`Bucket.erase_every_version` does, stops at a delete marker
        (a plain delete, or an erasure cut short, leaves one), while the versions behind it keep their data."""
        check_key(key)
        versions = self._versions_of(key, max_versions + 1)
        if len(versions) > max_versions:
            raise StorageError(f"{key} has more than {max_versions} versions; erase it by hand and rerun")
        for version_id in versions:
            self.delete(key, version_id=version_id)  # "null" too: S3 deletes the null version so, not marks it
        if self._versions_of(key, 1):
            raise StorageError(f"{key} is still in the bucket after deleting it")

    def _versions_of(self, key: str, most: int) -> list[str]:
        """The version ids (delete markers too) of ``key`` itself, at most ``most`` of them."""
        found: list[str] = []
        for version in self.iter_versions(key, page_size=min(max(most, 100), 1000)):
            if version.key == key:
                found.append(version.version_id)
                if len(found) >= most:
                    break
        return found

    def close(self) -> None:
        if self._botocore is not None:
            self._botocore.close()
        if self._http is not None:
            self._http.close()


def _parse_timestamp(value: Any) -> datetime:
    """S3's ISO 8601 timestamps (``2026-12-07T05:35:16.000Z``) with the C parser; anything else (HTTP dates
    in headers, epochs) as botocore parses it."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is not None:
                return parsed
    from botocore.utils import parse_timestamp

    result: datetime = parse_timestamp(value)
    return result


def _s3_http(bucket: str, endpoint_url: str | None, connect_timeout: float, read_timeout: float) -> S3Http | None:
    """The bucket's own signed requests (agent/storage/s3http.py), None where botocore alone knows how."""
    from bodycam.agent.storage.s3http import S3Http

    http = S3Http.for_bucket(bucket, endpoint_url, connect_timeout, read_timeout)
    if http is None:
        LOG.debug("requests to s3://%s go through botocore (its endpoint or credentials are botocore's)", bucket)
    return http


def _signed_requests(http: S3Http) -> tuple[SignedGet, SignedPut]:
    """The fast GET and part PUT, both on the bucket's one :class:`S3Http` (its signing target and pool)."""
    from bodycam.agent.storage.s3get import SignedGet
    from bodycam.agent.storage.s3put import SignedPut

    return SignedGet(http), SignedPut(http)


# Typed lazy accessors: agent/storage/s3get.py and s3put.py import botocore, so they are imported only once
# an S3 bucket is in use, and each accessor returns the very class or function mypy then checks calls to.
def _parts_page(body: bytes) -> Page:
    from bodycam.agent.storage.s3xml import parts_page

    return parts_page(body)


def _bad_content_length() -> type[BadContentLength]:
    from bodycam.agent.storage.s3get import BadContentLength

    return BadContentLength


def _info_fields() -> Callable[[dict[str, str]], dict[str, Any]]:
    from bodycam.agent.storage.s3get import info_fields

    return info_fields


def _error_of() -> Callable[[bytes], tuple[str, str]]:
    from bodycam.agent.storage.s3http import error_of

    return error_of


def _fields(body: bytes, root: str) -> dict[str, str] | None:
    """The fields of a small S3 answer whose root is ``root`` (agent/storage/s3xml.py), None when it is
    not one (an error inside a 200, a malformed answer): the caller asks botocore, as before."""
    from bodycam.agent.storage.s3xml import BadAnswer, parse

    try:
        return parse(body, root).fields
    except BadAnswer:
        return None


def _answer_timeout() -> type[BaseException]:
    from bodycam.agent.storage.s3http import AnswerTimeout

    return AnswerTimeout


def _read_errors() -> tuple[type[BaseException], ...]:
    from bodycam.agent.storage.s3get import READ_ERRORS

    return READ_ERRORS


class _Refused(Exception):
    """The cause of a refusal the bucket's own request was answered with (its code and HTTP status), as a
    ClientError is the cause of one botocore was answered with."""

    def __init__(self, code: str, status: int) -> None:
        super().__init__(f"{code or status}")
        self.code, self.status = code, status


def _transient(status: int, code: str) -> bool:
    """An answer botocore's ``standard`` retry mode sends the request again after."""
    return status >= 500 or status in (408, 429) or code in _TRANSIENT_CODES


def _most_pages(page_size: int) -> int:
    """The pages one listing of ``page_size`` entries a page may take: enough for
    :data:`MAX_LISTED_OBJECTS` objects and :data:`MAX_EMPTY_PAGES` empty pages."""
    return -(-MAX_LISTED_OBJECTS // max(page_size, 1)) + MAX_EMPTY_PAGES


class _Progress:
    """How far a listing went: the last :data:`TOKEN_WINDOW` tokens or markers it was given and its pages,
    so that a hostile endpoint can neither keep a reader listing for ever nor grow what it remembers. A
    token given again or :data:`MAX_EMPTY_PAGES` empty pages in a row: the listing does not move on; more
    pages than :func:`_most_pages`: it goes on without end. Either is an UploadError naming no key."""

    def __init__(self, failed: str, page_size: int) -> None:
        self.failed = failed  # "<action> <where> failed"
        self.most = _most_pages(page_size)
        self.recent: deque[tuple[str, ...]] = deque(maxlen=TOKEN_WINDOW)
        self.pages = self.empty = 0

    def moved_on(self, token: tuple[str, ...], listed: int) -> None:
        """A page of ``listed`` entries that says the listing goes on at ``token``."""
        self.pages += 1
        self.empty = 0 if listed else self.empty + 1
        if token in self.recent or self.empty >= MAX_EMPTY_PAGES:
            raise UploadError(f"{self.failed}: the listing does not move on; check that the endpoint is an S3 service")
        if self.pages >= self.most:
            raise UploadError(
                f"{self.failed}: the listing goes on past {self.most} pages ({MAX_LISTED_OBJECTS} objects); "
                "check that the endpoint is an S3 service"
            )
        self.recent.append(token)


def _request(
    method: str,
    full_key: str | None,
    query: Sequence[tuple[str, str]] = (),
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    payload: str | None = None,
) -> Request:
    from bodycam.agent.storage.s3http import Request

    return Request(method, full_key, query, headers, body, payload)


def _error_code(err: BaseException | None) -> str | None:
    """The S3 error code of a ClientError or of the bucket's own refusal, None for anything else
    (connection failures)."""
    if isinstance(err, _Refused):
        return err.code
    if "botocore.exceptions" not in sys.modules:
        return None
    from botocore.exceptions import ClientError

    if not isinstance(err, ClientError):
        return None
    return str(err.response.get("Error", {}).get("Code", ""))


# -- local directory ----------------------------------------------------------------------------------
def _copy_range(src: int, src_at: int, dst: int, dst_at: int, size: int) -> None:
    """Copy ``size`` bytes from ``src`` at ``src_at`` to ``dst`` at ``dst_at``, in the kernel where it can."""
    done = 0
    while done < size:
        try:
            n = os.copy_file_range(src, dst, min(size - done, 1 << 30), src_at + done, dst_at + done)
        except OSError as err:
            if err.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            chunk = os.pread(src, min(size - done, CHUNK), src_at + done)  # a filesystem without it
            n = os.pwrite(dst, chunk, dst_at + done) if chunk else 0
        if n == 0:
            raise OSError(errno.EIO, f"part ended {size - done} bytes early")
        done += n


def _fail(action: str, where: str, err: OSError) -> NoReturn:
    raise StorageError(f"{action} {where} failed: {err.strerror or err}") from err


class LocalBucket(Bucket):
    """A directory laid out like the bucket (the embedded default, ``file:///DIR``).

    Objects appear whole or not at all: bytes go to a temporary file under ``.uploads/``, are fsynced,
    then hard-linked into place (create-only: ``link(2)`` refuses an existing name) or renamed
    (overwrite). Multipart uploads live in ``.uploads/<upload_id>/`` (``key``, ``retain_until``; parts no
    longer than the stride, the first full part's size, written at their place in ``data``; others in
    ``NNNNN.part``; every stored part a checked line in the index ``parts``, agent/storage/partindex.py)
    until ``complete_upload`` joins them (:meth:`_assemble`). Checksums are kept in ``user.bodycam.*``
    extended attributes where the filesystem has them, so ``head`` reports them like S3.
    Object Lock has no local equivalent: ``retention_days`` is not applied here, and an upload's
    ``retain_until`` is only recorded (``user.bodycam.retain_until``; ``head`` reports it), not enforced.
    """

    def __init__(
        self, root: str | os.PathLike[str], *, read_only: bool = False, max_dir_entries: int | None = None
    ) -> None:
        """Open (and, unless ``read_only``, create) the bucket directory.

        ``read_only`` is for auditors: nothing is created or tidied, so ``verify`` runs on a read-only
        copy and leaves the evidence exactly as it found it; a missing directory is a ConfigError.
        ``max_dir_entries`` bounds the memory of a listing (each directory is sorted in memory): a
        directory with more entries makes ``iter_objects`` raise StorageError naming it.
        """
        self.root = Path(root)
        self.url = f"file://{self.root}"
        self.read_only = read_only
        self.max_dir_entries = max_dir_entries
        if read_only:
            if not self.root.is_dir():
                raise ConfigError(f"bucket.url {self.url}: no such directory")
        else:
            try:
                _make_dirs(self.root)
                _make_dirs(self.root / UPLOADS_DIR)
            except OSError as err:
                raise ConfigError(f"bucket.url {self.url}: cannot create the bucket directory: {err}") from err
        self._real_root = os.path.realpath(self.root)
        #: upload id -> (inode of its part index, the index parsed): reused while the file is unchanged
        self._indexes: dict[str, tuple[tuple[int, int, int], partindex.IndexState]] = {}
        if not read_only:
            self._sweep()

    def _sweep(self, older_than: float = 3600.0) -> None:
        """Remove temp files and half-started uploads a crash left in ``.uploads/`` (an hour old or more)."""
        import shutil

        cutoff = time.time() - older_than
        try:
            with os.scandir(self.root / UPLOADS_DIR) as it:
                for entry in it:
                    if entry.name.startswith(("tmp-", "new-")) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        if entry.is_dir(follow_symlinks=False):
                            shutil.rmtree(entry.path, ignore_errors=True)
                        else:
                            os.unlink(entry.path)
        except OSError as err:
            LOG.warning("%s: cannot tidy %s: %s", self.url, UPLOADS_DIR, err)

    # -- plumbing ---------------------------------------------------------------------------------
    def _writable(self) -> None:
        if self.read_only:
            raise StorageError(f"{self.url} was opened read-only (verify never writes into a bucket)")

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _inside(self, path: Path) -> None:
        real = os.path.realpath(path)
        if real != self._real_root and not real.startswith(self._real_root + os.sep):
            raise IntegrityError(f"{self.url}: {path} resolves outside the bucket directory (symlink?)")

    def _upload_dir(self, key: str, upload_id: str) -> Path:
        check_key(key)
        if not isinstance(upload_id, str) or not _UPLOAD_ID.fullmatch(upload_id):
            raise UploadNotFoundError(f"{self.url}: upload id {upload_id!r} of {key!r} does not exist")
        path = self.root / UPLOADS_DIR / upload_id
        try:
            stored = _read_small(path / "key", MAX_KEY_BYTES).decode("utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise UploadNotFoundError(
                f"{self.url}: upload {upload_id} of {key!r} does not exist (aborted or completed): start again"
            ) from err
        if stored != key:
            raise UploadNotFoundError(f"{self.url}: upload {upload_id} belongs to {stored!r}, not {key!r}")
        return path

    def _write_temp(
        self, directory: Path, chunks: Iterator[PartData], algorithm: str = "SHA256"
    ) -> tuple[Path, int, bytes]:
        """Write ``chunks`` to a new fsynced file in ``directory``; return (path, size, digest with
        ``algorithm``: the bytes are hashed as they are written, one pass)."""
        self._writable()
        tmp = directory / f"tmp-{secrets.token_hex(8)}"
        digest = _hasher(algorithm)
        size = 0
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp, size, digest.digest()

    def _install(self, tmp: Path, key: str, create_only: bool) -> None:
        """Move a finished temp file to ``key`` atomically; FileExistsError if create-only and taken."""
        dest = self._path(key)
        try:
            self._inside(dest.parent)  # before mkdir, which would follow a symlink out of the bucket
            try:
                _make_dirs(dest.parent)
            except (FileExistsError, NotADirectoryError) as err:
                raise StorageError(f"{self.url}: cannot store {key!r}: a leading part of it is an object") from err
            self._inside(dest.parent)
            if create_only:
                os.link(tmp, dest, follow_symlinks=False)
                tmp.unlink()
            else:
                os.replace(tmp, dest)
            _fsync_dir(dest.parent)
        finally:
            tmp.unlink(missing_ok=True)

    def _stat_info(self, key: str, st: os.stat_result, path: Path) -> ObjectInfo:
        sha_hex = _getxattr(path, _XATTR_SHA256)
        composite = _getxattr(path, _XATTR_CHECKSUM)
        if sha_hex:
            etag = f'"{sha_hex}"'
        elif composite and "-" in composite:  # multipart: like S3's "-N" etags
            digest, _, count = composite.partition("-")
            etag = f'"{_b64_digest(digest).hex()}-{count}"'
        else:
            etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
        return ObjectInfo(
            key=key,
            size=st.st_size,
            etag=etag,
            checksum=_getxattr(path, _XATTR_CHECKSUM),
            sha256_hex=sha_hex,
            last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
            retain_until=_parse_iso_z(_getxattr(path, _XATTR_RETAIN_UNTIL)),
        )

    def _exists_error(self, key: str, size: int, checksum: str, parts: Sequence[Part] = ()) -> ObjectInfo:
        existing = self._holding(key, size, checksum, parts)
        if existing is not None:
            return existing
        raise ObjectExistsError(f"{self.url}: object {key!r} already exists with other content", self.head(key))

    def _holding(self, key: str, size: int, checksum: str, parts: Sequence[Part] = ()) -> ObjectInfo | None:
        """The object at ``key`` when it holds what was meant: that size and checksum (a multipart one's
        composite of ``parts``). Where the filesystem keeps no xattrs the checksum was not stored, so it is
        computed from the object's bytes: a write or a completion repeated after a crash finds its own
        object instead of refusing it for good, or taking the upload for lost and storing it twice."""
        existing = self.head(key)
        if existing is None or existing.size != size:
            return None
        if existing.checksum is None:
            try:
                existing = replace(existing, checksum=self._checksum_of(key, checksum, parts))
            except (OSError, UploadError):
                return None
        return existing if _matches(existing, size, checksum) else None

    def _checksum_of(self, key: str, like: str, parts: Sequence[Part]) -> str:
        """The checksum of the object's bytes in the form of ``like``: a composite over ``parts``' sizes, or
        the whole object's SHA-256."""
        path = self._path(key)
        if "-" not in like or not parts:
            return _hash_range(path, 0, path.stat().st_size, "SHA256")
        algorithm = checksum_algorithm(_require_checksum(parts[0]))
        held, offset = [], 0
        for p in parts:
            held.append(Part(p.number, p.etag, _hash_range(path, offset, p.size, algorithm), p.size))
            offset += p.size
        return composite_checksum(held)

    # -- multipart --------------------------------------------------------------------------------
    def part_buffer(self, size: int) -> PartBuffer:
        """Anonymous memory, page-aligned, so :meth:`_store` can write a part with ``O_DIRECT``."""
        return mmap.mmap(-1, max(size, 1))

    def start_upload(self, key: str, *, retain_until: float | None = None) -> str:
        """A new upload directory with its ``key``, an empty ``data`` file and an empty part index, made
        whole in a staging directory and renamed into place: no part ever creates a file or a name."""
        import shutil

        self._writable()
        check_key(key)
        upload_id = secrets.token_hex(16)
        staging = self.root / UPLOADS_DIR / f"new-{upload_id}"
        try:
            staging.mkdir(DIR_MODE)
            tmp, _, _ = self._write_temp(staging, iter([key.encode("utf-8")]))
            os.rename(tmp, staging / "key")
            if retain_until is not None:
                tmp, _, _ = self._write_temp(staging, iter([iso_utc(retain_until, "seconds").encode("ascii")]))
                os.rename(tmp, staging / "retain_until")
            for name in (_UPLOAD_DATA, _UPLOAD_INDEX):
                os.close(os.open(staging / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
            _fsync_dir(staging)
            os.rename(staging, self.root / UPLOADS_DIR / upload_id)
            _fsync_dir(self.root / UPLOADS_DIR)
        except OSError as err:
            shutil.rmtree(staging, ignore_errors=True)
            _fail("start upload of", f"{self.url} {key!r}", err)
        return upload_id

    def upload_part(
        self, key: str, upload_id: str, part_number: int, data: PartData, *, checksum: str | None = None
    ) -> Part:
        """Check the part against ``checksum`` (one pass over its bytes, before any is written), write it
        once where the object needs it, then record it: one data write and fdatasync, one index line and
        fdatasync (:mod:`bodycam.agent.storage.partindex`)."""
        _check_part_number(part_number)
        udir = self._upload_dir(key, upload_id)
        algorithm = PART_CHECKSUM if checksum is None else checksum_algorithm(checksum)
        digest = _hasher(algorithm)
        digest.update(data)
        raw = digest.digest()
        actual = base64.b64encode(raw).decode("ascii")
        if checksum is not None and checksum != actual:
            raise ChecksumMismatchError(
                f"{self.url}: part {part_number} of {key!r}: {algorithm} {checksum} sent, bytes are {actual}"
            )
        try:
            with self._index(udir, key, exclusive=True) as (fd, state):
                self._store(udir, fd, state, part_number, data, actual)
        except OSError as err:
            _fail(f"upload part {part_number} of", f"{self.url} {key!r}", err)
        return Part(part_number, f'"{raw.hex()}"', actual, len(data))

    def _store(
        self, udir: Path, fd: int, state: partindex.IndexState, number: int, data: PartData, checksum: str
    ) -> None:
        """Write a checked part and append its record, under the index's lock.

        The first part of at least the minimum part size sets the stride (recorded with it); a part no
        longer than the stride goes to ``(number - 1) x stride`` in ``data`` (the short last part too), any
        other to a file of its own. Bytes a valid record describes are never changed under it: a part sent
        again to the same place with other bytes is first dropped from the index (a record of its own,
        fdatasynced), so a crash in the middle of the rewrite leaves it unlisted, to be sent again, not
        listed with bytes that are half another's; the same bytes sent again (a retry, a resumed pass) are
        rewritten under their record, which stays true throughout. Bytes are durable before the record
        that describes them is appended.
        """
        from bodycam.agent.storage import partindex

        size, stride, records = len(data), state.stride, b""
        if stride is None and size >= self.min_part_size:
            stride = size
            records += partindex.stride_record(size)
        offset = None if stride is None or size > stride else (number - 1) * stride
        old = state.parts.get(number)
        record = partindex.PartRecord(number, size, offset, checksum)
        if old is not None and old != record and (old.offset is None) == (offset is None):
            self._append(fd, state, partindex.drop_record(number))
        name = f"{number:05d}.part"
        if offset is None:
            tmp = udir / f"tmp-{secrets.token_hex(8)}"
            try:
                _write_file(tmp, data)
                os.replace(tmp, udir / name)
            finally:
                tmp.unlink(missing_ok=True)
            _fsync_dir(udir)  # the only part that makes a name: a short part 1 (no stride), an odd size
        else:
            out = _open_data(udir, os.O_WRONLY)
            try:
                with memoryview(data) as view:
                    _write_at(out, view, offset)
                os.fdatasync(out)
            finally:
                os.close(out)
        if old != record:  # the same bytes sent again to the same place: the record stands as it was
            self._append(fd, state, records + partindex.part_record(record))
        if old is not None and old.offset is None and offset is not None:
            (udir / name).unlink(missing_ok=True)  # its own file, superseded by the record just made durable

    @staticmethod
    def _append(fd: int, state: partindex.IndexState, records: bytes) -> None:
        """Append ``records`` to the index in one write (``O_APPEND``), make them durable, then apply them."""
        done = 0
        while done < len(records):
            done += os.write(fd, records[done:])
        os.fdatasync(fd)
        state.apply(records)

    @contextlib.contextmanager
    def _index(self, udir: Path, key: str, *, exclusive: bool) -> Iterator[tuple[int, partindex.IndexState]]:
        """The upload's part index, open for appending and locked (``flock``: every thread and process
        writing a part of this upload takes its turn; readers share), and what it says.

        A writer cuts off what does not check (a torn last record, a damaged tail) before it appends, so
        its records follow whole ones. An upload an older agent began (side files per part, no index) is
        converted first (:meth:`_migrate`). The parsed state is kept per upload id and reused while the
        file is the one it was parsed from or last appended to (inode, length, mtime): one ``fstat`` per
        part, not a parse.
        """
        path = udir / _UPLOAD_INDEX
        try:
            try:
                fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW)
            except FileNotFoundError:
                self._migrate(udir, key)
                fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError as err:
            raise UploadNotFoundError(
                f"{self.url}: upload {udir.name} of {key!r} does not exist (aborted or completed): start again"
            ) from err
        except OSError as err:
            _fail("open the part index of", f"{self.url} {key!r}", err)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            state = self._load(udir, fd, key, repair=exclusive)
            yield fd, state
            if exclusive and not state.damaged:  # the records this writer appended: the cache follows
                self._remember(udir.name, os.fstat(fd), state)
        finally:
            os.close(fd)

    def _load(self, udir: Path, fd: int, key: str, *, repair: bool) -> partindex.IndexState:
        from bodycam.agent.storage import partindex

        st = os.fstat(fd)
        cached = self._indexes.get(udir.name)
        if cached is not None and cached[0] == (st.st_ino, st.st_size, st.st_mtime_ns):
            return cached[1]
        if st.st_size > partindex.MAX_INDEX_BYTES:
            raise StorageError(
                f"{self.url}: the part index of the upload of {key!r} ({udir / _UPLOAD_INDEX}) is larger than "
                f"{partindex.MAX_INDEX_BYTES} bytes; abort the upload (it will start again)"
            )
        raw = bytearray()
        while len(raw) < st.st_size and (chunk := os.pread(fd, st.st_size - len(raw), len(raw))):
            raw += chunk
        state = partindex.parse(bytes(raw))
        self._unlist_missing(udir, key, state)
        if state.damaged:
            LOG.warning("%s: the part index of %s ends in %d bytes that do not check (a crash while appending, "
                        "or damage): the parts recorded there will be sent again", self.url, key, state.damaged)  # fmt: skip
            if not repair:
                return state
            os.ftruncate(fd, state.valid_end)
            os.fdatasync(fd)
            state.damaged = 0
            st = os.fstat(fd)
        self._remember(udir.name, st, state)
        return state

    def _remember(self, upload_id: str, st: os.stat_result, state: partindex.IndexState) -> None:
        """Keep ``state`` as what the index file ``st`` describes (only when it describes all of it)."""
        if st.st_size != state.valid_end:
            self._indexes.pop(upload_id, None)
            return
        if len(self._indexes) >= 256:  # bounded: one entry per upload in flight, but never more
            self._indexes.clear()
        self._indexes[upload_id] = ((st.st_ino, st.st_size, st.st_mtime_ns), state)

    def _unlist_missing(self, udir: Path, key: str, state: partindex.IndexState) -> None:
        """Leave out of ``state`` a part whose record checks but whose bytes are not all there (``data``
        shorter than its place and size, its own file missing or of another size): the file was cut or
        lost after the record was written, which no crash does (bytes are durable first). Listed, it would
        not be sent again, and completing would fail, or (before) fill its place with zeros. One ``stat``
        when the index is parsed, not per part: the pipeline then sends the part again."""
        try:
            held = os.stat(udir / _UPLOAD_DATA).st_size
        except OSError:
            held = 0
        for record in list(state.parts.values()):
            if record.offset is not None:
                there = record.offset + record.size <= held
            else:
                try:
                    there = os.stat(self._part_source(udir, record)[0]).st_size == record.size
                except OSError:
                    there = False
            if not there:
                LOG.warning("%s: part %d of %s is recorded but its bytes are not all there: it will be sent again",
                            self.url, record.number, key)  # fmt: skip
                del state.parts[record.number]

    def _migrate(self, udir: Path, key: str) -> None:
        """Convert an upload an older agent began into an indexed one, once: its ``stride`` file and each
        part's ``NNNNN.placed`` (or own ``NNNNN.part``) and ``NNNNN.checksum`` (or ``.sha256``) side files
        become records, a part without a checksum file is hashed from its bytes, one that cannot be read is
        left out (sent again). The index appears whole (a temp file, fsynced, linked into place), then the
        side files go: nothing reads them again. FileNotFoundError when the upload itself is gone."""
        from bodycam.agent.storage import partindex

        self._writable()
        if not (udir / "key").exists():
            raise FileNotFoundError(errno.ENOENT, "no such upload", str(udir))
        stride: int | None = None
        records = b""
        with contextlib.suppress(OSError, ValueError):
            stride = int(_read_small(udir / "stride", 20))
            records += partindex.stride_record(stride)
        names = sorted({n[:5] for n in os.listdir(udir) if re.fullmatch(r"\d{5}\.(part|placed)", n)})
        for name in names:
            try:
                records += partindex.part_record(self._legacy_part(udir, int(name), stride))
            except (OSError, ValueError) as err:
                LOG.warning("%s: part %s of %s in an older agent's layout is unreadable (%s): it will be sent "
                            "again", self.url, int(name), key, err)  # fmt: skip
        data = udir / _UPLOAD_DATA
        if not data.exists():
            os.close(os.open(data, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
        tmp = udir / f"tmp-{secrets.token_hex(8)}"
        try:
            _write_file(tmp, records)
            with contextlib.suppress(FileExistsError):  # another writer converted it first: theirs stands
                os.link(tmp, udir / _UPLOAD_INDEX)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(udir)
        LOG.info("%s: converted the upload of %s begun by an older agent (%d parts)", self.url, key, len(names))
        for entry in os.listdir(udir):
            if entry == "stride" or re.fullmatch(r"\d{5}\.(placed|checksum|sha256)", entry):
                (udir / entry).unlink(missing_ok=True)

    def _legacy_part(self, udir: Path, number: int, stride: int | None) -> partindex.PartRecord:
        """A part as an older agent stored it (its own file, or a place in ``data`` named by ``.placed``)."""
        from bodycam.agent.storage import partindex

        own = udir / f"{number:05d}.part"
        if own.exists():
            size, offset, source, at = own.stat().st_size, None, own, 0
        elif stride is None:
            raise ValueError("placed, but no stride")
        else:
            size = int(_read_small(udir / f"{number:05d}.placed", 20))
            if not 0 <= size <= stride:
                raise ValueError(f"placed with {size} bytes, beyond the stride of {stride}")
            offset = (number - 1) * stride
            source, at = udir / _UPLOAD_DATA, offset
        for sidecar in ("checksum", "sha256"):
            with contextlib.suppress(OSError, UnicodeDecodeError):
                checksum = _read_small(udir / f"{number:05d}.{sidecar}", 64).decode("ascii").strip()
                return partindex.PartRecord(number, size, offset, checksum)
        return partindex.PartRecord(number, size, offset, _hash_range(source, at, size, PART_CHECKSUM))

    def list_parts(self, key: str, upload_id: str) -> list[Part]:
        udir = self._upload_dir(key, upload_id)
        try:
            with self._index(udir, key, exclusive=False) as (_, state):
                records = sorted(state.parts.values(), key=lambda r: r.number)
        except OSError as err:
            _fail("list parts of", f"{self.url} {key!r}", err)
        return [Part(r.number, f'"{_b64_digest(r.checksum).hex()}"', r.checksum, r.size) for r in records]

    def complete_upload(self, key: str, upload_id: str, parts: Sequence[Part]) -> ObjectInfo:
        import shutil

        check_key(key)
        _check_parts(parts, self.min_part_size)
        size = sum(p.size for p in parts)
        checksum = composite_checksum(parts)
        try:
            udir = self._upload_dir(key, upload_id)
        except UploadNotFoundError:
            existing = self._holding(key, size, checksum, parts)  # completed by an earlier attempt?
            if existing is not None:
                return existing
            raise
        try:
            with self._index(udir, key, exclusive=True) as (fd, state):  # no part changes while it is joined
                self._check_stored(udir, fd, key, parts, state)
                if self.head(key) is not None:
                    existing = self._exists_error(key, size, checksum, parts)
                    shutil.rmtree(udir, ignore_errors=True)
                    return existing
                tmp = self._assemble(udir, key, parts, state)
                _setxattr(tmp, _XATTR_CHECKSUM, checksum)
                with contextlib.suppress(OSError, UnicodeDecodeError):
                    _setxattr(tmp, _XATTR_RETAIN_UNTIL, _read_small(udir / "retain_until", 40).decode("ascii"))
                try:
                    self._install(tmp, key, create_only=True)
                except FileExistsError:
                    existing = self._exists_error(key, size, checksum, parts)
                    shutil.rmtree(udir, ignore_errors=True)
                    return existing
                shutil.rmtree(udir, ignore_errors=True)
                self._indexes.pop(upload_id, None)
            _fsync_dir(self.root / UPLOADS_DIR)
        except OSError as err:
            _fail("complete upload of", f"{self.url} {key!r}", err)
        info = self.head(key)
        if info is None:
            raise StorageError(f"{self.url}: object {key!r} vanished right after completing")
        return ObjectInfo(key=key, size=info.size, etag=info.etag, checksum=checksum, last_modified=info.last_modified)

    def _check_stored(self, udir: Path, fd: int, key: str, parts: Sequence[Part], state: partindex.IndexState) -> None:
        """Each listed part is stored, with its size, ETag and checksum (S3's InvalidPart / BadDigest).

        The checksum is the record's, the one the part was checked against as it was written; only a part
        list in another algorithm than the stored part's (not something the pipeline sends) is hashed again.
        A listed part without a record (its line lost to a damaged index) is looked for where it would
        stand and taken, recorded again, if its bytes there have the checksum listed (:meth:`_found`)."""
        first = parts[0].size if parts and parts[0].size >= self.min_part_size else None
        for p in parts:
            record = state.parts.get(p.number) or self._found(udir, fd, state, p, state.stride or first)
            if record is None:
                raise UploadError(f"{self.url}: part {p.number} of {key!r} was never uploaded")
            stored = record.checksum
            wanted = checksum_algorithm(_require_checksum(p))
            if checksum_algorithm(stored) != wanted:
                source, at = self._part_source(udir, record)
                stored = _hash_range(source, at, record.size, wanted)
            if (f'"{_b64_digest(stored).hex()}"', record.size) != (p.etag, p.size):
                raise UploadError(f"{self.url}: part {p.number} of {key!r} does not match the stored part")
            if stored != p.checksum:
                raise ChecksumMismatchError(f"{self.url}: part {p.number} of {key!r}: checksum differs")

    def _found(
        self, udir: Path, fd: int, state: partindex.IndexState, part: Part, stride: int | None
    ) -> partindex.PartRecord | None:
        """The record of a part the completion lists but the index does not, if its bytes are where the
        part would stand (its place in ``data`` by the stride, the first listed part's size when the
        index lost that too, or its own file) and have the listed checksum; the record is appended again.
        A part listed is one the journal holds, so the bucket acknowledged it: only a damaged index loses
        its line, and this lets a recording in ``completing`` finish without its camera, as the old layout
        did by hashing a part whose checksum file was lost."""
        from bodycam.agent.storage import partindex

        if not part.checksum:
            return None
        places: list[tuple[Path, int, int | None]] = [(udir / f"{part.number:05d}.part", 0, None)]
        if stride is not None and part.size <= stride:
            at = (part.number - 1) * stride
            places.insert(0, (udir / _UPLOAD_DATA, at, at))
        for path, at, offset in places:
            try:
                if path.name != _UPLOAD_DATA and path.stat().st_size != part.size:
                    continue
                if _hash_range(path, at, part.size, checksum_algorithm(part.checksum)) != part.checksum:
                    continue
            except OSError:
                continue
            record = partindex.PartRecord(part.number, part.size, offset, part.checksum)
            lost = offset is not None and stride is not None and state.stride is None  # the stride's line too
            self._append(
                fd, state, (partindex.stride_record(stride) if lost and stride else b"") + partindex.part_record(record)
            )
            LOG.warning("%s: part %d of %s was missing from its index; found by its checksum", self.url,
                        part.number, udir.name)  # fmt: skip
            return record
        return None

    @staticmethod
    def _part_source(udir: Path, record: partindex.PartRecord) -> tuple[Path, int]:
        """(file, offset) of a stored part's bytes: its place in ``data``, or its own file."""
        if record.offset is None:
            return udir / f"{record.number:05d}.part", 0
        return udir / _UPLOAD_DATA, record.offset

    def _assemble(self, udir: Path, key: str, parts: Sequence[Part], state: partindex.IndexState) -> Path:
        """The parts joined into a new fsynced temp file: no pass through Python, no hashing.

        Where the parts in ``data`` already stand where the object needs them (parts 1..n-1 of the stride,
        the last one no longer: what the pipeline sends), ``data`` itself becomes the object (a hard link,
        so a failed install leaves the upload whole), after any part with a file of its own is copied into
        its place and the file cut to the object's size; otherwise every part is copied into a new file by
        the kernel (``copy_file_range``: a reflink where the filesystem shares extents). ``data`` is changed
        in place only when every part it holds is in the list, so no record still describes bytes changed.

        Each part was checksummed once, as it was written, against the checksum its sender computed;
        hashing it again here (and the whole object on top) made the local bucket read every byte back
        and hash it twice more (issue 14). Like S3, a multipart object then has its composite checksum,
        not a whole-object SHA-256; the manifest's ciphertext SHA-256 is what ``verify`` checks it against.
        """
        self._writable()
        sources = []
        offset = 0
        for p in parts:
            record = state.parts[p.number]
            if record.size != p.size:
                raise ChecksumMismatchError(f"{self.url}: stored part {p.number} of {key!r} changed size")
            source, at = self._part_source(udir, record)
            sources.append((p, record, source, at, offset))
            offset += p.size
        listed = {p.number for p in parts}
        in_place = all(r.offset is None or r.offset == dest for _, r, _, _, dest in sources) and all(
            r.offset is None or r.number in listed for r in state.parts.values()
        )
        tmp = udir / f"tmp-{secrets.token_hex(8)}"
        try:
            if in_place:
                fd = _open_data(udir, os.O_RDWR)
            else:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                if in_place:
                    self._check_held(fd, key, [r for _, r, _, _, _ in sources])
                for p, record, source, at, dest in sources:
                    if in_place and record.offset is not None:
                        continue
                    with open(source, "rb") as src:
                        if record.offset is None and os.fstat(src.fileno()).st_size != p.size:
                            raise ChecksumMismatchError(f"{self.url}: stored part {p.number} of {key!r} changed size")
                        _copy_range(src.fileno(), at, fd, dest, p.size)
                held = os.fstat(fd).st_size
                if in_place and held < offset:  # the parts' bytes are not all there (the file was cut)
                    raise ChecksumMismatchError(
                        f"{self.url}: the stored parts of {key!r} are {offset - held} bytes short"
                    )
                if held != offset:
                    os.ftruncate(fd, offset)
                os.fsync(fd)
            finally:
                os.close(fd)
            if in_place:
                os.link(udir / _UPLOAD_DATA, tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def _check_held(self, fd: int, key: str, records: Sequence[partindex.PartRecord]) -> None:
        """``data`` (open as ``fd``) holds every placed part's bytes: else the cut below to the object's
        size would lengthen it with zeros, and an object missing a part would be installed, its composite
        checksum (from the records) none the wiser. Checked before a part in a file of its own is copied
        in after them (an older agent's short last part), which would lengthen ``data`` over the hole."""
        held = os.fstat(fd).st_size
        for r in records:
            if r.offset is not None and r.offset + r.size > held:
                raise ChecksumMismatchError(
                    f"{self.url}: stored part {r.number} of {key!r} is {r.offset + r.size - held} bytes short "
                    "(its file was cut after it was written); the object was not made"
                )

    def abort_upload(self, key: str, upload_id: str) -> None:
        import shutil

        self._writable()
        try:
            udir = self._upload_dir(key, upload_id)
        except UploadNotFoundError:
            return
        self._indexes.pop(upload_id, None)
        try:
            shutil.rmtree(udir)
        except FileNotFoundError:
            pass
        except OSError as err:
            _fail("abort upload of", f"{self.url} {key!r}", err)

    def open_uploads(self, prefix: str = "", *, page_size: int = 1000) -> list[PendingUpload]:
        _check_prefix(prefix)
        out: list[PendingUpload] = []
        try:
            entries = sorted(os.scandir(self.root / UPLOADS_DIR), key=lambda e: e.name)
        except OSError as err:
            _fail("list uploads in", self.url, err)
        for entry in entries:
            if not _UPLOAD_ID.fullmatch(entry.name):
                continue
            try:
                key = check_key(_read_small(Path(entry.path) / "key", MAX_KEY_BYTES).decode("utf-8"))
                st = os.stat(Path(entry.path) / "key")
            except (OSError, UnicodeDecodeError, IntegrityError) as err:
                LOG.warning("%s: skipping unreadable upload %s: %s", self.url, entry.name, err)
                continue
            if key.startswith(prefix):
                out.append(PendingUpload(key, entry.name, datetime.fromtimestamp(st.st_mtime, UTC)))
        out.sort(key=lambda u: (u.key, u.upload_id))
        return out

    # -- objects ----------------------------------------------------------------------------------
    def put_object(
        self, key: str, data: bytes, *, create_only: bool = True, sha256_b64: str | None = None, retain: bool = True
    ) -> ObjectInfo:
        check_key(key)
        digest = hashlib.sha256(data).digest()
        checksum = base64.b64encode(digest).decode("ascii")
        if sha256_b64 is not None and sha256_b64 != checksum:
            raise ChecksumMismatchError(f"{self.url}: put {key!r}: SHA-256 {sha256_b64} sent, bytes are {checksum}")
        if create_only and self.head(key) is not None:
            return self._exists_error(key, len(data), checksum)
        try:
            tmp, _, digest = self._write_temp(self.root / UPLOADS_DIR, iter([data]))
            sha_hex = digest.hex()
            _setxattr(tmp, _XATTR_SHA256, sha_hex)
            _setxattr(tmp, _XATTR_CHECKSUM, checksum)
            try:
                self._install(tmp, key, create_only)
            except FileExistsError:
                return self._exists_error(key, len(data), checksum)
            st = self._path(key).stat()
        except OSError as err:
            _fail("put", f"{self.url} {key!r}", err)
        return ObjectInfo(
            key=key, size=len(data), etag=f'"{sha_hex}"', checksum=checksum, sha256_hex=sha_hex,
            last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
        )  # fmt: skip

    def head(self, key: str, *, version_id: str | None = None) -> ObjectInfo | None:
        path = self._path(key)
        if version_id is not None:
            return None  # a local bucket keeps no versions
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as err:
            _fail("head", f"{self.url} {key!r}", err)
        if not stat.S_ISREG(st.st_mode):
            return None
        self._inside(path.parent)
        return self._stat_info(key, st, path)

    def iter_objects(self, prefix: str = "", *, page_size: int = 1000) -> Iterator[ObjectInfo]:
        _check_prefix(prefix)
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / base if base else self.root
        try:
            self._inside(start)
            if not stat.S_ISDIR(os.lstat(start).st_mode):
                return
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as err:
            _fail("list objects in", self.url, err)
        # Depth-first over sorted entries; a directory sorts as "name/" so the order is S3's key order.
        stack: list[Iterator[tuple[str, os.DirEntry[str]]]] = [self._sorted_dir(start, f"{base}/" if base else "")]
        while stack:
            item = next(stack[-1], None)
            if item is None:
                stack.pop()
                continue
            key, entry = item
            try:
                if entry.is_dir(follow_symlinks=False):
                    if (key + "/").startswith(prefix) or prefix.startswith(key + "/"):
                        stack.append(self._sorted_dir(Path(entry.path), key + "/"))
                elif entry.is_file(follow_symlinks=False) and key.startswith(prefix):
                    st = entry.stat(follow_symlinks=False)
                    yield self._stat_info(key, st, Path(entry.path))
            except OSError as err:
                _fail("list objects in", f"{self.url} {key!r}", err)

    def _sorted_dir(self, path: Path, key_prefix: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
        limit = self.max_dir_entries
        try:
            with os.scandir(path) as it:
                entries = []
                for e in it:
                    if not (not key_prefix and e.name == UPLOADS_DIR):
                        entries.append(e)
                        if limit is not None and len(entries) > limit:
                            raise StorageError(
                                f"{self.url}: directory {key_prefix or '/'!r} holds more than {limit} entries"
                            )
        except OSError as err:
            _fail("list objects in", f"{self.url} {key_prefix!r}", err)
        entries.sort(key=lambda e: e.name + "/" if e.is_dir(follow_symlinks=False) else e.name)
        return ((key_prefix + e.name, e) for e in entries)

    def open_read(self, key: str, *, version_id: str | None = None) -> ObjectReader:
        path = self._path(key)
        if version_id is not None:
            raise ObjectNotFoundError(f"{self.url}: {key!r} version {version_id}: a local bucket keeps no versions")
        try:
            self._inside(path.parent)
            # O_NONBLOCK: a named pipe planted in the bucket would block this open until a writer came
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except (FileNotFoundError, NotADirectoryError) as err:
            raise ObjectNotFoundError(f"{self.url}: object {key!r} does not exist") from err
        except OSError as err:
            _fail("read", f"{self.url} {key!r}", err)
        f = os.fdopen(fd, "rb", buffering=0)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            f.close()
            raise ObjectNotFoundError(f"{self.url}: {key!r} is not an object")
        os.set_blocking(fd, True)
        where = f"{self.url} {key!r}"

        def read(size: int) -> bytes:
            return f.read(size) or b""

        def wrap(err: BaseException) -> BodycamError:
            return StorageError(f"reading {where} failed: {err}")

        return ObjectReader(self._stat_info(key, st, path), read, f.close, wrap)

    def delete(self, key: str, *, version_id: str | None = None) -> None:
        self._writable()
        path = self._path(key)
        try:
            self._inside(path.parent)
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as err:
            _fail("delete", f"{self.url} {key!r}", err)
        parent = path.parent  # drop directories the delete left empty, as S3 has none
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent


def _parse_iso_z(text: str | None) -> datetime | None:
    if not text or len(text) > 40:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


#: the local bucket's directories: narrowed by the umask, never widened (umask 000 made them 0777, so any
#: local user could rename an upload's data or a verified object away and put other bytes in its place)
DIR_MODE = 0o755


def _make_dirs(path: Path) -> None:
    """``mkdir -p`` with each directory made DIR_MODE, narrowed by the umask and never widened
    (:func:`~bodycam.drivers.files.make_dirs`)."""
    make_dirs(path, DIR_MODE, exact=False)


def _read_small(path: Path, limit: int) -> bytes:
    """A file we wrote ourselves, read with a bound in case someone else did (OSError if larger)."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OSError(f"{path} is larger than {limit} bytes")
    return data


def _open_data(udir: Path, mode: int) -> int:
    """The upload's ``data`` file, made again (empty, its name made durable) when it was lost: damage, as
    no crash removes it. Its parts were then left out when the index was read (``_unlist_missing``) and
    are sent again; without this every part of the upload failed for good (ENOENT), none ever resent."""
    try:
        return os.open(udir / _UPLOAD_DATA, mode | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        fd = os.open(udir / _UPLOAD_DATA, mode | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        try:
            _fsync_dir(udir)
        except OSError:
            os.close(fd)
            raise
        return fd


def _write_file(path: Path, data: PartData) -> None:
    """A new file holding ``data``, fsynced (O_EXCL: never one that exists)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        with memoryview(data) as view:
            done = 0
            while done < len(view):
                done += os.write(fd, view[done:])
        os.fsync(fd)
    finally:
        os.close(fd)


def _hash_range(path: Path, offset: int, size: int, algorithm: str) -> str:
    """The base64 ``algorithm`` digest of ``size`` bytes of ``path`` from ``offset`` (a part read back:
    only for an older agent's part without its checksum file, or a part list in another algorithm)."""
    digest = _hasher(algorithm)
    with open(path, "rb") as f:
        f.seek(offset)
        left = size
        while left > 0 and (chunk := f.read(min(CHUNK, left))):
            digest.update(chunk)
            left -= len(chunk)
    if left:
        raise OSError(errno.EIO, f"{path}: part ends {left} bytes early")
    return base64.b64encode(digest.digest()).decode("ascii")


def _write_at(fd: int, view: memoryview, offset: int) -> None:
    """Write ``view`` at ``offset``: past the page cache (``O_DIRECT``) when its memory, offset and length
    are page-aligned (a part from :meth:`LocalBucket.part_buffer`), else through it.

    Why: copying a part into the page cache cost the daemon's bay workers more CPU than encrypting it
    (2-2.6 s/GiB on ext4 in a VM, fresh pages faulted in one by one; issue 14, docs/decisions.md); a
    direct write hands the device the part buffer itself. The fsync that follows is unchanged, so the
    part is as durable as before. A filesystem that refuses ``O_DIRECT`` (EINVAL) gets a buffered write.
    """
    done = 0
    if _aligned(view, offset):
        try:
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT)
            try:
                while done < len(view):
                    done += os.pwrite(fd, view[done:], offset + done)
            finally:
                fcntl.fcntl(fd, fcntl.F_SETFL, flags)
        except OSError as err:
            if err.errno != errno.EINVAL:
                raise
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)


def _aligned(view: memoryview, offset: int) -> bool:
    """True when ``view``'s memory, ``offset`` and length are all multiples of :data:`DIRECT_ALIGN`."""
    if offset % DIRECT_ALIGN or len(view) % DIRECT_ALIGN or not len(view) or view.readonly:
        return False
    import ctypes  # here, not at the top: the CLI's start-up never needs it (tests/test_startup.py)

    try:
        address = ctypes.addressof(ctypes.c_char.from_buffer(view))
    except (TypeError, ValueError):  # not a contiguous writable buffer
        return False
    return address % DIRECT_ALIGN == 0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _setxattr(path: Path, name: str, value: str) -> None:
    try:
        os.setxattr(path, name, value.encode("ascii"), follow_symlinks=False)
    except OSError as err:  # filesystem without user xattrs: checksums are then simply not reported
        LOG.debug("no xattr %s on %s: %s", name, path, err)


def _getxattr(path: Path, name: str) -> str | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False).decode("ascii")
    except (OSError, UnicodeDecodeError):
        return None
