"""The ``Camera`` device API: a camera's operations over any transport (python-fido2 ``Ctap2``).

This layer never builds bytes itself (``messages``/``protocol`` do) and never touches USB or serial
directly (``transport`` does). It owns what a conversation needs: sequence numbers, retries of
idempotent commands after a damaged frame, deadlines, and the checks that turn a camera's answers
into trusted values (authentication, lengths matching what was asked).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bodycam.drivers.device.api import CameraDevice, ClockReading
from bodycam.drivers.errors import AuthenticationError, DeviceError, LinkTimeoutError, ProtocolError
from bodycam.drivers.protocol import dockauth as da
from bodycam.drivers.protocol import messages as m
from bodycam.drivers.protocol.frames import (
    MAX_PAYLOAD,
    MAX_READ_SPAN,
    OVERHEAD,
    Command,
    Frame,
    FrameDecoder,
    Status,
    TruncatedFrame,
    decode_frame_at,
    encode_frame,
    status_text,
)
from bodycam.drivers.transport.base import Transport

LOG = logging.getLogger(__name__)

#: commands that may be sent again after a damaged or lost answer without changing the outcome
IDEMPOTENT = frozenset(
    {Command.HELLO, Command.IDENTIFY, Command.CLOCK_GET, Command.STATUS, Command.LIST, Command.READ, Command.FW_CHUNK}
    # revision 2: a repeated DOCK_CHALLENGE only draws a newer challenge; an older revocation list changes nothing
    | {Command.DOCK_CHALLENGE, Command.REVOCATIONS}
)
#: the smallest HELLO ``max_frame`` a camera may announce: the dock's largest request, a full FW_CHUNK
MIN_CAMERA_FRAME = OVERHEAD + 8 + m.MAX_FIRMWARE_CHUNK
#: the ``max_frame`` the dock announces: the largest frame it accepts (any frame of this protocol)
DOCK_MAX_FRAME = MAX_PAYLOAD + OVERHEAD
STALE_FRAME_LIMIT = 16  # unexpected answers skipped before the link is declared broken
#: frames of answers the dock itself abandoned (a pipelined read after an error), skipped silently
ABANDONED_FRAME_LIMIT = 4 * (16 * 1024 * 1024 // (64 * 1024))
#: bytes per second a READ answer must at least deliver: a whole answer of L bytes must arrive within
#: ``timeout + L / MIN_READ_RATE`` seconds, so a camera that trickles (or repeats empty frames) fails
#: instead of holding its bay forever (half of a USB 1.1 full-speed link; docs/protocol.md, READ)
MIN_READ_RATE = 512 * 1024


def read_deadline(timeout: float, length: int, min_rate: float = MIN_READ_RATE) -> float:
    """Seconds a whole READ answer of ``length`` bytes may take: ``timeout + length / min_rate``."""
    return timeout + length / min_rate


#: the most bytes one listing entry may take on the wire (a revision-2 entry with a name of 255 bytes)
MAX_LIST_ENTRY = m.RecordingInfo._S.size + 4 + 1 + 255


def list_deadline(timeout: float, total: int, min_rate: float = MIN_READ_RATE) -> float:
    """Seconds a whole listing of ``total`` recordings may take: two deadlines, then READ's least rate over
    the most bytes its entries may take. Each page has its own deadline and may hold fewer entries than
    asked, so without a bound on the whole a camera answering one entry a page, each just in time, held
    its bay (and an ``ingest --once`` run, with the seal of every other camera's footage) for days."""
    return 2 * timeout + total * MAX_LIST_ENTRY / min_rate


#: the most chunks a caller of :meth:`Camera.iter_read` may hold at once (``lend``): N + 1 transfer
#: buffers of ~1 MiB each are kept while such a read runs
MAX_LEND = 16
_NEVER = -(1 << 62)  # "lent no chunk yet"


class _Receiver:
    """The dock's receive side: transfers read into a small ring of reused buffers, frames decoded in place.

    Each read fills one buffer (``array('B')`` of ``transport.read_size``: pyusb fills only arrays) from
    its start, one USB transfer; whole frames in it are decoded where they landed and their payloads are
    views of it, so a 1 MiB frame costs no allocation and no copy (issue 14). A frame that a transfer
    holds only part of (a pty delivers a few KiB a read; a camera may split a frame) goes to the copying
    :class:`FrameDecoder` with everything after it until that decoder is empty again: its payloads are
    ``bytes`` of their own, and its resynchronisation and limits apply to all of them.

    Lending (:meth:`Camera.iter_read` with ``lend=N``): while ``hold`` is N, a buffer is read into again
    only once N chunks have been lent after the last one lent from it; the ring is N + 1 buffers, so in
    the steady state (a frame a transfer) none is waited for or allocated. If a buffer is still protected
    when its turn comes (many frames in one transfer, garbage, stale frames), a fresh one takes its place
    in the ring and the old one lives on in the caller's hands until it drops the views: a lent chunk is
    never overwritten, whatever the camera sends. When lending ends the lent buffers are all let go.
    """

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self.decoder = FrameDecoder()
        self._slots: list[array[int]] = []
        self._last: list[int] = []  # per buffer: the lend count when a chunk of it was last lent
        self._cur = -1
        self._view = memoryview(b"")  # the received bytes of the current buffer
        self._pos = 0  # the first of them not yet decoded
        self.hold = 0  # chunks a caller may hold (0: none lent; every chunk is copied before the next read)
        self.lent = 0

    def next_frame(self) -> Frame | None:
        """The next frame from bytes already received, or None (more must be read)."""
        if self._pos < len(self._view):
            if self.decoder.buffered == 0:
                try:
                    frame, self._pos = decode_frame_at(self._view, self._pos)
                    return frame
                except (TruncatedFrame, ProtocolError):
                    pass  # a partial frame or garbage: the decoder resynchronises over a copy
            self.decoder.feed(self._view[self._pos :])
            self._pos = len(self._view)
        return self.decoder.next_frame()

    def read(self, timeout: float) -> None:
        """One read from the transport into the next buffer (LinkTimeoutError if nothing came)."""
        buf = self._next_buffer()
        self._view = memoryview(b"")
        self._pos = 0
        n = self._transport.read_into(buf, timeout)
        self._view = memoryview(buf)[:n].toreadonly()

    def lend(self) -> None:
        """A view of the current buffer was handed to the caller, who may keep it for ``hold`` more chunks."""
        self.lent += 1
        if 0 <= self._cur < len(self._last):
            self._last[self._cur] = self.lent

    def start_lending(self, hold: int) -> None:
        self._let_go()
        self.hold = hold

    def stop_lending(self) -> None:
        """Lent buffers may still be in the caller's hands: none of them is read into again."""
        self._let_go()
        self.hold = 0

    def discard(self) -> None:
        """Drop what was received and not yet decoded (after a damaged or late answer)."""
        self._pos = len(self._view)
        self.decoder.reset()
        self._transport.discard_pending()

    def _let_go(self) -> None:
        if self._pos < len(self._view):
            self.decoder.feed(self._view[self._pos :])  # undecoded bytes are kept, in the decoder's copy
        self._view = memoryview(b"")
        self._pos = 0
        self._slots, self._last, self._cur = [], [], -1

    def _next_buffer(self) -> array[int]:
        ring = self.hold + 1
        i = (self._cur + 1) % ring
        fresh = i >= len(self._slots)
        if not fresh and self.hold and self.lent - self._last[i] < self.hold:
            fresh = True  # the caller may still hold a chunk of it: replace it, never overwrite it
        if fresh:
            buf = array("B", [0]) * self._transport.read_size
            if i >= len(self._slots):
                self._slots.append(buf)
                self._last.append(_NEVER)
            else:
                self._slots[i], self._last[i] = buf, _NEVER
        self._cur = i
        return self._slots[i]


@dataclass(frozen=True, slots=True)
class Deadline:
    """When an answer is due, and the whole budget it was given.

    Every attempt gets a fresh one (docs/protocol.md "Retries and timeouts"); a timeout names the
    budget, never the remainder of the last read, so a retry cannot look like a shorter deadline.
    """

    at: float  # on the Camera's monotonic clock
    seconds: float


def key_fingerprint(device_key: bytes) -> str:
    """``SHA256:...`` of an Ed25519 device key, as ``ssh-keygen -l`` prints it for the same key.

    What an armourer compares with the vendor's enrolment sheet; it cannot be pasted into
    ``enroll --key``, so the key a camera presents is never trusted by copying it.
    """
    blob = b"".join(len(part).to_bytes(4, "big") + part for part in (b"ssh-ed25519", device_key))
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


def check_enrolment(ident: m.Identity, enrolled_key: bytes | None) -> bytes:
    """The enrolled key, if the camera presents exactly it; AuthenticationError otherwise."""
    if enrolled_key is None:
        raise AuthenticationError(
            f"camera {ident.serial} is not enrolled (it presents device key {key_fingerprint(ident.device_key)}); "
            f"enrol it with the key on the vendor's enrolment sheet for {ident.serial}, once the sheet's fingerprint "
            f"matches: 'bodycam-sync enroll {ident.serial} --key <64 hex digits from the sheet>'"
        )
    if ident.device_key != enrolled_key:
        raise AuthenticationError(
            f"camera {ident.serial} presents a device key that differs from the enrolled one: "
            "possible impostor; refused"
        )
    return enrolled_key


class Camera:
    """One docked camera. Call :meth:`open` first; not thread-safe."""

    def __init__(
        self,
        transport: Transport,
        *,
        timeout: float = 5.0,
        retries: int = 2,
        clock: Callable[[], float] = time.monotonic,
        min_rate: float = MIN_READ_RATE,
    ) -> None:
        self.transport = transport
        self.timeout = timeout
        self.retries = retries
        self._clock = clock  # monotonic seconds; deadlines are measured on it (a test may pass a fake one)
        self.min_rate = min_rate
        self._seq = int.from_bytes(os.urandom(2), "little")
        self._rx = _Receiver(transport)
        self._abandoned: list[int] = []
        self._identity: m.Identity | None = None
        self.authenticated = False
        #: the nonce of this link's AUTH: the dock's challenge in its proof to a paired camera (revision 2)
        self.auth_nonce: bytes | None = None
        #: the protocol revision HELLO negotiated (m.MIN_PROTOCOL..m.MAX_PROTOCOL); 1 until then
        self.protocol = 1

    # -- conversation -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        if self._identity is not None:
            return f"camera {self._identity.serial}"
        return f"camera at {self.transport.kind}:{self.transport.address}"

    def call(
        self, command: Command, payload: bytes = b"", *, timeout: float | None = None, limit: int = MAX_READ_SPAN
    ) -> bytes:
        """Send one request and return the OK answer's payload.

        Raises DeviceError (camera refused), ProtocolError (bad answer after retries),
        LinkTimeoutError, DisconnectedError.
        """
        attempts = 1 + (self.retries if command in IDEMPOTENT else 0)
        for attempt in range(attempts):
            try:
                return self._call_once(command, payload, timeout or self.timeout, limit)
            except (ProtocolError, LinkTimeoutError) as err:
                if attempt + 1 >= attempts:
                    if attempts > 1 and isinstance(err, LinkTimeoutError):
                        raise LinkTimeoutError(f"{err} (tried {attempts} times)") from err
                    raise
                LOG.warning("%s: %s failed (%s); retrying", self.name, command, err)
                self._rx.discard()
        raise AssertionError("unreachable")

    def _call_once(self, command: Command, payload: bytes, timeout: float, limit: int = MAX_READ_SPAN) -> bytes:
        seq = self._send(command, payload, timeout)
        started = self._clock()
        data, more = self._receive(seq, command, self._due(timeout))
        if not more:
            return bytes(data)
        pieces = [bytes(data)]  # a copy each: the receive buffer is read into again for the next piece
        total = len(data)
        whole = started + read_deadline(timeout, limit, self.min_rate)  # the answer as a whole, not per frame
        while more:
            data, more = self._receive(seq, command, self._due(timeout, whole), whole=whole)
            pieces.append(bytes(data))
            total += len(data)
            if total > limit:  # a camera that never stops answering is refused, not buffered
                self._abandon([seq])
                raise ProtocolError(
                    f"{self.name} answered {command.name} with more than the {limit} bytes asked for: "
                    "it misreports the recording's length"
                )
        return b"".join(pieces)

    def _due(self, timeout: float, whole: float | None = None) -> Deadline:
        """A full deadline of ``timeout`` seconds from now (after the request has been written),
        capped by ``whole``, the deadline of the whole READ answer it is part of."""
        at = self._clock() + timeout
        return Deadline(at if whole is None else min(at, whole), timeout)

    def _abandon(self, seqs: list[int]) -> None:
        """Answers to these requests may still arrive; they are skipped without counting as stale."""
        self._abandoned.extend(seqs)
        del self._abandoned[:-64]

    def _send(self, command: Command, payload: bytes, timeout: float) -> int:
        self._seq = (self._seq + 1) & 0xFFFF
        self.transport.write(encode_frame(command, self._seq, payload), timeout)
        return self._seq

    def _receive(
        self, seq: int, command: Command, deadline: Deadline, *, whole: float | None = None
    ) -> tuple[bytes | memoryview, bool]:
        """The next frame answering ``seq``: (payload, more pieces follow).

        ``whole`` is the deadline of the whole READ answer (:func:`read_deadline`); when it is the
        one that passes, the timeout says the camera is too slow rather than silent.
        """
        stale = abandoned = 0
        while stale < STALE_FRAME_LIMIT and abandoned < ABANDONED_FRAME_LIMIT:
            try:
                frame = self._read_frame(deadline, command)
            except LinkTimeoutError:
                if whole is not None and deadline.at >= whole:  # the answer's deadline, not the frame's, passed
                    raise LinkTimeoutError(
                        f"{self.name} answered {command.name} slower than {self.min_rate / 1024:.0f} KiB/s "
                        "(the least a READ answer must deliver); re-dock it if this persists"
                    ) from None
                raise
            if not frame.response or frame.seq != seq:
                if frame.response and frame.seq in self._abandoned:
                    abandoned += 1  # the tail of an answer we gave up on: expected, bounded separately
                else:
                    stale += 1
                    LOG.debug("%s: skipping stale frame seq %d (waiting for %d)", self.name, frame.seq, seq)
                continue
            if frame.command != command:
                raise ProtocolError(f"{self.name} answered {command} with command 0x{frame.command:02X}")
            if frame.status == Status.MORE_FOLLOWS and command == Command.READ:
                if not frame.payload:  # would reset the deadline forever without delivering a byte
                    raise ProtocolError(
                        f"{self.name} sent an empty MORE_FOLLOWS frame: every frame but the last of a READ "
                        "answer must carry at least one byte"
                    )
                return frame.payload, True
            if frame.status != Status.OK:
                text = f"{self.name} refused {command.name}: {status_text(frame.status)}"
                if frame.status == Status.NOT_AUTHENTICATED:
                    raise AuthenticationError(text + " (authenticate first)", frame.status)
                if frame.status == Status.DOCK_NOT_PROVEN:
                    raise AuthenticationError(
                        text + " (it is paired to a force and this host has not proven it is one of its docks)",
                        frame.status,
                    )
                raise DeviceError(text, frame.status)
            return frame.payload, False
        if abandoned >= ABANDONED_FRAME_LIMIT:
            raise ProtocolError(f"{self.name} keeps answering requests the dock abandoned; re-dock it")
        raise ProtocolError(f"{self.name} sent {STALE_FRAME_LIMIT} frames that answer nothing we asked")

    def _read_frame(self, deadline: Deadline, command: Command) -> Frame:
        while True:
            frame = self._rx.next_frame()
            if frame is not None:
                return frame
            remaining = deadline.at - self._clock()
            if remaining <= 0:
                raise LinkTimeoutError(
                    f"{self.name} did not answer {command.name} within {deadline.seconds:g} s; "
                    "re-dock it if this persists"
                )
            try:
                self._rx.read(remaining)
            except LinkTimeoutError:
                continue  # a read that came back empty early does not shorten the deadline; checked above

    # -- operations ---------------------------------------------------------------------------
    def open(self) -> m.Identity:
        """Negotiate the protocol version and identify the camera (probes once)."""
        hello = m.HelloResponse.from_bytes(
            self.call(Command.HELLO, m.HelloRequest(m.MIN_PROTOCOL, m.MAX_PROTOCOL, DOCK_MAX_FRAME).to_bytes())
        )
        if not m.MIN_PROTOCOL <= hello.version <= m.MAX_PROTOCOL:
            raise ProtocolError(
                f"{self.name} chose protocol revision {hello.version}; this dock speaks "
                f"{m.MIN_PROTOCOL} to {m.MAX_PROTOCOL}"
            )
        if hello.max_frame < MIN_CAMERA_FRAME:
            raise ProtocolError(
                f"{self.name} accepts frames of at most {hello.max_frame} bytes; the protocol requires "
                f"{MIN_CAMERA_FRAME} (a full FW_CHUNK): its firmware does not implement this protocol"
            )
        self.protocol = hello.version
        self._identity = m.Identity.from_bytes(self.call(Command.IDENTIFY))
        return self._identity

    @property
    def identity(self) -> m.Identity:
        if self._identity is None:
            raise ProtocolError(f"{self.name} has not been identified; call open() first")
        return self._identity

    def authenticate(self, enrolled_key: bytes | None) -> None:
        """Prove the camera holds the device key the dock enrolled for its serial.

        Raises AuthenticationError for an unenrolled camera, a key that differs from the
        enrolled one (impostor), or a signature that does not verify.
        """
        ident = self.identity
        enrolled_key = check_enrolment(ident, enrolled_key)
        nonce = os.urandom(32)
        answer = m.AuthResponse.from_bytes(self.call(Command.AUTH, m.AuthRequest(nonce).to_bytes()))
        try:
            Ed25519PublicKey.from_public_bytes(enrolled_key).verify(
                answer.signature, m.auth_message(ident.serial, nonce)
            )
        except (InvalidSignature, ValueError) as err:
            raise AuthenticationError(
                f"camera {ident.serial} could not prove it holds its enrolled device key: refused"
            ) from err
        self.authenticated = True
        self.auth_nonce = nonce

    def clock(self) -> ClockReading:
        """One CLOCK_GET round trip. A clock that reads outside 2000..2100 (a reset RTC) is returned
        with ``valid=False`` rather than refused, so the dock can record it and set it."""
        before = time.time()
        value = m.ClockState.from_bytes(self.call(Command.CLOCK_GET), self.protocol)
        after = time.time()
        return ClockReading(value.time_us / 1e6, (before + after) / 2, after - before, value.epoch, value.valid)

    def set_clock(self, now: float | None = None) -> tuple[ClockReading, ClockReading]:
        """Set the camera clock to the dock's; return the readings before and after."""
        before = self.clock()
        target = (now if now is not None else time.time()) + before.round_trip_s / 2
        self.call(Command.CLOCK_SET, m.ClockValue(round(target * 1e6)).to_bytes())
        return before, self.clock()

    def status(self) -> m.CameraStatus:
        return m.CameraStatus.from_bytes(self.call(Command.STATUS))

    def recordings(self) -> list[m.RecordingInfo]:
        """Every recording, paged; a camera that pads, repeats or never ends its listing is refused."""
        out: list[m.RecordingInfo] = []
        seen: set[int] = set()
        total: int | None = None
        started = self._clock()
        due = float("inf")
        while total is None or len(out) < total:
            if self._clock() > due:
                raise LinkTimeoutError(
                    f"{self.name} listed {len(out)} of {total} recordings in {self._clock() - started:.0f} s, more "
                    f"than the {due - started:.0f} s a listing may take; re-dock it if this persists"
                )
            page = m.ListResponse.from_bytes(
                self.call(Command.LIST, m.ListRequest(len(out), m.MAX_LIST_PAGE).to_bytes()), self.protocol
            )
            if total is None:
                total = page.total
                due = started + list_deadline(self.timeout, total, self.min_rate)
            elif page.total != total:
                raise ProtocolError(f"{self.name} changed its recording count mid-listing ({total} -> {page.total})")
            if not page.entries and len(out) < total:
                raise ProtocolError(f"{self.name} promised {total} recordings but listed {len(out)}")
            for entry in page.entries:
                if entry.id in seen:
                    raise ProtocolError(f"{self.name} listed recording {entry.id} twice")
                seen.add(entry.id)
                out.append(entry)
            if len(out) > total:
                raise ProtocolError(f"{self.name} listed more recordings than the {total} it promised")
        return out

    def read(self, recording: m.RecordingInfo, offset: int, length: int) -> bytes:
        """Read ``length`` bytes (or up to the end) of a recording; the camera must send exactly that."""
        if not 0 <= offset <= recording.size:
            raise ValueError(f"offset {offset} outside recording {recording.id} of {recording.size} bytes")
        length = min(length, MAX_READ_SPAN, recording.size - offset)
        data = self.call(Command.READ, m.ReadRequest(recording.id, offset, length).to_bytes(), limit=length)
        self._check_length(recording, offset, len(data), length)
        return data

    def _check_length(self, recording: m.RecordingInfo, offset: int, got: int, expected: int) -> None:
        if got != expected:
            raise ProtocolError(
                f"{self.name} returned {got} bytes of recording {recording.id} at offset {offset}, "
                f"expected {expected}: it misreports the recording's length"
            )

    def iter_read(
        self,
        recording: m.RecordingInfo,
        start: int = 0,
        span: int = 8 * 1024 * 1024,
        *,
        window: int = 2,
        lend: int = 0,
    ) -> Iterator[bytes | memoryview]:
        """Yield a recording from ``start`` to its end, frame by frame, with bounded memory.

        Each READ asks for ``span`` bytes, which the camera answers in frames of up to MAX_READ;
        ``window`` requests stay in flight so the camera prepares the next span while the dock
        consumes this one. A damaged or late frame drops the pipeline and the read resumes at the
        first byte not yet yielded (answers to abandoned requests are skipped as stale), up to
        ``retries`` times in a row.

        ``lend`` is how long a chunk stays the caller's (the seam's buffer contract, issue 14):

        * 0 (the default): each chunk is the caller's to keep for as long as it likes (a copy out of
          the receive buffer; ``b"".join(iter_read(...))`` is safe).
        * N (1..MAX_LEND): each frame's chunk is a read-only view of the camera's receive buffers,
          *lent*: the last N chunks yielded stay intact while the generator runs on, an older one may
          be overwritten by a later transfer. A caller that holds at most N (the pull: its read-ahead
          queue and the chunk it is encrypting) pays no allocation and no copy per frame. The camera
          keeps N + 1 transfer buffers for the read and lets them all go when it ends; a chunk the
          copying decoder produced (a frame split across reads) is ``bytes`` either way.
        """
        if not 0 <= lend <= MAX_LEND:
            raise ValueError(f"lend must be 0..{MAX_LEND} chunks, got {lend}")
        self._rx.start_lending(lend)
        try:
            yield from self._iter_read(recording, start, span, window, lend)
        finally:
            self._rx.stop_lending()

    def _iter_read(
        self, recording: m.RecordingInfo, start: int, span: int, window: int, lend: int
    ) -> Iterator[bytes | memoryview]:
        span = max(1, min(span, MAX_READ_SPAN))
        offset = next_request = start
        in_flight: deque[tuple[int, int, int]] = deque()
        failures = 0
        #: seconds the head answer may still take as a whole; the clock stops while the caller holds
        #: a yielded frame (a slow bucket downstream is not the camera's fault)
        budget: float | None = None
        while offset < recording.size:
            while len(in_flight) < max(1, window) and next_request < recording.size:
                length = min(span, recording.size - next_request)
                request = m.ReadRequest(recording.id, next_request, length).to_bytes()
                in_flight.append((self._send(Command.READ, request, self.timeout), next_request, length))
                next_request += length
            seq, at, length = in_flight[0]
            if budget is None:  # the head answer's clock starts once every earlier answer is whole
                budget = read_deadline(self.timeout, length, self.min_rate)
            waited = self._clock()
            whole = waited + budget
            try:
                data, more = self._receive(seq, Command.READ, self._due(self.timeout, whole), whole=whole)
                budget -= self._clock() - waited
            except (ProtocolError, LinkTimeoutError) as err:
                failures += 1
                if failures > self.retries:
                    raise
                LOG.warning("%s: READ at %d failed (%s); resuming at %d", self.name, at, err, offset)
                self._abandon([s for s, _at, _len in in_flight])
                in_flight.clear()
                budget = None
                self._rx.discard()
                next_request = offset
                continue
            end = offset + len(data)
            if end > at + length or (more and end >= at + length) or (not more and end != at + length):
                self._abandon([s for s, _at, _len in in_flight])
                self._check_length(recording, at, end - at + (1 if more else 0), length)
            offset += len(data)
            if not more:
                in_flight.popleft()
                budget = None
                failures = 0  # only a whole answer ends a run of failures: a trickle must not reset it
            if data:
                if isinstance(data, memoryview):  # a view of the receive buffer
                    if not lend:
                        data = bytes(data)
                    else:
                        self._rx.lend()
                yield data

    def erase(self, recording_id: int, sha256: bytes) -> None:
        """Erase one recording; the camera refuses (HASH_MISMATCH) unless ``sha256`` is its own."""
        self.call(Command.ERASE, m.EraseRequest(recording_id, sha256).to_bytes())

    def firmware_begin(self, size: int, sha256: bytes, version: str, signature: bytes) -> int:
        """Start (or resume) a firmware transfer; returns the offset the camera already holds."""
        payload = m.FirmwareBegin(size, sha256, version, signature).to_bytes()
        offset = m.Offset.from_bytes(self.call(Command.FW_BEGIN, payload)).offset
        if offset > size:
            raise ProtocolError(f"{self.name} claims {offset} firmware bytes of a {size}-byte image")
        return offset

    def firmware_chunk(self, offset: int, data: bytes) -> int:
        return m.Offset.from_bytes(self.call(Command.FW_CHUNK, m.FirmwareChunk(offset, data).to_bytes())).offset

    def firmware_commit(self) -> m.FirmwareCommitted:
        return m.FirmwareCommitted.from_bytes(self.call(Command.FW_COMMIT, timeout=max(self.timeout, 30.0)))

    # -- mutual authentication (revision 2; docs/protocol.md "Dock proof and pairing") -------------
    def dock_challenge(self) -> da.DockChallenge:
        """The camera's pairing state and a fresh challenge for this link (voids any earlier proof)."""
        return da.DockChallenge.from_bytes(self.call(Command.DOCK_CHALLENGE))

    def pair(self, authority_key: bytes, proof: da.DockProof) -> None:
        """Provision the force's dock authority onto an unpaired camera (ALREADY_PAIRED otherwise)."""
        self.call(Command.PAIR, da.PairRequest(authority_key, proof).to_bytes())

    def prove(self, proof: da.DockProof) -> None:
        """Prove to a paired camera that this host is a dock of its force, for this connection."""
        self.call(Command.DOCK_PROVE, proof.to_bytes())

    def send_revocations(self, revocations: bytes) -> int:
        """Give the camera the force's signed revocation list; returns the sequence now in force."""
        answer = self.call(Command.REVOCATIONS, revocations)
        if len(answer) != 4:
            raise ProtocolError(f"{self.name}: REVOCATIONS response: wrong payload size")
        return int.from_bytes(answer, "little")

    def unpair(self) -> None:
        """Forget the force's dock authority (only a proven dock of that force may ask)."""
        self.call(Command.UNPAIR)

    def vendor_reset(self, signature: bytes) -> int:
        """The vendor's reset, signed over the latest challenge: erases all footage, then unpairs."""
        answer = self.call(Command.VENDOR_RESET, signature)
        if len(answer) != 4:
            raise ProtocolError(f"{self.name}: VENDOR_RESET response: wrong payload size")
        return int.from_bytes(answer, "little")

    def refuses_unproven_host(self) -> bool:
        """Ask for one listing entry before proving anything: a paired camera that enforces refuses."""
        try:
            self.call(Command.LIST, m.ListRequest(0, 1).to_bytes())
        except DeviceError as err:
            if err.status == Status.DOCK_NOT_PROVEN:
                return True
            raise
        return False

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Camera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: the wire camera is the one camera seam (mypy checks it; drivers/device/api.py)
_SEAM: type[CameraDevice] = Camera
