"""Protocol v1 framing: pure functions on bytes, no I/O (docs/protocol.md).

A frame is a 16-byte header, the payload and a CRC-32C of the payload::

    offset size field
    0      2    magic  b"BC"
    2      1    version (1)
    3      1    command; responses set bit 0x80
    4      2    sequence number (u16, echoed by the response)
    6      2    status (u16, 0 in requests)
    8      4    payload length (u32, <= MAX_PAYLOAD)
    12     4    CRC-32C of bytes 0..11
    16     n    payload
    16+n   4    CRC-32C of the payload

All integers little-endian. The header carries its own CRC so that a corrupted length is refused
before a single payload byte is awaited: a reader never waits for, or allocates, more than
MAX_PAYLOAD bytes on the word of a damaged header.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from bodycam.drivers.crc import crc32c
from bodycam.drivers.errors import ProtocolError

MAGIC = b"BC"
VERSION = 1
RESPONSE_BIT = 0x80
HEADER = struct.Struct("<2sBBHHII")
TRAILER = struct.Struct("<I")
HEADER_SIZE = HEADER.size  # 16
OVERHEAD = HEADER_SIZE + TRAILER.size  # 20

MAX_READ = 1024 * 1024  # most recording bytes in one frame
MAX_READ_SPAN = 16 * 1024 * 1024  # most bytes one READ request may ask for (answered in several frames)
MAX_PAYLOAD = MAX_READ + 4096  # any frame's payload; room for small headers next to a full chunk
#: garbage tolerated while hunting for the next frame before the link is declared broken
MAX_RESYNC_BYTES = 2 * (MAX_PAYLOAD + OVERHEAD)


class Command(enum.IntEnum):
    HELLO = 0x01
    IDENTIFY = 0x02
    AUTH = 0x03
    CLOCK_GET = 0x04
    CLOCK_SET = 0x05
    STATUS = 0x06
    LIST = 0x07
    READ = 0x08
    ERASE = 0x09
    FW_BEGIN = 0x0A
    FW_CHUNK = 0x0B
    FW_COMMIT = 0x0C
    # revision 2: mutual authentication (docs/protocol.md "Dock proof and pairing")
    DOCK_CHALLENGE = 0x20
    DOCK_PROVE = 0x21
    PAIR = 0x22
    UNPAIR = 0x23
    REVOCATIONS = 0x24
    VENDOR_RESET = 0x25

    def __str__(self) -> str:
        return f"0x{self.value:02X} {self.name}"


#: commands a camera refuses with NOT_AUTHENTICATED until AUTH succeeds in the session (the **auth**
#: column of docs/protocol.md "Commands"): whatever touches footage, the clock or firmware
NEEDS_AUTH = frozenset(
    {
        Command.LIST,
        Command.READ,
        Command.ERASE,
        Command.CLOCK_SET,
        Command.FW_BEGIN,
        Command.FW_CHUNK,
        Command.FW_COMMIT,
    }
)
#: revision 2: what a paired camera also refuses, with DOCK_NOT_PROVEN, until the host proves it is a dock
#: of the camera's force (docs/protocol.md "Dock proof and pairing"): the auth commands and UNPAIR
NEEDS_DOCK = NEEDS_AUTH | {Command.UNPAIR}


class Status(enum.IntEnum):
    OK = 0x00
    UNKNOWN_COMMAND = 0x01
    BAD_REQUEST = 0x02
    UNSUPPORTED_VERSION = 0x03
    NOT_AUTHENTICATED = 0x04
    NO_SUCH_RECORDING = 0x05
    OUT_OF_RANGE = 0x06
    HASH_MISMATCH = 0x07
    BUSY = 0x08
    FIRMWARE_REJECTED = 0x09
    STORAGE_ERROR = 0x0A
    INTERNAL = 0x0B
    MORE_FOLLOWS = 0x0C  # a piece of a longer answer: more frames with the same seq follow
    # revision 2: mutual authentication
    DOCK_NOT_PROVEN = 0x20  # a paired camera: this host has not proven it is a dock of the camera's force
    DOCK_REJECTED = 0x21  # the dock proof or certificate does not verify (or no fresh challenge)
    CERT_EXPIRED = 0x22  # the dock certificate is not valid at the camera's notion of now
    DOCK_REVOKED = 0x23  # the force has revoked this dock
    ALREADY_PAIRED = 0x24  # PAIR to a paired camera
    NOT_PAIRED = 0x25  # DOCK_PROVE, UNPAIR or REVOCATIONS to an unpaired camera

    def __str__(self) -> str:
        return f"0x{self.value:02X} {self.name}"


def status_text(code: int) -> str:
    """``0x07 HASH_MISMATCH`` for known codes, ``0x77 UNKNOWN_STATUS`` otherwise (unknown codes are kept)."""
    try:
        return str(Status(code))
    except ValueError:
        return f"0x{code:02X} UNKNOWN_STATUS"


def command_text(code: int) -> str:
    try:
        return str(Command(code & ~RESPONSE_BIT))
    except ValueError:
        return f"0x{code:02X} UNKNOWN_COMMAND"


@dataclass(frozen=True, slots=True)
class Frame:
    """One protocol frame, decoded (docs/protocol.md, framing)."""

    command: int  # without the response bit
    seq: int
    payload: bytes | memoryview  # a view into the received transfer on the dock's fast path
    status: int = 0
    response: bool = False

    def to_bytes(self) -> bytes:
        return encode_frame(self.command, self.seq, self.payload, status=self.status, response=self.response)


class TruncatedFrame(ProtocolError):
    """More bytes are needed; ``needed`` says how many at least."""

    def __init__(self, needed: int) -> None:
        super().__init__(f"frame incomplete: {needed} more bytes needed")
        self.needed = needed


def encode_frame(
    command: int, seq: int, payload: bytes | memoryview = b"", *, status: int = 0, response: bool = False
) -> bytes:
    if not 0 <= command < RESPONSE_BIT:
        raise ValueError(f"command {command} out of range")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds MAX_PAYLOAD {MAX_PAYLOAD}")
    head = struct.pack(
        "<2sBBHHI",
        MAGIC,
        VERSION,
        command | (RESPONSE_BIT if response else 0),
        seq & 0xFFFF,
        status & 0xFFFF,
        len(payload),
    )
    return b"".join((head, TRAILER.pack(crc32c.crc32c(head)), payload, TRAILER.pack(crc32c.crc32c(payload))))


def parse_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> tuple[int, int, int, int, bool]:
    """Check the 16-byte header at ``buf[pos:]``; return (command, seq, status, length, response).

    Raises ProtocolError for a bad magic, version, CRC or length. The CRC is taken over a view of
    ``buf``, not a copy of the header.
    """
    magic, version, cmd, seq, status, length, crc = HEADER.unpack_from(buf, pos)
    if magic != MAGIC:
        raise ProtocolError(f"bad frame magic {bytes(magic).hex()}")
    with memoryview(buf) as view:
        if crc32c.crc32c(view[pos : pos + 12]) != crc:
            raise ProtocolError("frame header CRC mismatch")
    if version != VERSION:
        raise ProtocolError(f"frame version {version} not supported (this dock speaks {VERSION})")
    if length > MAX_PAYLOAD:
        raise ProtocolError(f"frame announces {length} payload bytes, more than the limit {MAX_PAYLOAD}")
    return cmd & ~RESPONSE_BIT, seq, status, length, bool(cmd & RESPONSE_BIT)


def decode_frame(buf: bytes | bytearray | memoryview) -> tuple[Frame, bytes]:
    """Decode one frame at the start of ``buf``; return it and the bytes after it.

    Raises TruncatedFrame when ``buf`` holds only part of a frame, ProtocolError when it is invalid.
    """
    view = memoryview(buf)
    frame, end = decode_frame_at(view, 0)
    # Zero-copy when ``buf`` is immutable (a whole transfer): the payload is a view into it.
    if not isinstance(buf, bytes):
        frame = Frame(frame.command, frame.seq, bytes(frame.payload), frame.status, frame.response)
    return frame, bytes(view[end:])


def decode_frame_at(view: memoryview, pos: int) -> tuple[Frame, int]:
    """Decode one frame at ``view[pos:]`` in place; return it and the position just after it.

    The payload is a view into ``view`` (no copy): the caller decides how long that buffer stays
    intact (the dock's receive buffers: drivers/device/camera.py). The announced length is checked
    against MAX_PAYLOAD by the header's own CRC-protected parse before anything is indexed with it.
    Raises TruncatedFrame when ``view`` holds only part of a frame, ProtocolError when it is invalid.
    """
    have = len(view) - pos
    if have < HEADER_SIZE:
        raise TruncatedFrame(HEADER_SIZE - have)
    command, seq, status, length, response = parse_header(view, pos)
    end = pos + HEADER_SIZE + length + TRAILER.size
    if len(view) < end:
        raise TruncatedFrame(end - len(view))
    payload = view[pos + HEADER_SIZE : pos + HEADER_SIZE + length]
    (crc,) = TRAILER.unpack_from(view, pos + HEADER_SIZE + length)
    if crc32c.crc32c(payload) != crc:
        raise ProtocolError(f"payload CRC mismatch in {command_text(command)} frame seq {seq}")
    return Frame(command, seq, payload, status, response), end


class FrameDecoder:
    """Turns a byte stream into frames, resynchronising after garbage (esptool ``slip_reader``).

    Bytes go in with :meth:`feed`; :meth:`next_frame` returns a frame or ``None`` when more bytes
    are needed (:attr:`needed` says how many at least). A header that fails its checks costs one
    byte and the hunt for ``MAGIC`` resumes; a payload CRC failure drops that frame and raises, so
    the caller can retry the command. More than MAX_RESYNC_BYTES of garbage in a row raises.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.skipped = 0  # garbage bytes dropped since the last good frame
        self.needed = HEADER_SIZE

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    def next_frame(self) -> Frame | None:
        buf = self._buf
        while True:
            if len(buf) < HEADER_SIZE:
                self._resync_guard(0)
                self.needed = HEADER_SIZE - len(buf)
                return None
            if buf[0:2] != MAGIC:
                start = buf.find(MAGIC, 1)
                drop = start if start > 0 else len(buf) - (1 if buf[-1:] == MAGIC[:1] else 0)
                self._drop(drop)
                continue
            try:
                command, seq, status, length, response = parse_header(buf)
            except ProtocolError:
                self._drop(1)
                continue
            end = HEADER_SIZE + length + TRAILER.size
            if len(buf) < end:
                self.needed = end - len(buf)
                return None
            with memoryview(buf) as view:
                intact = (
                    crc32c.crc32c(view[HEADER_SIZE : HEADER_SIZE + length])
                    == TRAILER.unpack_from(view, HEADER_SIZE + length)[0]
                )
                payload = bytes(view[HEADER_SIZE : HEADER_SIZE + length]) if intact else b""
            del buf[:end]
            self.skipped = 0
            self.needed = HEADER_SIZE
            if not intact:
                raise ProtocolError(f"payload CRC mismatch in {command_text(command)} frame seq {seq}")
            return Frame(command, seq, payload, status, response)

    def _drop(self, count: int) -> None:
        del self._buf[:count]
        self.skipped += count
        self._resync_guard(0)

    def _resync_guard(self, extra: int) -> None:
        if self.skipped + extra > MAX_RESYNC_BYTES:
            skipped, self.skipped = self.skipped, 0
            self._buf.clear()
            raise ProtocolError(f"no valid frame in {skipped} bytes: the link carries garbage")

    def reset(self) -> None:
        self._buf.clear()
        self.skipped = 0
        self.needed = HEADER_SIZE

    @property
    def buffered(self) -> int:
        return len(self._buf)
