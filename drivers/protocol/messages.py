"""Protocol v1 command payloads: frozen dataclasses with ``to_bytes``/``from_bytes``.

Everything a camera says is bounded here, once: string lengths, counts, sizes, times. A payload
that breaks a bound, is short, or has bytes left over is a ProtocolError naming the field, so the
layers above only ever see values inside the limits documented in docs/protocol.md.
"""

from __future__ import annotations

import enum
import re
import struct
import unicodedata
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from bodycam.drivers.errors import ProtocolError
from bodycam.drivers.protocol.frames import MAX_PAYLOAD, MAX_READ_SPAN

# -- hard limits (docs/protocol.md §Limits) ---------------------------------------------------
MAX_NAME = 128  # recording name, UTF-8 bytes
MAX_SHORT_TEXT = 32  # model, serial, firmware version
MAX_LIST_PAGE = 64  # entries per LIST response
MAX_RECORDINGS = 65_535  # recordings a camera may report in total
MAX_RECORDING_SIZE = 64 * 1024**3  # 64 GiB
MAX_FIRMWARE_SIZE = 64 * 1024**2
MAX_FIRMWARE_CHUNK = 256 * 1024
#: camera timestamps must lie between 2000-01-01 and 2100-01-01 (µs since the Unix epoch)
MIN_TIME_US = 946_684_800_000_000
MAX_TIME_US = 4_102_444_800_000_000
AUTH_CONTEXT = b"bodycam-auth-v1\x00"
#: serial numbers: ASCII letters and digits first, then also '.', '_' and '-' (safe in paths and udev).
#: The one serial alphabet: IDENTIFY, the mass-storage device record, ``enroll`` and the udev rules
#: (models.UNSAFE_SERIAL_GLOB) all apply it, and docs/protocol.md states it (SERIAL_RULE).
SERIAL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
SERIAL_RULE = "1 to 32 ASCII letters, digits, '-', '_' or '.', starting with a letter or digit"
FIRMWARE_CONTEXT = b"bodycam-firmware-v1\x00"


class Category(enum.IntEnum):
    UNKNOWN = 0
    TRAINING = 1
    OPERATIONAL = 2

    def __str__(self) -> str:
        return self.name.lower()


def unpack_exact(layout: struct.Struct, data: bytes, what: str) -> tuple[Any, ...]:
    """The fields of a fixed-size payload; ProtocolError naming ``what`` unless it is exactly that size."""
    if len(data) != layout.size:
        raise ProtocolError(f"{what}: wrong payload size")
    return layout.unpack(data)


class _Reader:
    """Bounded cursor over a payload: every read checks there are enough bytes."""

    def __init__(self, data: bytes, what: str) -> None:
        self._data = data
        self._pos = 0
        self._what = what

    def take(self, n: int, field: str) -> bytes:
        if self._pos + n > len(self._data):
            raise ProtocolError(f"{self._what}: payload ends inside field '{field}'")
        out = self._data[self._pos : self._pos + n]
        self._pos += n
        return out

    def unpack(self, fmt: str, field: str) -> tuple[Any, ...]:
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size, field))

    def u(self, fmt: str, field: str) -> int:
        return int(self.unpack(fmt, field)[0])

    def text(self, field: str, limit: int) -> str:
        n = self.u("<B", field)
        if n > limit:
            raise ProtocolError(f"{self._what}: '{field}' is {n} bytes long, the limit is {limit}")
        raw = self.take(n, field)
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ProtocolError(f"{self._what}: '{field}' is not valid UTF-8") from err
        if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or unicodedata.category(c) in ("Cf", "Zl", "Zp") for c in value):
            raise ProtocolError(f"{self._what}: '{field}' contains control characters (or invisible formatting ones)")
        return value

    def rest(self) -> bytes:
        out = self._data[self._pos :]
        self._pos = len(self._data)
        return out

    def end(self) -> None:
        if self._pos != len(self._data):
            raise ProtocolError(f"{self._what}: {len(self._data) - self._pos} unexpected trailing bytes")


def valid_serial(serial: str) -> bool:
    """Whether ``serial`` is in the protocol's serial alphabet (SERIAL_PATTERN)."""
    return SERIAL_PATTERN.fullmatch(serial) is not None


def serial_problem(serial: str) -> str:
    """The one sentence every refusal of a serial uses, so ``enroll`` and IDENTIFY say the same thing."""
    return f"serial {serial!r} must be {SERIAL_RULE}"


def _text(value: str, limit: int, field: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > min(limit, 255):
        raise ValueError(f"{field} is {len(raw)} bytes, the limit is {limit}")
    return bytes([len(raw)]) + raw


def _check_time(value: int, what: str, field: str) -> int:
    if not MIN_TIME_US <= value <= MAX_TIME_US:
        raise ProtocolError(f"{what}: '{field}' {value} µs is outside 2000..2100")
    return value


def _check_stamp(value: int, what: str, field: str) -> int:
    """A time the camera *reports* (a recording's stamp): 1970..2100. A stamp before 2000 is kept, not
    refused: it is what a camera whose RTC was reset writes, and the dock must see it to keep that
    footage out of scope and repair the clock (time_valid)."""
    if not 0 <= value <= MAX_TIME_US:
        raise ProtocolError(f"{what}: '{field}' {value} µs is outside 1970..2100")
    return value


def time_valid(value_us: int) -> bool:
    """A camera time a correct clock could show (2000..2100); anything else is a reset or broken clock."""
    return MIN_TIME_US <= value_us <= MAX_TIME_US


# -- HELLO ------------------------------------------------------------------------------------
#: Protocol revisions this code speaks, negotiated by HELLO's ``[min_version, max_version]``. The frame
#: layout (the header's version byte, protocol.VERSION) is the same in every revision; a revision
#: selects the command set and payloads (docs/protocol.md "Revisions"). Revision 1 is the original
#: protocol; revision 2 adds what needs the camera's cooperation: the clock epoch stamped into each
#: recording, and the dock's proof to a paired camera.
MIN_PROTOCOL = 1
MAX_PROTOCOL = 2


@dataclass(frozen=True, slots=True)
class HelloRequest:
    """HELLO: the protocol versions and frame size the dock speaks."""

    min_version: int
    max_version: int
    max_frame: int
    _S: ClassVar[struct.Struct] = struct.Struct("<BBI")

    def to_bytes(self) -> bytes:
        return self._S.pack(self.min_version, self.max_version, self.max_frame)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return cls(*unpack_exact(cls._S, data, "HELLO request"))


@dataclass(frozen=True, slots=True)
class HelloResponse:
    """HELLO's answer: the version and frame size the camera chose."""

    version: int
    max_frame: int
    _S: ClassVar[struct.Struct] = struct.Struct("<BI")

    def to_bytes(self) -> bytes:
        return self._S.pack(self.version, self.max_frame)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return cls(*unpack_exact(cls._S, data, "HELLO response"))


# -- IDENTIFY ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Identity:
    """IDENTIFY's answer: who the camera says it is, with its device key (checked by AUTH)."""

    protocol_version: int
    vid: int
    pid: int
    model: str
    serial: str
    firmware: str
    device_key: bytes  # Ed25519 public key, 32 bytes

    def to_bytes(self) -> bytes:
        return b"".join(
            (
                struct.pack("<BHH", self.protocol_version, self.vid, self.pid),
                _text(self.model, MAX_SHORT_TEXT, "model"),
                _text(self.serial, MAX_SHORT_TEXT, "serial"),
                _text(self.firmware, MAX_SHORT_TEXT, "firmware"),
                self.device_key,
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = _Reader(data, "IDENTIFY response")
        version, vid, pid = r.unpack("<BHH", "header")
        model = r.text("model", MAX_SHORT_TEXT)
        serial = r.text("serial", MAX_SHORT_TEXT)
        firmware = r.text("firmware", MAX_SHORT_TEXT)
        key = r.take(32, "device_key")
        r.end()
        if not valid_serial(serial):
            raise ProtocolError(f"IDENTIFY response: {serial_problem(serial)}")
        return cls(version, vid, pid, model, serial, firmware, key)


# -- AUTH -------------------------------------------------------------------------------------
def auth_message(serial: str, nonce: bytes) -> bytes:
    """What the camera signs: context, its serial and the dock's nonce (binds the proof to both)."""
    return AUTH_CONTEXT + serial.encode() + b"\x00" + nonce


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """AUTH: the dock's fresh nonce, which the camera signs with its device key."""

    nonce: bytes

    def to_bytes(self) -> bytes:
        return self.nonce

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        if len(data) != 32:
            raise ProtocolError("AUTH request: nonce must be 32 bytes")
        return cls(data)


@dataclass(frozen=True, slots=True)
class AuthResponse:
    """AUTH's answer: the camera's signature over ``auth_message(serial, nonce)``."""

    signature: bytes

    def to_bytes(self) -> bytes:
        return self.signature

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        if len(data) != 64:
            raise ProtocolError("AUTH response: signature must be 64 bytes")
        return cls(data)


# -- CLOCK ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ClockValue:
    """CLOCK_SET request (µs since the Unix epoch, 2000..2100); the answers are ClockState."""

    time_us: int

    def to_bytes(self) -> bytes:
        return struct.pack("<q", self.time_us)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        if len(data) != 8:
            raise ProtocolError("CLOCK payload must be 8 bytes")
        (value,) = struct.unpack("<q", data)
        return cls(_check_time(value, "CLOCK", "time_us"))


#: ClockState ``flags`` bit: the clock has been set since the RTC last lost power (revision 2)
CLOCK_FLAG_VALID = 0x01


@dataclass(frozen=True, slots=True)
class ClockState:
    """What CLOCK_GET and CLOCK_SET answer: the camera time and, in revision 2, the clock epoch.

    ``epoch`` is the counter the camera bumps at each CLOCK_SET and stamps into every recording
    (None: a revision-1 camera, which has no epochs). ``valid`` is False when the camera says its RTC
    lost power since it was last set, or when the time is outside 2000..2100 (a reset RTC reads 1970):
    the dock then records it, sets the clock, and places no footage stamped under it.
    A time is any i64 here: refusing a 1970 answer would leave a reset camera undockable forever.
    """

    time_us: int
    epoch: int | None = None
    valid: bool = True
    _V2: ClassVar[struct.Struct] = struct.Struct("<qIB")

    def to_bytes(self, revision: int = 1) -> bytes:
        if revision < 2:
            return struct.pack("<q", self.time_us)
        return self._V2.pack(self.time_us, self.epoch or 0, CLOCK_FLAG_VALID if self.valid else 0)

    @classmethod
    def from_bytes(cls, data: bytes, revision: int = 1) -> Self:
        if revision < 2:
            if len(data) != 8:
                raise ProtocolError("CLOCK payload must be 8 bytes")
            (value,) = struct.unpack("<q", data)
            return cls(value, None, time_valid(value))
        if len(data) != cls._V2.size:
            raise ProtocolError(f"CLOCK answer (revision 2) must be {cls._V2.size} bytes")
        value, epoch, flags = cls._V2.unpack(data)
        return cls(value, epoch, bool(flags & CLOCK_FLAG_VALID) and time_valid(value))


# -- STATUS -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CameraStatus:
    """STATUS's answer: battery, storage, temperature and how many recordings the camera holds."""

    battery_percent: int
    charging: bool
    storage_used_bytes: int
    storage_total_bytes: int
    temperature_c: float
    recording_count: int
    _S: ClassVar[struct.Struct] = struct.Struct("<BBQQhI")

    def to_bytes(self) -> bytes:
        return self._S.pack(
            self.battery_percent,
            int(self.charging),
            self.storage_used_bytes,
            self.storage_total_bytes,
            round(self.temperature_c * 10),
            self.recording_count,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        battery, charging, used, total, temp, count = unpack_exact(cls._S, data, "STATUS response")
        if battery > 100 or charging > 1 or used > total or count > MAX_RECORDINGS:
            raise ProtocolError("STATUS response: a field is out of range")
        return cls(battery, bool(charging), used, total, temp / 10, count)


# -- LIST -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ListRequest:
    """LIST: one page of recordings from ``start``."""

    start: int
    max_count: int
    _S: ClassVar[struct.Struct] = struct.Struct("<IH")

    def to_bytes(self) -> bytes:
        return self._S.pack(self.start, self.max_count)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return cls(*unpack_exact(cls._S, data, "LIST request"))


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    """One recording as the camera lists it: id, size, camera-clock times, category, SHA-256, name."""

    id: int
    size: int
    start_us: int  # camera clock
    end_us: int
    category: Category
    sha256: bytes  # camera-side SHA-256 of the plaintext
    name: str
    #: the camera's clock epoch when it stamped start_us (revision 2); None from a revision-1 camera
    clock_epoch: int | None = None
    _S: ClassVar[struct.Struct] = struct.Struct("<IQqqB32s")

    @property
    def stamped_validly(self) -> bool:
        """Both stamps are times a set clock could show (a reset RTC stamps 1970)."""
        return time_valid(self.start_us) and time_valid(self.end_us)

    def to_bytes(self, revision: int = 1) -> bytes:
        fixed = self._S.pack(self.id, self.size, self.start_us, self.end_us, self.category, self.sha256)
        epoch = struct.pack("<I", self.clock_epoch or 0) if revision >= 2 else b""
        return fixed + epoch + _text(self.name, 255, "name")

    @classmethod
    def read(cls, r: _Reader, revision: int = 1) -> Self:
        rid, size, start, end, cat, digest = r.unpack(cls._S.format, "entry")
        epoch = r.u("<I", "clock_epoch") if revision >= 2 else None
        name = r.text("name", MAX_NAME)
        if size > MAX_RECORDING_SIZE:
            raise ProtocolError(f"LIST: recording {rid} claims {size} bytes, over the {MAX_RECORDING_SIZE} limit")
        _check_stamp(start, "LIST", "start_us")
        _check_stamp(end, "LIST", "end_us")
        if end < start:
            raise ProtocolError(f"LIST: recording {rid} ends before it starts")
        try:
            category = Category(cat)
        except ValueError:
            category = Category.UNKNOWN  # unknown tags are treated as not-training (default deny)
        return cls(rid, size, start, end, category, bytes(digest), name, epoch)


@dataclass(frozen=True, slots=True)
class ListResponse:
    """LIST's answer: how many recordings there are and one page of them."""

    total: int
    entries: tuple[RecordingInfo, ...]

    def to_bytes(self, revision: int = 1) -> bytes:
        entries = b"".join(e.to_bytes(revision) for e in self.entries)
        return struct.pack("<IH", self.total, len(self.entries)) + entries

    @classmethod
    def from_bytes(cls, data: bytes, revision: int = 1) -> Self:
        r = _Reader(data, "LIST response")
        total, count = r.unpack("<IH", "header")
        if total > MAX_RECORDINGS:
            raise ProtocolError(f"LIST response: camera claims {total} recordings, the limit is {MAX_RECORDINGS}")
        if count > MAX_LIST_PAGE:
            raise ProtocolError(f"LIST response: {count} entries in one page, the limit is {MAX_LIST_PAGE}")
        entries = tuple(RecordingInfo.read(r, revision) for _ in range(count))
        r.end()
        return cls(total, entries)


# -- READ -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ReadRequest:
    """READ: a span of a recording's bytes."""

    recording_id: int
    offset: int
    length: int
    _S: ClassVar[struct.Struct] = struct.Struct("<IQI")

    def to_bytes(self) -> bytes:
        return self._S.pack(self.recording_id, self.offset, self.length)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        req = cls(*unpack_exact(cls._S, data, "READ request"))
        if req.length > MAX_READ_SPAN:
            raise ProtocolError(f"READ request: length {req.length} over the limit {MAX_READ_SPAN}")
        return req


# -- ERASE ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EraseRequest:
    """ERASE: a recording, named with the SHA-256 the dock verified, so the camera erases only those bytes."""

    recording_id: int
    sha256: bytes

    def to_bytes(self) -> bytes:
        return struct.pack("<I32s", self.recording_id, self.sha256)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        if len(data) != 36:
            raise ProtocolError("ERASE request: wrong payload size")
        rid, digest = struct.unpack("<I32s", data)
        return cls(rid, digest)


# -- FIRMWARE ---------------------------------------------------------------------------------
def firmware_message(version: str, size: int, sha256: bytes) -> bytes:
    """What the vendor signs for an image: context, version, size and the image's SHA-256."""
    return FIRMWARE_CONTEXT + version.encode() + b"\x00" + struct.pack("<Q", size) + sha256


@dataclass(frozen=True, slots=True)
class FirmwareBegin:
    """FW_BEGIN: the image's size, SHA-256 and version, with the vendor's signature over them."""

    size: int
    sha256: bytes
    version: str
    signature: bytes  # vendor Ed25519 signature over firmware_message(...)

    def to_bytes(self) -> bytes:
        return (
            struct.pack("<Q32s", self.size, self.sha256)
            + _text(self.version, MAX_SHORT_TEXT, "version")
            + (self.signature)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = _Reader(data, "FW_BEGIN request")
        size, digest = r.unpack("<Q32s", "header")
        version = r.text("version", MAX_SHORT_TEXT)
        signature = r.take(64, "signature")
        r.end()
        if size > MAX_FIRMWARE_SIZE:
            raise ProtocolError(f"FW_BEGIN: image of {size} bytes over the limit {MAX_FIRMWARE_SIZE}")
        if size == 0:  # an empty image would commit into a slot that cannot boot
            raise ProtocolError("FW_BEGIN: an image of 0 bytes")
        return cls(size, bytes(digest), version, signature)


@dataclass(frozen=True, slots=True)
class Offset:
    """FW_BEGIN response (resume offset) and FW_CHUNK response (next offset)."""

    offset: int

    def to_bytes(self) -> bytes:
        return struct.pack("<Q", self.offset)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        if len(data) != 8:
            raise ProtocolError("offset payload must be 8 bytes")
        (value,) = struct.unpack("<Q", data)
        if value > MAX_FIRMWARE_SIZE:
            raise ProtocolError(f"offset {value} over the firmware size limit")
        return cls(value)


@dataclass(frozen=True, slots=True)
class FirmwareChunk:
    """FW_CHUNK: bytes of the image at an offset."""

    offset: int
    data: bytes

    def to_bytes(self) -> bytes:
        return struct.pack("<Q", self.offset) + self.data

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        if len(data) < 8 or len(data) - 8 > MAX_FIRMWARE_CHUNK:
            raise ProtocolError("FW_CHUNK request: wrong payload size")
        (offset,) = struct.unpack_from("<Q", data)
        return cls(offset, data[8:])


@dataclass(frozen=True, slots=True)
class FirmwareCommitted:
    """FW_COMMIT's answer: the version now active and the slot it is in."""

    version: str
    slot: int

    def to_bytes(self) -> bytes:
        return _text(self.version, MAX_SHORT_TEXT, "version") + bytes([self.slot])

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = _Reader(data, "FW_COMMIT response")
        version = r.text("version", MAX_SHORT_TEXT)
        (slot,) = r.unpack("<B", "slot")
        r.end()
        return cls(version, slot)


assert MAX_LIST_PAGE * (RecordingInfo._S.size + 4 + 1 + 255) + 6 < MAX_PAYLOAD
