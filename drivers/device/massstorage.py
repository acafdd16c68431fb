"""Cameras that mount as a disk (USB mass storage) with sidecar metadata (docs/mass-storage.md).

A :class:`MassStorageCamera` offers the operations of :class:`~bodycam.drivers.device.camera.Camera` that a
docking session uses (``open``, ``identity``, ``authenticate``, ``set_clock``, ``recordings``,
``iter_read``, ``erase``, ``close``), so the pipeline treats both alike. The camera's firmware writes
``BODYCAM/device.json``, ``BODYCAM/index.json`` and its Ed25519 signature ``BODYCAM/index.json.sig``;
the recordings live under ``DCIM/``.

A volume is as untrusted as bytes on the wire, and is bounded the same way: every value read from it
passes the limits of :mod:`~bodycam.drivers.protocol.messages` (text rules, serial alphabet, sizes, counts,
times), JSON files are size-capped, and a file is reached only by walking the volume one path
component at a time with ``O_NOFOLLOW`` from a descriptor of the mount point, so no symbolic link,
``..`` or other filesystem takes the dock outside the volume.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bodycam.drivers.device.api import CameraDevice, ClockReading
from bodycam.drivers.device.camera import MAX_LEND, check_enrolment
from bodycam.drivers.errors import (
    AuthenticationError,
    BodycamError,
    DeviceError,
    DisconnectedError,
    IntegrityError,
    ProtocolError,
)
from bodycam.drivers.protocol import dockauth as da
from bodycam.drivers.protocol import messages as m
from bodycam.drivers.protocol.frames import Status
from bodycam.drivers.strictjson import JSONObject, JSONValue, parse_json

LOG = logging.getLogger(__name__)

KIND = "mass-storage"
LAYOUT_VERSION = 1
META_DIR = "BODYCAM"
DATA_DIR = "DCIM"
DEVICE_FILE = "device.json"
INDEX_FILE = "index.json"
SIGNATURE_FILE = "index.json.sig"
ERASED_FILE = "erased.json"
INDEX_CONTEXT = b"bodycam-index-v1\x00"

# -- hard limits (docs/mass-storage.md §Limits) ----------------------------------------------
MAX_DEVICE_JSON = 4 * 1024
MAX_INDEX_JSON = 16 * 1024 * 1024
MAX_ERASED_JSON = 8 * 1024 * 1024
SIGNATURE_SIZE = 64
MAX_FILE_PATH = 255  # bytes of an index entry's ``file`` (relative to DCIM/)
MAX_PATH_DEPTH = 4  # components of ``file``
MAX_RECORDING_ID = 0xFFFF_FFFF  # ids are u32 on the wire too
#: JSON values a file may hold: an index entry takes 15 (7 keys), an erased.json entry 5
MAX_DEVICE_VALUES = 64
MAX_INDEX_VALUES = 16 * (m.MAX_RECORDINGS + 1)
MAX_ERASED_VALUES = 6 * (m.MAX_RECORDINGS + 1)
MAX_MOUNTS = 256  # entries of the mount directory looked at by find_mass_storage
READ_CHUNK = 1024 * 1024  # bytes per read of a recording file
#: one component of ``file``: ASCII letters and digits first and last, '.', '_' and '-' inside
COMPONENT_PATTERN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9_-])?")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK

DEVICE_KEYS = frozenset({"format", "model", "serial", "firmware", "vid", "pid", "device_key", "written_at_us"})
INDEX_KEYS = frozenset({"format", "serial", "written_at_us", "recordings"})
ENTRY_KEYS = frozenset({"id", "file", "size", "start_us", "end_us", "category", "sha256"})
ERASED_KEYS = frozenset({"format", "serial", "erased"})
ERASED_ENTRY_KEYS = frozenset({"id", "sha256"})
CATEGORIES = {str(c): c for c in m.Category}


def index_message(serial: str, index: bytes) -> bytes:
    """What the camera signs with its device key: context, its serial and the exact bytes of index.json."""
    return INDEX_CONTEXT + serial.encode() + b"\x00" + index


def _fields(obj: JSONValue, keys: frozenset[str], what: str) -> JSONObject:
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} must be a JSON object")
    if set(obj) != keys:
        missing = sorted(keys - set(obj))
        unknown = sorted(repr(k[:40]) for k in set(obj) - keys)[:5]
        raise ProtocolError(f"{what}: missing fields {missing}, unknown fields [{', '.join(unknown)}]")
    return obj


def _int(obj: JSONObject, key: str, what: str, low: int, high: int) -> int:
    value = obj[key]
    if type(value) is not int:  # bool is an int subclass: refused too
        raise ProtocolError(f"{what}: '{key}' must be an integer")
    if not low <= value <= high:
        raise ProtocolError(f"{what}: '{key}' {value} is outside {low}..{high}")
    return value


def _time(obj: JSONObject, key: str, what: str) -> int:
    value = obj[key]
    if type(value) is not int:
        raise ProtocolError(f"{what}: '{key}' must be an integer (µs since the epoch)")
    if not m.MIN_TIME_US <= value <= m.MAX_TIME_US:
        raise ProtocolError(f"{what}: '{key}' {value} µs is outside 2000..2100")
    return value


def _text(obj: JSONObject, key: str, what: str, limit: int) -> str:
    """A string under exactly the wire protocol's text(N) rules (messages._Reader.text)."""
    value = obj[key]
    if not isinstance(value, str):
        raise ProtocolError(f"{what}: '{key}' must be a string")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(f"{what}: '{key}' is not valid UTF-8") from None
    if len(raw) > limit:
        raise ProtocolError(f"{what}: '{key}' is {len(raw)} bytes long, the limit is {limit}")
    return m._Reader(bytes([len(raw)]) + raw, what).text(key, limit)


def _hex(obj: JSONObject, key: str, what: str) -> bytes:
    value = obj[key]
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise ProtocolError(f"{what}: '{key}' must be 64 lowercase hexadecimal digits")
    return bytes.fromhex(value)


def _file_path(obj: JSONObject, what: str) -> tuple[str, ...]:
    value = obj["file"]
    if not isinstance(value, str):
        raise ProtocolError(f"{what}: 'file' must be a string")
    if len(value.encode("utf-8", "replace")) > MAX_FILE_PATH:
        raise ProtocolError(f"{what}: 'file' is longer than {MAX_FILE_PATH} bytes")
    parts = tuple(value.split("/"))
    if len(parts) > MAX_PATH_DEPTH or not all(COMPONENT_PATTERN.fullmatch(p) for p in parts):
        raise ProtocolError(
            f"{what}: 'file' {value[:80]!r} must be a relative path under {DATA_DIR}/ of at most "
            f"{MAX_PATH_DEPTH} names of letters, digits, '.', '_', '-' (no '..', no absolute path)"
        )
    return parts


# -- the volume's records ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """``BODYCAM/device.json``: who the camera says it is (unsigned; the key is checked on enrolment)."""

    identity: m.Identity
    written_at_us: int

    @classmethod
    def from_json(cls, raw: bytes) -> DeviceRecord:
        what = f"{META_DIR}/{DEVICE_FILE}"
        obj = _fields(parse_json(raw, what, MAX_DEVICE_VALUES), DEVICE_KEYS, what)
        _int(obj, "format", what, LAYOUT_VERSION, LAYOUT_VERSION)
        model = _text(obj, "model", what, m.MAX_SHORT_TEXT)
        serial = _text(obj, "serial", what, m.MAX_SHORT_TEXT)
        if not m.valid_serial(serial):
            raise ProtocolError(f"{what}: {m.serial_problem(serial)}")
        firmware = _text(obj, "firmware", what, m.MAX_SHORT_TEXT)
        vid = _int(obj, "vid", what, 0, 0xFFFF)
        pid = _int(obj, "pid", what, 0, 0xFFFF)
        key = _hex(obj, "device_key", what)
        written = _time(obj, "written_at_us", what)
        # protocol_version 0: a mass-storage camera speaks no wire protocol
        return cls(m.Identity(0, vid, pid, model, serial, firmware, key), written)


@dataclass(frozen=True, slots=True)
class IndexEntry:
    info: m.RecordingInfo
    path: tuple[str, ...]  # components under DCIM/

    @property
    def file(self) -> str:
        return "/".join(self.path)


def parse_index(raw: bytes, serial: str, written_at_us: int) -> list[IndexEntry]:
    """Validate ``BODYCAM/index.json`` (already signature-checked) into bounded entries."""
    what = f"{META_DIR}/{INDEX_FILE}"
    obj = _fields(parse_json(raw, what, MAX_INDEX_VALUES), INDEX_KEYS, what)
    _int(obj, "format", what, LAYOUT_VERSION, LAYOUT_VERSION)
    if obj["serial"] != serial:
        raise ProtocolError(f"{what} is signed for another serial than {DEVICE_FILE}'s {serial}")
    if _time(obj, "written_at_us", what) != written_at_us:
        raise ProtocolError(f"{what}: 'written_at_us' differs from {DEVICE_FILE}'s (the volume was half rewritten)")
    listing = obj["recordings"]
    if not isinstance(listing, list):
        raise ProtocolError(f"{what}: 'recordings' must be a list")
    if len(listing) > m.MAX_RECORDINGS:
        raise ProtocolError(f"{what} lists {len(listing)} recordings, the limit is {m.MAX_RECORDINGS}")
    out: list[IndexEntry] = []
    ids: set[int] = set()
    files: set[str] = set()
    for n, item in enumerate(listing):
        where = f"{what} entry {n}"
        entry = _fields(item, ENTRY_KEYS, where)
        rid = _int(entry, "id", where, 0, MAX_RECORDING_ID)
        where = f"{what} recording {rid}"
        if rid in ids:
            raise ProtocolError(f"{what} lists recording {rid} twice")
        ids.add(rid)
        path = _file_path(entry, where)
        folded = "/".join(path).casefold()  # FAT and exFAT names are case-insensitive
        if folded in files:
            raise ProtocolError(f"{where}: file {'/'.join(path)!r} belongs to another recording too")
        files.add(folded)
        size = _int(entry, "size", where, 0, m.MAX_RECORDING_SIZE)
        start = _time(entry, "start_us", where)
        end = _time(entry, "end_us", where)
        if end < start:
            raise ProtocolError(f"{where} ends before it starts")
        tag = _text(entry, "category", where, m.MAX_SHORT_TEXT)
        category = CATEGORIES.get(tag, m.Category.UNKNOWN)  # unknown tags: not training (default deny)
        digest = _hex(entry, "sha256", where)
        name = _text({"name": path[-1]}, "name", where, m.MAX_NAME)
        out.append(IndexEntry(m.RecordingInfo(rid, size, start, end, category, digest, name), path))
    return out


def parse_erased(raw: bytes, serial: str) -> dict[int, bytes]:
    """``BODYCAM/erased.json``: recording id -> the SHA-256 the dock verified before erasing it."""
    what = f"{META_DIR}/{ERASED_FILE}"
    obj = _fields(parse_json(raw, what, MAX_ERASED_VALUES), ERASED_KEYS, what)
    _int(obj, "format", what, LAYOUT_VERSION, LAYOUT_VERSION)
    if obj["serial"] != serial:
        raise ProtocolError(f"{what} belongs to another camera than {serial}")
    listing = obj["erased"]
    if not isinstance(listing, list) or len(listing) > m.MAX_RECORDINGS:
        raise ProtocolError(f"{what}: 'erased' must be a list of at most {m.MAX_RECORDINGS} entries")
    out: dict[int, bytes] = {}
    for n, item in enumerate(listing):
        entry = _fields(item, ERASED_ENTRY_KEYS, f"{what} entry {n}")
        out[_int(entry, "id", what, 0, MAX_RECORDING_ID)] = _hex(entry, "sha256", what)
    return out


def erased_json(serial: str, erased: dict[int, bytes]) -> bytes:
    doc = {
        "format": LAYOUT_VERSION,
        "serial": serial,
        "erased": [{"id": rid, "sha256": digest.hex()} for rid, digest in sorted(erased.items())],
    }
    return (json.dumps(doc, indent=1) + "\n").encode()


# -- the mount --------------------------------------------------------------------------------
class MountTransport:
    """What the pipeline reads of a transport (``kind``, ``address``), for a mounted volume."""

    kind = KIND

    def __init__(self, mount: Path) -> None:
        self.mount = Path(mount)
        self.address = str(self.mount)
        self.fd: int | None = None
        self.dev = 0

    def open(self) -> int:
        """A descriptor of the mount point: every later path is resolved from it, never from a string."""
        if self.fd is None:
            try:
                fd = os.open(self.mount, _OPEN_FLAGS | os.O_DIRECTORY)
            except OSError as err:
                raise _os_error(err, f"mount point {self.mount}") from err
            try:
                self.dev = os.fstat(fd).st_dev
            except OSError as err:
                os.close(fd)
                raise _os_error(err, f"mount point {self.mount}") from err
            self.fd = fd
        return self.fd

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class _Missing(ProtocolError):
    """A path component that does not exist, where absence is an answer rather than an error."""


def _fsync_dir(fd: int) -> None:
    """Make a rename or unlink durable; filesystems that cannot fsync a directory say EINVAL."""
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.EROFS, errno.ENOTSUP):
            raise


def _is_symlink(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _os_error(err: OSError, what: str, missing: type[BodycamError] = ProtocolError) -> BodycamError:
    """An OSError met on the volume, as the error the layers above expect (``missing``: for ENOENT)."""
    if err.errno in (errno.ELOOP, errno.EMLINK):
        return ProtocolError(f"{what} is a symbolic link: refused (files must lie inside the volume)")
    if err.errno == errno.ENOTDIR:
        return ProtocolError(f"{what}: a component of its path is not a directory")
    if err.errno == errno.ENOENT:
        return missing(f"{what} does not exist on the volume")
    return DisconnectedError(f"{what}: {err.strerror or err}; re-dock the camera if this persists")


class MassStorageCamera:
    """One camera whose volume is mounted at ``mount``. Call :meth:`open` first; not thread-safe.

    ``seen_at`` is the dock time at which the volume appeared (default: when :meth:`open` runs); the
    camera clock offset is estimated against it (docs/mass-storage.md §Clock).
    """

    def __init__(self, mount: Path, *, seen_at: float | None = None) -> None:
        self.transport = MountTransport(mount)
        self.seen_at = seen_at
        self.authenticated = False
        #: not a wire-protocol revision: a mounted volume has no protocol, so it cannot refuse any host
        #: (docs/mass-storage.md "Who can read it"); a docking records that in custody
        self.protocol = 0
        self.auth_nonce: bytes | None = None
        self._device: DeviceRecord | None = None
        self._entries: dict[int, IndexEntry] = {}
        self._order: list[int] = []

    # -- naming ---------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        if self._device is not None:
            return f"camera {self._device.identity.serial}"
        return f"camera at {self.transport.kind}:{self.transport.address}"

    @property
    def identity(self) -> m.Identity:
        return self._record().identity

    def _record(self) -> DeviceRecord:
        if self._device is None:
            raise ProtocolError(f"{self.name} has not been identified; call open() first")
        return self._device

    def _require_auth(self, what: str) -> None:
        if not self.authenticated:
            raise AuthenticationError(f"{self.name} refused {what}: not authenticated (authenticate first)")

    # -- files inside the volume ----------------------------------------------------------------
    def _walk(self, parts: Sequence[str], what: str, missing: type[BodycamError] = ProtocolError) -> int:
        """A descriptor of the directory ``parts`` inside the volume, one O_NOFOLLOW step at a time."""
        try:
            fd = os.dup(self.transport.open())
        except OSError as err:
            raise _os_error(err, what) from err
        try:
            for part in parts:
                try:
                    nxt = os.open(part, _OPEN_FLAGS | os.O_DIRECTORY, dir_fd=fd)
                except OSError as err:
                    if err.errno in (errno.ENOTDIR, errno.ELOOP) and _is_symlink(part, fd):
                        err = OSError(errno.ELOOP, os.strerror(errno.ELOOP))  # O_DIRECTORY says ENOTDIR
                    raise _os_error(err, f"{what} (at {part!r})", missing) from err
                os.close(fd)
                fd = nxt
                if os.fstat(fd).st_dev != self.transport.dev:
                    raise ProtocolError(f"{what} leads into another filesystem: refused")
            return fd
        except OSError as err:
            os.close(fd)
            raise _os_error(err, what, missing) from err
        except BaseException:
            os.close(fd)
            raise

    def _open_file(
        self, parts: Sequence[str], what: str, missing: type[BodycamError] = ProtocolError
    ) -> tuple[int, os.stat_result]:
        """Open a regular file inside the volume (no symlink, device, FIFO or hard link to elsewhere)."""
        parent = self._walk(parts[:-1], what, missing)
        try:
            try:
                before = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
            except OSError as err:
                raise _os_error(err, what, missing) from err
            if stat.S_ISLNK(before.st_mode):
                raise ProtocolError(f"{what} is a symbolic link: refused (files must lie inside the volume)")
            if not stat.S_ISREG(before.st_mode):
                raise ProtocolError(f"{what} is not a regular file: refused")
            try:
                fd = os.open(parts[-1], _OPEN_FLAGS, dir_fd=parent)
            except OSError as err:
                raise _os_error(err, what) from err
        finally:
            os.close(parent)
        try:
            st = os.fstat(fd)
        except OSError as err:
            os.close(fd)
            raise _os_error(err, what) from err
        if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino) or not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise ProtocolError(f"{what} was replaced while being opened: refused")
        if st.st_dev != self.transport.dev or st.st_nlink != 1:
            os.close(fd)
            raise ProtocolError(f"{what} is linked from elsewhere (another filesystem or a hard link): refused")
        return fd, st

    def _read_small(self, name: str, limit: int, *, exact: bool = False) -> bytes:
        what = f"{self.name}: {META_DIR}/{name}"
        fd, st = self._open_file((META_DIR, name), what)
        try:
            if st.st_size > limit or (exact and st.st_size != limit):
                size = "exactly" if exact else "at most"
                raise ProtocolError(f"{what} is {st.st_size} bytes; it must be {size} {limit}")
            chunks: list[bytes] = []
            total = 0
            while True:
                data = os.read(fd, min(limit + 1 - total, READ_CHUNK))
                if not data:
                    break
                total += len(data)
                chunks.append(data)
                if total > limit:
                    raise ProtocolError(f"{what} grew past {limit} bytes while being read")
            if exact and total != limit:
                raise ProtocolError(f"{what} is {total} bytes; it must be exactly {limit}")
            return b"".join(chunks)
        except OSError as err:
            raise _os_error(err, what) from err
        finally:
            os.close(fd)

    def _exists(self, parts: Sequence[str], what: str) -> bool:
        try:
            parent = self._walk(parts[:-1], what, _Missing)
        except _Missing:
            return False
        try:
            os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return False
        except OSError as err:
            raise _os_error(err, what) from err
        finally:
            os.close(parent)
        return True

    def _erased(self) -> dict[int, bytes]:
        if not self._exists((META_DIR, ERASED_FILE), f"{self.name}: {META_DIR}/{ERASED_FILE}"):
            return {}
        return parse_erased(self._read_small(ERASED_FILE, MAX_ERASED_JSON), self.identity.serial)

    # -- operations -----------------------------------------------------------------------------
    def open(self) -> m.Identity:
        """Open the mount point and read ``BODYCAM/device.json``."""
        self.transport.open()
        if self.seen_at is None:
            self.seen_at = time.time()
        self._device = DeviceRecord.from_json(self._read_small(DEVICE_FILE, MAX_DEVICE_JSON))
        return self._device.identity

    def authenticate(self, enrolled_key: bytes | None) -> None:
        """Check the device key against the enrolled one and the index signature by that key.

        Weaker than the wire protocol's challenge-response: a copy of an older, genuinely signed index
        passes too (docs/mass-storage.md §Authentication). Raises AuthenticationError.
        """
        ident = self.identity
        enrolled_key = check_enrolment(ident, enrolled_key)
        index = self._read_small(INDEX_FILE, MAX_INDEX_JSON)
        signature = self._read_small(SIGNATURE_FILE, SIGNATURE_SIZE, exact=True)
        try:
            Ed25519PublicKey.from_public_bytes(enrolled_key).verify(signature, index_message(ident.serial, index))
        except (InvalidSignature, ValueError) as err:
            raise AuthenticationError(
                f"camera {ident.serial}: {META_DIR}/{SIGNATURE_FILE} is not its enrolled key's signature of "
                f"{META_DIR}/{INDEX_FILE}: the index was altered or not written by this camera; refused"
            ) from err
        entries = parse_index(index, ident.serial, self._record().written_at_us)
        self._entries = {e.info.id: e for e in entries}
        self._order = [e.info.id for e in entries]
        self.authenticated = True

    def clock(self) -> ClockReading:
        """The camera clock when it last wrote the volume, against the dock time the volume appeared."""
        record = self._record()
        seen_at = self.seen_at if self.seen_at is not None else time.time()
        return ClockReading(record.written_at_us / 1e6, seen_at, 0.0)

    def set_clock(self, now: float | None = None) -> tuple[ClockReading, ClockReading]:
        """A disk's clock cannot be set: return the estimate twice, having changed nothing."""
        self._require_auth("the clock reading")
        reading = self.clock()
        return reading, reading

    def status(self) -> m.CameraStatus:
        """Storage from the filesystem; a disk reports no battery or temperature (0 = unknown)."""
        try:
            vfs = os.fstatvfs(self.transport.open())
        except OSError as err:
            raise _os_error(err, f"{self.name}: volume") from err
        total = vfs.f_blocks * vfs.f_frsize
        used = total - vfs.f_bfree * vfs.f_frsize
        return m.CameraStatus(0, False, used, total, 0.0, len(self._entries))

    def recordings(self) -> list[m.RecordingInfo]:
        """The signed index, less recordings this dock (or another) already erased."""
        self._require_auth("LIST")
        erased = self._erased()
        out: list[m.RecordingInfo] = []
        for rid in self._order:
            entry = self._entries[rid]
            if erased.get(rid) == entry.info.sha256 and not self._exists(
                (DATA_DIR, *entry.path), f"{self.name}: {DATA_DIR}/{entry.file}"
            ):
                continue
            out.append(entry.info)
        return out

    def _entry(self, recording_id: int, sha256: bytes | None = None) -> IndexEntry:
        entry = self._entries.get(recording_id)
        if entry is None:
            raise DeviceError(f"{self.name} has no recording {recording_id} in its index", Status.NO_SUCH_RECORDING)
        if sha256 is not None and sha256 != entry.info.sha256:
            raise DeviceError(
                f"{self.name} refused to erase recording {recording_id}: the SHA-256 given is not the "
                "index's (HASH_MISMATCH)",
                Status.HASH_MISMATCH,
            )
        return entry

    def iter_read(
        self, recording: m.RecordingInfo, start: int = 0, span: int = 4 * 1024 * 1024, *, lend: int = 0
    ) -> Iterator[bytes | memoryview]:
        """Yield a recording's file from ``start`` to its end in chunks of at most 1 MiB.

        ``lend`` as :meth:`Camera.iter_read` says: 0, each chunk a ``bytes`` of its own; N, each a read-only
        view of a ring of N + 1 buffers of READ_CHUNK, read into with ``preadv`` (a chunk a read, so the
        ring alone keeps the last N yielded intact), instead of a fresh 1 MiB ``bytes`` per read.

        The file must be exactly the size the signed index says, before, during and after the read:
        a file that differs, grows or shrinks is an IntegrityError.
        """
        self._require_auth("READ")
        entry = self._entry(recording.id)
        if entry.info != recording:
            raise DeviceError(f"{self.name}: recording {recording.id} is not the one listed", Status.BAD_REQUEST)
        if not 0 <= start <= recording.size:
            raise ValueError(f"offset {start} outside recording {recording.id} of {recording.size} bytes")
        what = f"{self.name}: {DATA_DIR}/{entry.file} (recording {recording.id})"
        fd, st = self._open_file((DATA_DIR, *entry.path), what, IntegrityError)
        if not 0 <= lend <= MAX_LEND:
            raise ValueError(f"lend must be 0..{MAX_LEND} chunks, got {lend}")
        chunk = max(1, min(span, READ_CHUNK))
        ring = [bytearray(chunk) for _ in range(lend + 1)] if lend else []
        try:
            self._check_size(st.st_size, recording, what)
            offset = start
            turn = 0
            while offset < recording.size:
                want = min(chunk, recording.size - offset)
                data: bytes | memoryview
                if ring:
                    turn = (turn + 1) % len(ring)
                    data = memoryview(ring[turn])[:want].toreadonly()
                    got = os.preadv(fd, [memoryview(ring[turn])[:want]], offset)
                else:
                    data = os.pread(fd, want, offset)
                    got = len(data)
                if got != want:
                    # regular files read short only at their end: the file shrank under us
                    raise IntegrityError(f"{what} ended at byte {offset + got} while being read")
                self._check_size(os.fstat(fd).st_size, recording, what)
                offset += want
                yield data
            if os.pread(fd, 1, recording.size) or os.fstat(fd).st_size != recording.size:
                raise IntegrityError(f"{what} grew while being read")
        except OSError as err:
            raise _os_error(err, what) from err
        finally:
            os.close(fd)

    @staticmethod
    def _check_size(size: int, recording: m.RecordingInfo, what: str) -> None:
        if size != recording.size:
            raise IntegrityError(
                f"{what} is {size} bytes but the signed index says {recording.size}: refused, not erased"
            )

    def erase(self, recording_id: int, sha256: bytes) -> None:
        """Delete a recording's file, only if it still hashes to ``sha256`` (the dock's verified hash).

        The index cannot be re-signed without the device key, so the id is first recorded in
        ``BODYCAM/erased.json`` (the firmware drops it from its next index), then the file is deleted.
        Raises DeviceError (HASH_MISMATCH, NO_SUCH_RECORDING, STORAGE_ERROR for a read-only volume).
        """
        self._require_auth("ERASE")
        entry = self._entry(recording_id, sha256)
        root = self.transport.open()
        what = f"{self.name}: {DATA_DIR}/{entry.file} (recording {recording_id})"
        try:
            read_only = bool(os.fstatvfs(root).f_flag & os.ST_RDONLY)
        except OSError as err:
            raise _os_error(err, what) from err
        if read_only:
            raise DeviceError(
                f"{self.name} refused to erase recording {recording_id}: the volume is mounted read-only; "
                "the recording stays on the camera",
                Status.STORAGE_ERROR,
            )
        erased = self._erased()
        parts = (DATA_DIR, *entry.path)
        if not self._exists(parts, what):
            if erased.get(recording_id) == sha256:
                return  # erased by an earlier attempt that stopped before the journal heard of it
            raise DeviceError(f"{what} is missing from the volume", Status.NO_SUCH_RECORDING)
        fd, st = self._open_file(parts, what)
        try:
            self._check_size(st.st_size, entry.info, what)
            digest = hashlib.sha256()
            offset = 0
            while data := os.pread(fd, READ_CHUNK, offset):
                digest.update(data)
                offset += len(data)
        except OSError as err:
            raise _os_error(err, what) from err
        finally:
            os.close(fd)
        if offset != entry.info.size or digest.digest() != sha256:
            raise DeviceError(
                f"{self.name} refused to erase recording {recording_id}: the file on the volume no longer "
                "hashes to the verified SHA-256 (HASH_MISMATCH); it stays on the camera",
                Status.HASH_MISMATCH,
            )
        if len(erased) >= m.MAX_RECORDINGS and recording_id not in erased:
            raise DeviceError(f"{self.name}: {META_DIR}/{ERASED_FILE} is full", Status.STORAGE_ERROR)
        erased[recording_id] = sha256
        self._write_meta(ERASED_FILE, erased_json(self.identity.serial, erased))
        parent = self._walk(parts[:-1], what)
        try:
            now = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                raise DeviceError(f"{what} was replaced while being hashed; not erased", Status.HASH_MISMATCH)
            os.unlink(parts[-1], dir_fd=parent)
            _fsync_dir(parent)
        except OSError as err:
            raise DeviceError(f"{what} could not be deleted: {err.strerror or err}", Status.STORAGE_ERROR) from err
        finally:
            os.close(parent)
        LOG.info("%s: erased recording %d (%s)", self.name, recording_id, sha256.hex()[:16])

    def _write_meta(self, name: str, data: bytes) -> None:
        """Replace ``BODYCAM/<name>`` whole: a temporary file, fsync, rename, fsync the directory."""
        meta = self._walk((META_DIR,), f"{self.name}: {META_DIR}")
        tmp = f"{name}.tmp"
        try:
            try:
                os.unlink(tmp, dir_fd=meta)
            except FileNotFoundError:
                pass
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=meta)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, name, src_dir_fd=meta, dst_dir_fd=meta)
            _fsync_dir(meta)
        except OSError as err:
            raise DeviceError(
                f"{self.name}: cannot write {META_DIR}/{name}: {err.strerror or err}", Status.STORAGE_ERROR
            ) from err
        finally:
            os.close(meta)

    # -- what a volume cannot do: it speaks no protocol (``protocol`` 0), so it neither pairs nor refuses a host
    def _no_pairing(self) -> DeviceError:
        return DeviceError(f"{self.name}: a mass-storage volume cannot be paired to a dock", Status.UNKNOWN_COMMAND)

    def dock_challenge(self) -> da.DockChallenge:
        raise self._no_pairing()

    def pair(self, authority_key: bytes, proof: da.DockProof) -> None:
        raise self._no_pairing()

    def prove(self, proof: da.DockProof) -> None:
        raise self._no_pairing()

    def send_revocations(self, revocations: bytes) -> int:
        raise self._no_pairing()

    def refuses_unproven_host(self) -> bool:
        """Never: anyone who mounts the volume reads it (docs/mass-storage.md "Who can read it")."""
        return False

    def firmware_begin(self, size: int, sha256: bytes, version: str, signature: bytes) -> int:
        raise DeviceError(f"{self.name}: firmware cannot be pushed over mass storage", Status.UNKNOWN_COMMAND)

    def firmware_chunk(self, offset: int, data: bytes) -> int:
        raise DeviceError(f"{self.name}: firmware cannot be pushed over mass storage", Status.UNKNOWN_COMMAND)

    def firmware_commit(self) -> m.FirmwareCommitted:
        raise DeviceError(f"{self.name}: firmware cannot be pushed over mass storage", Status.UNKNOWN_COMMAND)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> MassStorageCamera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_volume(path: Path) -> bool:
    """Whether ``path`` is a camera volume: a directory (not a symlink) holding ``BODYCAM/device.json``, neither
    a symlink. Stats the volume itself, so a hung disk blocks it in the kernel: the daemon calls it only
    from a probe thread it can abandon (agent/service/mounts.py)."""
    try:
        top = os.lstat(path)
        if not stat.S_ISDIR(top.st_mode):
            return False
        meta = os.lstat(os.path.join(path, META_DIR))
        device = os.lstat(os.path.join(path, META_DIR, DEVICE_FILE))
    except OSError:
        return False
    return stat.S_ISDIR(meta.st_mode) and stat.S_ISREG(device.st_mode)


def mount_names(root: Path) -> list[str]:
    """The names of ``root``'s first ``MAX_MOUNTS`` entries, sorted (reading the directory only, not
    looking into any entry); none when it cannot be read."""
    names: list[str] = []
    try:
        with os.scandir(root) as it:
            for n, entry in enumerate(it):
                if n >= MAX_MOUNTS:
                    LOG.warning("%s holds more than %d entries; the rest are not looked at", root, MAX_MOUNTS)
                    break
                names.append(entry.name)
    except OSError as err:
        LOG.debug("mass-storage directory %s not readable: %s", root, err)
    return sorted(names)


def find_mass_storage(root: Path) -> list[Path]:
    """Mount points under ``root``: immediate subdirectories (not symlinks) holding ``BODYCAM/device.json``.
    Blocks as long as any of them does (a hung disk): the daemon looks through agent/service/mounts.py."""
    return [root / name for name in mount_names(root) if is_volume(root / name)]


#: the mounted volume is the one camera seam too (mypy checks it; drivers/device/api.py)
_SEAM: type[CameraDevice] = MassStorageCamera
