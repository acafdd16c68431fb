"""The virtual camera: the firmware side of protocol v1, a real peer for the real driver code.

It implements :class:`~bodycam.drivers.virtual.link.ByteLink`, so the same object is served over
USB/IP (``usbip_device``) and over a pty (``pty_device``), or paired in-process for fast unit tests.
It speaks the very ``protocol``/``messages`` modules the dock uses, from the camera's side.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bodycam.drivers.errors import ProtocolError
from bodycam.drivers.models import DEFAULT_MODEL, CameraModel
from bodycam.drivers.protocol import messages as m
from bodycam.drivers.protocol.frames import (
    MAX_PAYLOAD,
    MAX_READ,
    NEEDS_AUTH,
    OVERHEAD,
    Command,
    Frame,
    FrameDecoder,
    Status,
    encode_frame,
)
from bodycam.drivers.virtual.faults import Faults
from bodycam.drivers.virtual.link import LinkClosed
from bodycam.drivers.virtual.pairing import COMMANDS as PAIRING_COMMANDS
from bodycam.drivers.virtual.pairing import Pairing
from bodycam.drivers.virtual.scenario import ContentSource, SyntheticRecording

LOG = logging.getLogger(__name__)
VENDOR_SEED = b"bodycam-sim-vendor-key"


def sim_device_key(serial: str) -> Ed25519PrivateKey:
    """The virtual camera's device key, derived from its serial so enrolment is reproducible (sim only)."""
    return Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"bodycam-sim-device-key\x00" + serial.encode()).digest()
    )


def sim_vendor_key() -> Ed25519PrivateKey:
    """The test vendor's firmware-signing key (sim only; real cameras carry the vendor's public key in ROM)."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(VENDOR_SEED).digest())


def public_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


class _Job:
    """A READ answer produced frame by frame when the medium asks for the next transfer.

    Its place in the outbox keeps answers in order; building lazily keeps the camera's work on
    the medium's thread (as a device's DMA engine fills each transfer) and never blocks the ack
    of the next request, so the dock can keep several READs in flight.
    """

    __slots__ = ("frames",)

    def __init__(self, frames: Iterator[bytes]) -> None:
        self.frames = frames


def trickle_due(start: float, served: int, trickle_bps: int) -> float:
    """When a trickle-paced READ frame may go: the answer's start plus the bytes served so far, this
    frame's included, at ``trickle_bps`` (a schedule, as a USB link clocks its bytes).

    The camera sleeps only what remains until then, so the time the frame then takes to reach the dock
    counts against the next frame's slot instead of adding to it: holding each frame its length at the
    rate on top of its send time paced a camera asked for 40 MB/s at ~32 (issue 14). The first frame is
    still held its length at the rate, and an answer never runs ahead of the rate on average; up to
    ~10 MB/s a frame is ``trickle_bps // 10`` bytes, a 0.1 s slot, which the hostage tests' per-frame
    deadlines use.
    """
    return start + served / trickle_bps


class TrickleSchedule:
    """The trickle-paced camera's schedule, kept across the READ answers of one transfer.

    Each frame may go at the schedule's start + the bytes served since, at ``rate`` (:func:`trickle_due`).
    An answer that continues the last one (the same recording, from the offset where it ended) keeps
    its schedule when it starts within one frame's slot of the last frame's due time: restarting it
    with each answer held the first frame of every answer its whole slot on top of the time the last one
    took to send, which lost ~3 % of the rate at 4 MiB answers (a camera asked for 40 MB/s moved 37-38,
    issue 14). A later answer, another recording or another offset starts a new schedule, so a dock
    that stops asking never gets a burst to catch up: as a USB link clocks its bytes, time it idles is lost.
    """

    def __init__(self, rate: int, slot_bytes: int) -> None:
        self.rate = rate
        self.slot_s = max(1, slot_bytes) / rate  # one frame's slot: the lateness a continuing answer may have
        self._where: tuple[int, int] | None = None  # (recording id, offset) the last answer ended at
        self._start = 0.0  # the schedule's start and the offset it counts from
        self._base = 0
        self._last_due = 0.0

    def begin(self, recording_id: int, offset: int, now: float) -> None:
        """An answer from ``offset`` of ``recording_id`` starts at ``now``."""
        continues = self._where == (recording_id, offset) and now <= self._last_due + self.slot_s
        if not continues:
            self._start, self._base = now, offset
        self._where = (recording_id, offset)

    def forget(self) -> None:
        """A new connection: the next answer starts a schedule of its own."""
        self._where = None

    def due(self, end: int) -> float:
        """When the frame ending at offset ``end`` may go; the answer has now served up to ``end``."""
        assert self._where is not None, "TrickleSchedule.due before begin"
        self._where = (self._where[0], end)
        self._last_due = trickle_due(self._start, end - self._base, self.rate)
        return self._last_due


@dataclass
class FirmwareSlots:
    active_version: str = "1.4.0"
    active_slot: int = 0
    pending: bytearray = field(default_factory=bytearray)
    pending_meta: m.FirmwareBegin | None = None


class VirtualCamera:
    """One emulated camera; thread-safe between the medium's receive and transmit sides."""

    def __init__(
        self,
        serial: str,
        recordings: list[SyntheticRecording],
        *,
        model: CameraModel = DEFAULT_MODEL,
        clock_offset_s: float = 0.0,
        faults: Faults | None = None,
        battery_percent: int = 87,
        storage_total_bytes: int = 128 * 1024**3,
    ) -> None:
        self.serial = serial
        self.model = model
        self.faults = faults or Faults()
        self.recordings = {r.id: r for r in recordings}
        self.content = ContentSource(serial)
        self.clock_offset_s = clock_offset_s
        #: the clock epoch: bumped at each CLOCK_SET (and when the RTC lost power); stamped into recordings
        self.clock_epoch = 1
        #: False while the RTC has not been set since it lost power (it then counts from 1970)
        self.rtc_valid = True
        if self.faults.rtc_reset:
            # The RTC lost power ten minutes before the first recording and restarted at 1970-01-01;
            # the camera noticed at boot (a new epoch) and stamped everything since on that clock.
            reset_at = min((r.true_start for r in recordings), default=time.time() - 3600) - 600
            self.clock_offset_s, self.clock_epoch, self.rtc_valid = -reset_at, 2, False
        #: recording id -> (clock offset, epoch) when it was stamped: setting the clock later moves neither
        self._stamps: dict[int, tuple[float, int]] = {r.id: (self.clock_offset_s, self.clock_epoch) for r in recordings}
        self.battery_percent = battery_percent
        self.storage_total_bytes = storage_total_bytes
        self.firmware = FirmwareSlots()
        self.erased: list[int] = []
        self._device_key = sim_device_key(serial)
        self._signing_key = Ed25519PrivateKey.generate() if self.faults.impostor else self._device_key
        self._vendor_key = sim_vendor_key().public_key()
        self._rng = random.Random(serial)
        self._decoder = FrameDecoder()
        self._outbox: deque[bytes | _Job] = deque()
        self._cond = threading.Condition()
        self._authenticated = False
        #: the highest protocol revision this firmware speaks, and the one HELLO chose on this link
        self.max_protocol = 1 if self.faults.v1_only else m.MAX_PROTOCOL
        self.protocol = 1
        self._read_bytes = 0
        self._unplug_armed = self.faults.unplug_at is not None
        self._fw_unplug_armed = self.faults.unplug_fw_at is not None
        self._list_calls = 0
        self._hold_until = 0.0
        self._hung = False
        piece = min(MAX_READ, self.model.max_read)
        self._trickle = (
            TrickleSchedule(self.faults.trickle_bps, max(1, min(piece, self.faults.trickle_bps // 10)))
            if self.faults.trickle_bps
            else None
        )
        #: mutual authentication (revision 2): pairing survives re-plugs, the proof lasts one connection
        self.pairing = Pairing(serial, self._vendor_key, self._erase_all, accept_any_host=self.faults.accept_any_host)

    # -- ByteLink -----------------------------------------------------------------------------
    def reset(self) -> None:
        """A new connection (re-plug): forget the conversation, keep the camera's state."""
        with self._cond:
            self._decoder.reset()
            self._outbox.clear()
            self._authenticated = False
            self.protocol = 1
            self._hold_until = 0.0
            if self._trickle is not None:
                self._trickle.forget()
            self.pairing.new_connection()

    def receive(self, data: bytes) -> None:
        self._decoder.feed(data)
        while True:
            try:
                frame = self._decoder.next_frame()
            except ProtocolError as err:
                LOG.debug("camera %s dropped a damaged request: %s", self.serial, err)
                continue
            if frame is None:
                return
            if (
                frame.command == Command.READ
                and not frame.response
                and self._authenticated
                and not self.pairing.refuses(Command.READ)
            ):
                with self._cond:
                    self._outbox.append(_Job(self._read_frames(frame)))
                    self._cond.notify_all()
                continue
            answer = self._answer(frame)
            if answer is None:
                continue
            with self._cond:
                self._outbox.append(answer)
                self._cond.notify_all()

    def transmit(self, max_bytes: int, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if not self._outbox and not self._cond.wait_for(lambda: bool(self._outbox), timeout):
                    return b""
                head = self._outbox[0]
                if not isinstance(head, _Job):
                    break
                try:
                    frame = next(head.frames)
                except StopIteration:
                    self._outbox.popleft()
                    continue
                except LinkClosed:
                    self._outbox.clear()
                    raise
                self._outbox.appendleft(frame)
                break
            hold = self._hold_until - time.monotonic()
            if hold > 0:
                if time.monotonic() + hold > deadline:
                    self._cond.wait(max(0.0, deadline - time.monotonic()))
                    return b""
                while (hold := self._hold_until - time.monotonic()) > 0:
                    self._cond.wait(hold)
            self._hold_until = 0.0
            data = self._outbox[0]
            assert isinstance(data, bytes)
            if len(data) <= max_bytes:
                self._outbox.popleft()
                return data
            self._outbox[0] = data[max_bytes:]
            return data[:max_bytes]

    # -- firmware logic -----------------------------------------------------------------------
    def _answer(self, frame: Frame) -> bytes | None:
        if frame.response:
            return None
        try:
            command = Command(frame.command)
        except ValueError:
            return encode_frame(frame.command, frame.seq, status=Status.UNKNOWN_COMMAND, response=True)
        if command in NEEDS_AUTH and not self._authenticated:
            return encode_frame(command, frame.seq, status=Status.NOT_AUTHENTICATED, response=True)
        if command in PAIRING_COMMANDS and self.protocol < 2:  # revision 1 has no such command
            return encode_frame(command, frame.seq, status=Status.UNKNOWN_COMMAND, response=True)
        if self.pairing.refuses(command):  # a paired camera and a host that has not proven it is a dock
            return encode_frame(command, frame.seq, status=Status.DOCK_NOT_PROVEN, response=True)
        try:
            status, payload = self._dispatch(command, bytes(frame.payload))
        except ProtocolError:
            status, payload = Status.BAD_REQUEST, b""
        return self._damage(encode_frame(command, frame.seq, payload, status=status, response=True))

    def _damage(self, out: bytes) -> bytes:
        if self.faults.flip_rate and self._rng.random() < self.faults.flip_rate * len(out):
            flipped = bytearray(out)
            pos = self._rng.randrange(len(flipped))
            flipped[pos] ^= 1 << self._rng.randrange(8)
            out = bytes(flipped)
        return out

    def _read_frames(self, frame: Frame) -> Iterator[bytes]:
        """Answer a READ with one frame per ``model.max_read`` bytes, all but the last MORE_FOLLOWS."""
        try:
            req = m.ReadRequest.from_bytes(bytes(frame.payload))
        except ProtocolError:
            yield encode_frame(Command.READ, frame.seq, status=Status.BAD_REQUEST, response=True)
            return
        rec = self.recordings.get(req.recording_id)
        if rec is None:
            yield encode_frame(Command.READ, frame.seq, status=Status.NO_SUCH_RECORDING, response=True)
            return
        if self.faults.empty_more_follows:  # never a byte, never the end: each frame restarts a naive deadline
            while True:
                yield encode_frame(Command.READ, frame.seq, status=Status.MORE_FOLLOWS, response=True)
        if self._hung:
            return
        if req.offset > rec.size + (4096 if self.faults.lie_length else 0):
            yield encode_frame(Command.READ, frame.seq, status=Status.OUT_OF_RANGE, response=True)
            return
        piece = min(MAX_READ, self.model.max_read)
        if self.faults.trickle_bps:
            piece = max(1, min(piece, self.faults.trickle_bps // 10))
        end = min(req.offset + req.length, rec.size)
        offset = req.offset
        if self._trickle is not None:  # the answer's schedule starts when its first frame is made
            self._trickle.begin(req.recording_id, offset, time.monotonic())
        while True:
            data = self.content.read(rec, offset, min(piece, end - offset))
            offset += len(data)
            last = offset >= end
            if self.faults.stall_ms:  # the answer is held back, as a camera busy with its flash would
                self._hold_until = time.monotonic() + self.faults.stall_ms / 1000
            if self._trickle is not None:  # every frame in time for a per-frame deadline, the whole answer not
                self._hold_until = self._trickle.due(offset)
            hang = self.faults.hang_read_at
            if hang is not None and self._read_bytes + len(data) > hang:
                self._hung = True  # firmware wedged mid-answer: the link stays up, nothing more comes
                LOG.info("camera %s hangs after %d READ bytes (fault hang-read-at)", self.serial, self._read_bytes)
                return
            self._read_bytes += len(data)
            if self._unplug_armed and self.faults.unplug_at is not None and self._read_bytes > self.faults.unplug_at:
                self._unplug_armed = False
                raise LinkClosed(f"camera {self.serial} unplugged")
            status = Status.OK if last else Status.MORE_FOLLOWS
            yield self._damage(encode_frame(Command.READ, frame.seq, data, status=status, response=True))
            if last:
                return

    def _dispatch(self, command: Command, payload: bytes) -> tuple[int, bytes]:
        if command == Command.HELLO:
            hello = m.HelloRequest.from_bytes(payload)
            chosen = min(self.max_protocol, hello.max_version)
            if chosen < max(hello.min_version, m.MIN_PROTOCOL):
                return Status.UNSUPPORTED_VERSION, b""
            # HELLO starts a session (docs/protocol.md "Sessions"): on a serial line, where the camera
            # cannot see the dock close the port, it is what keeps the next program that opens it
            # from inheriting the last one's authentication
            self._authenticated = False
            self.pairing.new_connection()  # and any dock proof with it
            self.protocol = chosen
            return Status.OK, m.HelloResponse(chosen, MAX_PAYLOAD + OVERHEAD).to_bytes()
        if command == Command.IDENTIFY:
            ident = m.Identity(
                self.max_protocol,
                self.model.vid,
                self.model.pid,
                self.model.name,
                self.serial,
                self.firmware.active_version,
                public_bytes(self._device_key),
            )
            return Status.OK, ident.to_bytes()
        if command == Command.AUTH:
            nonce = m.AuthRequest.from_bytes(payload).nonce
            signature = self._signing_key.sign(m.auth_message(self.serial, nonce))
            self._authenticated = not self.faults.impostor
            self.pairing.on_auth(nonce)
            return Status.OK, m.AuthResponse(signature).to_bytes()
        if command == Command.CLOCK_GET:
            return Status.OK, self._clock_state()
        if command == Command.CLOCK_SET:
            target = m.ClockValue.from_bytes(payload).time_us / 1e6
            self.clock_offset_s = target - time.time()
            if not self.faults.epoch_stuck:
                self.clock_epoch += 1
            self.rtc_valid = True
            return Status.OK, self._clock_state()
        if command == Command.STATUS:
            used = sum(r.size for r in self.recordings.values())
            status = m.CameraStatus(
                self.battery_percent, True, used, max(used, self.storage_total_bytes), 31.5, len(self.recordings)
            )
            return Status.OK, status.to_bytes()
        if command == Command.LIST:
            return Status.OK, self._list(m.ListRequest.from_bytes(payload))
        if command == Command.ERASE:
            return self._erase(m.EraseRequest.from_bytes(payload))
        if command in PAIRING_COMMANDS:
            return self.pairing.handle(command, payload, self._authenticated)
        return self._firmware(command, payload)

    def camera_time(self) -> float:
        return time.time() + self.clock_offset_s

    def _clock_state(self) -> bytes:
        state = m.ClockState(round(self.camera_time() * 1e6), self.clock_epoch, self.rtc_valid)
        return state.to_bytes(self.protocol)

    def record(self, rec: SyntheticRecording) -> None:
        """A recording made now (while undocked): stamped with the clock and epoch in force now."""
        self.recordings[rec.id] = rec
        self._stamps[rec.id] = (self.clock_offset_s, self.clock_epoch)

    def listing(self) -> list[m.RecordingInfo]:
        """What this camera reports, faults included (recording times on the camera's clock)."""
        out = []
        for rec in sorted(self.recordings.values(), key=lambda r: r.id):
            digest = self.content.sha256(rec)
            if self.faults.wrong_hash:
                digest = bytes([digest[0] ^ 0xFF]) + digest[1:]
            size = rec.size + 4096 if self.faults.lie_length else rec.size
            name = rec.name
            if self.faults.hostile_names:
                name = ("../../../../etc/cron.d/x", "clip\x1b[31m.mp4", "A" * 200)[rec.id % 3]
            # stamped by the clock as it was when recording (setting the clock later does not move them)
            offset, epoch = self._stamps.get(rec.id, (self.clock_offset_s, self.clock_epoch))
            start_us = round((rec.true_start + offset) * 1e6)
            end_us = round((rec.true_end + offset) * 1e6)
            out.append(m.RecordingInfo(rec.id, size, start_us, end_us, rec.tag, digest, name, epoch))
        return out

    def _list(self, req: m.ListRequest) -> bytes:
        entries = self.listing()
        page = tuple(entries[req.start : req.start + min(req.max_count, m.MAX_LIST_PAGE)])
        if self.faults.list_trickle_ms:  # legal pages (one entry, promptly enough), an endless-seeming listing
            page = page[:1]
            self._hold_until = time.monotonic() + self.faults.list_trickle_ms / 1000
        total = len(entries)
        if self.faults.endless_list:
            self._list_calls += 1
            total = req.start + len(page) + m.MAX_LIST_PAGE * self._list_calls
            when = round(self.camera_time() * 1e6)
            page = page or tuple(
                m.RecordingInfo(
                    90000 + req.start + i, 1, when, when, m.Category.TRAINING, b"\0" * 32, f"x{i}", self.clock_epoch
                )
                for i in range(m.MAX_LIST_PAGE)
            )
        return m.ListResponse(total, page).to_bytes(self.protocol)

    def _erase(self, req: m.EraseRequest) -> tuple[int, bytes]:
        rec = self.recordings.get(req.recording_id)
        if rec is None:
            return Status.NO_SUCH_RECORDING, b""
        if req.sha256 != self.content.sha256(rec):
            return Status.HASH_MISMATCH, b""
        del self.recordings[rec.id]
        self.erased.append(rec.id)
        return Status.OK, b""

    def _erase_all(self) -> int:
        """The vendor reset's first step: every recording goes before the camera unpairs."""
        ids = sorted(self.recordings)
        self.recordings.clear()
        self.erased.extend(ids)
        return len(ids)

    def _firmware(self, command: Command, payload: bytes) -> tuple[int, bytes]:
        fw = self.firmware
        if command == Command.FW_BEGIN:
            begin = m.FirmwareBegin.from_bytes(payload)
            try:
                self._vendor_key.verify(begin.signature, m.firmware_message(begin.version, begin.size, begin.sha256))
            except InvalidSignature:
                return Status.FIRMWARE_REJECTED, b""
            if fw.pending_meta != begin:
                fw.pending_meta, fw.pending = begin, bytearray()
            return Status.OK, m.Offset(len(fw.pending)).to_bytes()
        if command == Command.FW_CHUNK:
            chunk = m.FirmwareChunk.from_bytes(payload)
            meta = fw.pending_meta
            if meta is None:
                return Status.BAD_REQUEST, b""
            end = chunk.offset + len(chunk.data)
            if end <= len(fw.pending) and fw.pending[chunk.offset : end] == chunk.data:
                return Status.OK, m.Offset(end).to_bytes()  # a retried chunk it already holds: idempotent
            if chunk.offset != len(fw.pending) or end > meta.size:
                return Status.OUT_OF_RANGE, m.Offset(len(fw.pending)).to_bytes()
            fw.pending += chunk.data
            limit = self.faults.unplug_fw_at
            if self._fw_unplug_armed and limit is not None and len(fw.pending) >= limit:
                self._fw_unplug_armed = False  # the chunk is kept; its answer is never sent
                raise LinkClosed(f"camera {self.serial} unplugged during a firmware transfer")
            return Status.OK, m.Offset(len(fw.pending)).to_bytes()
        # FW_COMMIT
        meta = fw.pending_meta
        if meta is None or len(fw.pending) != meta.size or hashlib.sha256(fw.pending).digest() != meta.sha256:
            return Status.FIRMWARE_REJECTED, b""
        fw.active_slot ^= 1
        fw.active_version = meta.version
        fw.pending_meta, fw.pending = None, bytearray()
        return Status.OK, m.FirmwareCommitted(fw.active_version, fw.active_slot).to_bytes()
