"""The dock's ``Camera`` against the virtual camera firmware, in process (``LoopbackTransport``).

No USB/IP or pty here: the same driver code talks to the same firmware emulator, byte for byte, so these
tests cover the conversation (auth, clock, listing, reads, erase, firmware, faults, retries) quickly.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import time
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bodycam.drivers.device.camera import STALE_FRAME_LIMIT, Camera
from bodycam.drivers.errors import AuthenticationError, DeviceError, DisconnectedError, LinkTimeoutError, ProtocolError
from bodycam.drivers.models import DEFAULT_MODEL, MODELS, CameraModel, by_name
from bodycam.drivers.protocol import messages as m
from bodycam.drivers.protocol.frames import (
    MAX_READ,
    MAX_READ_SPAN,
    RESPONSE_BIT,
    Command,
    Frame,
    FrameDecoder,
    Status,
    decode_frame,
    encode_frame,
)
from bodycam.drivers.virtual.camera import VirtualCamera, public_bytes, sim_device_key, sim_vendor_key
from bodycam.drivers.virtual.faults import Faults
from bodycam.drivers.virtual.loopback import LoopbackTransport
from bodycam.drivers.virtual.scenario import SyntheticRecording
from bodycam.drivers.virtual.server import SimSpec, build_camera

SERIAL = "BWC2-000123"
ENROLLED = public_bytes(sim_device_key(SERIAL))
MIB = 1024 * 1024


def virtual(faults: Faults | None = None, *, recordings: int = 3, size: int = MIB, drift: float = 0.0) -> VirtualCamera:
    spec = SimSpec(
        SERIAL,
        recordings=recordings,
        training=min(2, recordings),
        size=size,
        clock_drift_s=drift,
        faults=faults or Faults(),
    )
    return build_camera(spec)


def dock(
    camera: VirtualCamera, transport: LoopbackTransport | None = None, *, timeout: float = 0.5, retries: int = 2
) -> Camera:
    """A fresh connection: HELLO + IDENTIFY + AUTH with the enrolled key."""
    cam = Camera(transport or LoopbackTransport(camera), timeout=timeout, retries=retries)
    cam.open()
    cam.authenticate(ENROLLED)
    return cam


def read_all(cam: Camera, rec: m.RecordingInfo, start: int = 0) -> bytes:
    return b"".join(cam.iter_read(rec, start))


class Tampering(LoopbackTransport):
    """A loopback cable that lets a test damage or add to what the camera sends, and logs requests."""

    def __init__(self, link: VirtualCamera, tamper: Callable[[bytes], bytes]) -> None:
        super().__init__(link)
        self.tamper = tamper
        self.requests: list[Frame] = []

    def _write_all(self, data: bytes, timeout: float) -> None:
        self.requests.append(decode_frame(data)[0])
        super()._write_all(data, timeout)

    def _read_some(self, timeout: float) -> bytes:
        data = super()._read_some(timeout)
        return self.tamper(data) if data else data


def damage_first(command: Command) -> Callable[[bytes], bytes]:
    """Flip a bit in the payload CRC of the first answer to ``command``; leave the rest alone."""
    done: list[bool] = []

    def tamper(data: bytes) -> bytes:
        if done or data[3] != command | RESPONSE_BIT:
            return data
        done.append(True)
        return data[:-1] + bytes([data[-1] ^ 0x01])

    return tamper


# -- identify and authenticate ------------------------------------------------------------------
def test_identify() -> None:
    cam = Camera(LoopbackTransport(virtual()))
    ident = cam.open()
    assert ident == m.Identity(2, DEFAULT_MODEL.vid, DEFAULT_MODEL.pid, DEFAULT_MODEL.name, SERIAL, "1.4.0", ENROLLED)
    assert cam.protocol == 2
    assert cam.name == f"camera {SERIAL}"


def test_hello_negotiates_revision_1_with_an_older_firmware() -> None:
    """A camera that speaks only revision 1 keeps working with a revision-2 dock."""
    cam = Camera(LoopbackTransport(virtual(faults=Faults(v1_only=True))))
    assert cam.open().protocol_version == 1
    assert cam.protocol == 1
    assert not cam.authenticated


def test_unenrolled_camera_is_refused_and_stays_locked() -> None:
    cam = Camera(LoopbackTransport(virtual()))
    cam.open()
    with pytest.raises(AuthenticationError, match="not enrolled"):
        cam.authenticate(None)
    assert not cam.authenticated
    with pytest.raises(AuthenticationError) as info:
        cam.recordings()  # the camera itself refuses LIST before AUTH
    assert info.value.status == Status.NOT_AUTHENTICATED


def test_camera_with_another_key_than_the_enrolled_one_is_refused() -> None:
    cam = Camera(LoopbackTransport(virtual()))
    cam.open()
    with pytest.raises(AuthenticationError, match="differs from the enrolled one"):
        cam.authenticate(public_bytes(sim_device_key("SOMEONE-ELSE")))
    assert not cam.authenticated


def test_impostor_cannot_prove_the_enrolled_key() -> None:
    camera = virtual(Faults(impostor=True))
    cam = Camera(LoopbackTransport(camera))
    assert cam.open().device_key == ENROLLED  # it shows the genuine key ...
    with pytest.raises(AuthenticationError, match="could not prove"):
        cam.authenticate(ENROLLED)  # ... but cannot sign with it
    assert not cam.authenticated
    with pytest.raises(AuthenticationError):
        cam.recordings()


# -- clock and status ----------------------------------------------------------------------------
def test_clock_offset_is_measured_and_set() -> None:
    camera = virtual(drift=3600.0)
    cam = dock(camera)
    reading = cam.clock()
    assert reading.offset_s == pytest.approx(3600.0, abs=0.05)
    assert 0 <= reading.round_trip_s < 0.05
    before, after = cam.set_clock()
    assert before.offset_s == pytest.approx(3600.0, abs=0.05)
    assert after.offset_s == pytest.approx(0.0, abs=0.05)
    assert camera.clock_offset_s == pytest.approx(0.0, abs=0.05)


def test_setting_the_clock_does_not_move_recording_times() -> None:
    cam = dock(virtual(drift=3600.0))
    listed = cam.recordings()
    cam.set_clock()
    assert cam.recordings() == listed


def test_clock_set_bumps_the_epoch_that_new_recordings_carry() -> None:
    """Revision 2: each CLOCK_SET starts a new clock epoch; a recording keeps the epoch (and the clock
    error) it was stamped under, so the dock can correct it with the offset of that epoch."""
    camera = virtual(drift=900.0)
    cam = dock(camera)
    old = cam.recordings()
    before, after = cam.set_clock()
    assert (before.epoch, after.epoch, before.valid, after.valid) == (1, 2, True, True)
    assert {r.clock_epoch for r in old} == {1}
    assert cam.recordings() == old
    now = time.time()
    camera.record(
        SyntheticRecording(77, "new.mp4", 10, now - 30, now - 20, m.Category.TRAINING, m.Category.TRAINING, 0)
    )
    (new,) = [r for r in cam.recordings() if r.id == 77]
    assert new.clock_epoch == 2 and new.start_us / 1e6 == pytest.approx(now - 30, abs=0.1)


def test_revision_1_camera_has_no_epochs() -> None:
    cam = dock(virtual(Faults(v1_only=True), drift=900.0))
    before, after = cam.set_clock()
    assert (before.epoch, after.epoch) == (None, None)
    assert {r.clock_epoch for r in cam.recordings()} == {None}


@pytest.mark.parametrize("v1", [False, True])
def test_a_reset_rtc_is_read_flagged_and_can_be_set(v1: bool) -> None:
    """Issue 8 item 2: a camera whose RTC lost power reads 1970; the dock reads it (flagged invalid)
    instead of refusing it, and setting the clock repairs it. Stamps made under it stay 1970."""
    camera = virtual(Faults(rtc_reset=True, v1_only=v1))
    cam = dock(camera)
    reading = cam.clock()
    assert not reading.valid and reading.camera_time < 86400 * 365
    assert not any(r.stamped_validly for r in cam.recordings())
    before, after = cam.set_clock()
    assert not before.valid and after.valid and after.offset_s == pytest.approx(0.0, abs=0.05)
    assert not any(r.stamped_validly for r in cam.recordings())


def test_clock_set_needs_authentication() -> None:
    cam = Camera(LoopbackTransport(virtual(drift=60.0)))
    cam.open()
    assert cam.clock().offset_s == pytest.approx(60.0, abs=0.05)  # CLOCK_GET is open to all
    with pytest.raises(AuthenticationError):
        cam.set_clock()


def test_status() -> None:
    status = dock(virtual(recordings=3, size=MIB)).status()
    assert status == m.CameraStatus(87, True, 3 * MIB, 128 * 1024**3, 31.5, 3)


# -- listing, reading, erasing ----------------------------------------------------------------------
def test_listing_matches_the_camera() -> None:
    camera = virtual(recordings=3, drift=120.0)
    listing = dock(camera).recordings()
    truth = sorted(camera.recordings.values(), key=lambda r: r.id)
    assert [r.id for r in listing] == [r.id for r in truth] == [1000, 1001, 1002]
    for info, rec in zip(listing, truth, strict=True):
        assert (info.size, info.name, info.category) == (rec.size, rec.name, rec.tag)
        assert info.sha256 == camera.content.sha256(rec)
        assert info.start_us == round((rec.true_start + 120.0) * 1e6)  # on the camera clock


def test_listing_is_paged() -> None:
    camera = virtual(recordings=150, size=100)
    transport = Tampering(camera, lambda d: d)
    listing = dock(camera, transport).recordings()
    assert [r.id for r in listing] == list(range(1000, 1150))
    lists = [m.ListRequest.from_bytes(f.payload) for f in transport.requests if f.command == Command.LIST]
    assert lists == [m.ListRequest(0, 64), m.ListRequest(64, 64), m.ListRequest(128, 64)]


def test_full_read_reproduces_the_listed_sha256() -> None:
    cam = dock(virtual(size=3 * MIB + 12345))
    rec = cam.recordings()[1]
    data = read_all(cam, rec)
    assert len(data) == rec.size
    assert hashlib.sha256(data).digest() == rec.sha256


def test_read_is_exact_and_bounded() -> None:
    cam = dock(virtual(size=MIB))
    rec = cam.recordings()[0]
    assert len(cam.read(rec, 0, 10 * MIB)) == MIB  # capped at MAX_READ and at the end
    assert cam.read(rec, MIB - 5, 100) == read_all(cam, rec)[-5:]
    assert cam.read(rec, MIB, 100) == b""
    with pytest.raises(ValueError):
        cam.read(rec, MIB + 1, 1)


def test_erase_with_a_wrong_hash_is_refused_and_keeps_the_recording() -> None:
    camera = virtual()
    cam = dock(camera)
    rec = cam.recordings()[0]
    with pytest.raises(DeviceError) as info:
        cam.erase(rec.id, hashlib.sha256(b"not it").digest())
    assert info.value.status == Status.HASH_MISMATCH
    assert "HASH_MISMATCH" in str(info.value)
    assert rec.id in [r.id for r in cam.recordings()]
    assert camera.erased == []


def test_erase_with_the_verified_hash_removes_the_recording() -> None:
    camera = virtual()
    cam = dock(camera)
    rec = cam.recordings()[0]
    cam.erase(rec.id, hashlib.sha256(read_all(cam, rec)).digest())
    assert rec.id not in [r.id for r in cam.recordings()]
    assert camera.erased == [rec.id]
    with pytest.raises(DeviceError) as info:
        cam.erase(rec.id, rec.sha256)
    assert info.value.status == Status.NO_SUCH_RECORDING


# -- faults ---------------------------------------------------------------------------------------
def test_wrong_hash_fault_lists_a_hash_the_content_does_not_have() -> None:
    cam = dock(virtual(Faults(wrong_hash=True)))
    rec = cam.recordings()[0]
    actual = hashlib.sha256(read_all(cam, rec)).digest()
    assert actual != rec.sha256
    with pytest.raises(DeviceError) as info:
        cam.erase(rec.id, rec.sha256)  # erasing on the camera's word is refused by the camera itself
    assert info.value.status == Status.HASH_MISMATCH
    cam.erase(rec.id, actual)


def test_lie_length_fault_is_caught_by_the_exact_length_rule() -> None:
    cam = dock(virtual(Faults(lie_length=True), size=MIB))
    rec = cam.recordings()[0]
    assert rec.size == MIB + 4096
    with pytest.raises(ProtocolError, match=r"returned 1048576 bytes of recording 1000 at offset 0, expected 1052672"):
        read_all(cam, rec)
    with pytest.raises(ProtocolError, match="misreports the recording's length"):
        cam.read(rec, MIB, 4096)  # the camera accepts the offset but has nothing there


def test_hostile_names_refuse_the_whole_listing_naming_the_field() -> None:
    cam = dock(virtual(Faults(hostile_names=True)))
    with pytest.raises(ProtocolError, match=r"LIST response: 'name' (contains control characters|is 200 bytes)"):
        cam.recordings()


def test_hostile_name_that_is_only_a_path_is_valid_protocol() -> None:
    # id 999 -> "../../../../etc/cron.d/x": printable UTF-8 within 128 bytes. The codec lets it through;
    # docs/protocol.md says names are metadata and must never be used as paths.
    rec = SyntheticRecording(999, "x.mp4", 10, 1.7e9, 1.7e9 + 1, m.Category.TRAINING, m.Category.TRAINING, 0)
    camera = VirtualCamera(SERIAL, [rec], faults=Faults(hostile_names=True))
    assert [r.name for r in dock(camera).recordings()] == ["../../../../etc/cron.d/x"]


def test_endless_list_fault_is_refused() -> None:
    cam = dock(virtual(Faults(endless_list=True), recordings=5, size=100))
    with pytest.raises(ProtocolError, match="changed its recording count"):
        cam.recordings()


def test_flip_rate_on_4_mib_never_yields_wrong_bytes() -> None:
    camera = virtual(size=4 * MIB)
    cam = dock(camera, timeout=0.3)
    rec = cam.recordings()[0]
    camera.faults = Faults(flip_rate=0.0005)  # after the handshake: AUTH is not retried
    got = bytearray()
    try:
        for data in cam.iter_read(rec):
            got += data
    except (ProtocolError, LinkTimeoutError):
        # P x frame length > 1 for a 1 MiB frame: every attempt is hit. A hit in a payload is a CRC
        # error (ProtocolError); one in a header hides the frame, and only the deadline ends the wait.
        pass
    else:
        assert hashlib.sha256(got).digest() == rec.sha256
    assert got == bytes(camera.content.read(camera.recordings[rec.id], 0, len(got)))  # what came is right
    with pytest.raises(ProtocolError, match="payload CRC mismatch"):
        cam.read(rec, 0, MIB)


def test_retries_rescue_reads_from_bit_flips(caplog: pytest.LogCaptureFixture) -> None:
    camera = virtual(size=4 * MIB)
    cam = dock(camera, timeout=0.3)
    rec = cam.recordings()[0]
    camera.faults = Faults(flip_rate=5e-7)  # about 1 frame in 8 of 256 KiB is hit (deterministic RNG)
    caplog.set_level(logging.WARNING, logger="bodycam.drivers.device.camera")
    data = b"".join(cam.iter_read(rec, 0, span=256 * 1024))
    assert hashlib.sha256(data).digest() == rec.sha256
    assert any("resuming at" in r.getMessage() for r in caplog.records)


def test_unplug_then_resume_at_the_saved_offset() -> None:
    camera = virtual(Faults(unplug_at=1_500_000), recordings=1, size=4 * MIB)
    cam = dock(camera)
    rec = cam.recordings()[0]
    got = bytearray()
    with pytest.raises(DisconnectedError, match="unplugged"):
        for data in cam.iter_read(rec, 0, span=512 * 1024):
            got += data
    assert len(got) == MIB  # 2 x 512 KiB arrived; the READ that crossed 1,500,000 bytes was lost
    camera.reset()  # the re-plug: the camera forgets the conversation and the authentication
    again = dock(camera)
    assert again.recordings() == [rec]
    for data in again.iter_read(rec, len(got), span=512 * 1024):
        got += data
    assert hashlib.sha256(got).digest() == rec.sha256


# -- READ answers in several frames ----------------------------------------------------------------
@pytest.mark.parametrize("model", MODELS, ids=lambda x: x.name)
def test_read_is_streamed_in_frames_of_the_models_size(model: CameraModel) -> None:
    seen: list[Frame] = []

    def record(data: bytes) -> bytes:
        frame = decode_frame(data)[0]
        if frame.command == Command.READ:
            seen.append(frame)
        return data

    camera = build_camera(SimSpec(SERIAL, model=model, recordings=1, training=1, size=3 * MIB))
    cam = dock(camera, Tampering(camera, record))
    rec = cam.recordings()[0]
    length = 2 * MIB + 12345
    data = cam.read(rec, 1000, length)
    assert data == bytes(camera.content.read(camera.recordings[rec.id], 1000, length))
    piece = min(MAX_READ, model.max_read)
    assert [len(f.payload) for f in seen[:-1]] == [piece] * (len(seen) - 1)
    assert len(seen) == -(-length // piece)
    assert [f.status for f in seen] == [Status.MORE_FOLLOWS] * (len(seen) - 1) + [Status.OK]
    assert len({f.seq for f in seen}) == 1


def test_read_over_max_read_span_is_a_bad_request() -> None:
    cam = dock(virtual())
    rec = cam.recordings()[0]
    with pytest.raises(DeviceError) as info:
        cam.call(Command.READ, m.ReadRequest(rec.id, 0, MAX_READ_SPAN + 1).to_bytes())
    assert info.value.status == Status.BAD_REQUEST
    with pytest.raises(DeviceError) as info:
        cam.call(Command.READ, m.ReadRequest(4242, 0, 1).to_bytes())
    assert info.value.status == Status.NO_SUCH_RECORDING
    with pytest.raises(DeviceError) as info:
        cam.call(Command.READ, m.ReadRequest(rec.id, rec.size + 1, 1).to_bytes())
    assert info.value.status == Status.OUT_OF_RANGE


def test_more_follows_outside_read_is_a_refusal() -> None:
    def relabel(data: bytes) -> bytes:
        frame = decode_frame(data)[0]
        if frame.command != Command.STATUS:
            return data
        return encode_frame(Command.STATUS, frame.seq, frame.payload, status=Status.MORE_FOLLOWS, response=True)

    camera = virtual()
    with pytest.raises(DeviceError) as info:
        dock(camera, Tampering(camera, relabel)).status()
    assert info.value.status == Status.MORE_FOLLOWS


def test_iter_read_resumes_after_a_damaged_frame(caplog: pytest.LogCaptureFixture) -> None:
    camera = virtual(recordings=1, size=12 * MIB)
    transport = Tampering(camera, damage_first(Command.READ))
    cam = dock(camera, transport)
    rec = cam.recordings()[0]
    caplog.set_level(logging.WARNING, logger="bodycam.drivers.device.camera")
    assert hashlib.sha256(b"".join(cam.iter_read(rec, span=4 * MIB))).digest() == rec.sha256
    assert any("resuming at 0" in r.getMessage() for r in caplog.records)
    offsets = [m.ReadRequest.from_bytes(f.payload).offset for f in transport.requests if f.command == Command.READ]
    assert offsets[:2] == [0, 4 * MIB] and offsets[2] == 0  # the pipeline is dropped and asked again


def test_iter_read_resumes_after_a_damaged_frame_with_small_frames() -> None:
    camera = build_camera(SimSpec(SERIAL, model=by_name("Warden W9"), recordings=1, training=1, size=12 * MIB))
    cam = dock(camera, Tampering(camera, damage_first(Command.READ)))
    rec = cam.recordings()[0]
    assert hashlib.sha256(b"".join(cam.iter_read(rec))).digest() == rec.sha256


class Flood(LoopbackTransport):
    """A hostile camera that answers READ with ``frames`` frames of 1 MiB, all but the last MORE_FOLLOWS."""

    def __init__(self, link: VirtualCamera, frames: int) -> None:
        super().__init__(link)
        self.frames = frames
        self.pending = 0
        self.seq = 0

    def _write_all(self, data: bytes, timeout: float) -> None:
        frame = decode_frame(data)[0]
        if frame.command != Command.READ:
            super()._write_all(data, timeout)
            return
        self.seq, self.pending = frame.seq, self.frames

    def _read_some(self, timeout: float) -> bytes:
        if not self.pending:
            return super()._read_some(timeout)
        self.pending -= 1
        status = Status.MORE_FOLLOWS if self.pending else Status.OK
        return encode_frame(Command.READ, self.seq, bytes(MAX_READ), status=status, response=True)


def test_iter_read_refuses_a_frame_past_the_requested_range_at_once() -> None:
    camera = virtual(recordings=1, size=2 * MIB)
    transport = Flood(camera, 40)
    cam = dock(camera, transport, retries=0)
    rec = cam.recordings()[0]
    with pytest.raises(ProtocolError, match="misreports the recording's length"):
        list(cam.iter_read(rec, 0, span=MIB, window=1))
    assert transport.pending >= 38  # it stopped after the second frame


def test_read_refuses_an_answer_longer_than_asked_before_buffering_it() -> None:
    camera = virtual(recordings=1, size=MIB)
    transport = Flood(camera, 40)
    cam = dock(camera, transport, retries=0)
    rec = cam.recordings()[0]
    with pytest.raises(ProtocolError, match="misreports the recording's length"):
        cam.read(rec, 0, MIB)
    assert transport.pending >= 38, f"the dock buffered {40 - transport.pending} MiB for a 1 MiB READ"


def test_stall_fault_delays_reads() -> None:
    camera = virtual(Faults(stall_ms=150))
    cam = dock(camera, timeout=1.0)
    rec = cam.recordings()[0]
    started = time.monotonic()
    assert len(cam.read(rec, 0, 1000)) == 1000
    assert time.monotonic() - started >= 0.14


def test_stall_longer_than_the_deadline_is_a_timeout() -> None:
    camera = virtual(Faults(stall_ms=400))
    cam = dock(camera, timeout=0.1, retries=0)
    rec = cam.recordings()[0]
    with pytest.raises(LinkTimeoutError):
        cam.read(rec, 0, 1000)


# -- the firmware side of the conversation, raw ------------------------------------------------------
def exchange(camera: VirtualCamera, data: bytes, timeout: float = 0.2) -> list[Frame]:
    camera.receive(data)
    decoder = FrameDecoder()
    out: list[Frame] = []
    while chunk := camera.transmit(1 << 20, timeout):
        decoder.feed(chunk)
        while (frame := decoder.next_frame()) is not None:
            out.append(frame)
    return out


def test_camera_answers_unknown_commands_and_ignores_what_is_not_a_request() -> None:
    camera = virtual()
    [answer] = exchange(camera, encode_frame(0x7E, 5))
    assert (answer.command, answer.seq, answer.status, answer.response) == (0x7E, 5, Status.UNKNOWN_COMMAND, True)
    assert exchange(camera, encode_frame(Command.STATUS, 6, response=True)) == []  # a response: ignored
    damaged = bytearray(encode_frame(Command.CLOCK_SET, 7, bytes(8)))
    damaged[-1] ^= 1
    assert exchange(camera, bytes(damaged)) == []  # a damaged request: no answer, the dock times out
    [answer] = exchange(camera, encode_frame(Command.LIST, 8, m.ListRequest(0, 1).to_bytes()))
    assert answer.status == Status.NOT_AUTHENTICATED  # checked before the payload is parsed
    [answer] = exchange(camera, encode_frame(Command.HELLO, 9, m.HelloRequest(3, 4, 100).to_bytes()))
    assert answer.status == Status.UNSUPPORTED_VERSION
    [answer] = exchange(camera, encode_frame(Command.HELLO, 10, b"\x01"))
    assert answer.status == Status.BAD_REQUEST


# -- retries, stale answers ----------------------------------------------------------------------------
def test_a_damaged_read_answer_is_retried_with_a_new_sequence_number() -> None:
    camera = virtual()
    transport = Tampering(camera, damage_first(Command.READ))
    cam = dock(camera, transport)
    rec = cam.recordings()[0]
    assert cam.read(rec, 0, 1000) == camera.content.read(camera.recordings[rec.id], 0, 1000)
    reads = [f for f in transport.requests if f.command == Command.READ]
    assert len(reads) == 2 and reads[0].payload == reads[1].payload and reads[0].seq != reads[1].seq


def test_a_damaged_answer_to_a_non_idempotent_command_is_not_retried() -> None:
    camera = virtual()
    transport = Tampering(camera, damage_first(Command.ERASE))
    cam = dock(camera, transport)
    rec = cam.recordings()[0]
    with pytest.raises(ProtocolError, match="payload CRC mismatch"):
        cam.erase(rec.id, rec.sha256)
    assert [f.command for f in transport.requests].count(Command.ERASE) == 1


def stale_copies(count: int) -> Callable[[bytes], bytes]:
    """Put ``count`` copies of the previous answer (an old seq) in front of each READ answer."""
    previous: list[bytes] = []

    def tamper(data: bytes) -> bytes:
        out = data
        if data[3] == Command.READ | RESPONSE_BIT and previous:
            out = previous[-1] * count + data
        previous.append(data)
        return out

    return tamper


def test_stale_answers_are_skipped() -> None:
    camera = virtual()
    cam = dock(camera, Tampering(camera, stale_copies(STALE_FRAME_LIMIT - 1)), retries=0)
    rec = cam.recordings()[0]
    assert len(cam.read(rec, 0, 100)) == 100


def test_too_many_stale_answers_break_the_link() -> None:
    camera = virtual()
    cam = dock(camera, Tampering(camera, stale_copies(STALE_FRAME_LIMIT)), retries=0)
    rec = cam.recordings()[0]
    with pytest.raises(ProtocolError, match="16 frames that answer nothing"):
        cam.read(rec, 0, 100)


def test_an_answer_for_another_command_is_refused() -> None:
    def swap(data: bytes) -> bytes:
        frame = decode_frame(data)[0]
        if frame.command != Command.STATUS:
            return data
        return encode_frame(Command.CLOCK_GET, frame.seq, frame.payload, response=True)

    camera = virtual()
    cam = dock(camera, Tampering(camera, swap), retries=0)
    with pytest.raises(ProtocolError, match="answered 0x06 STATUS with command 0x04"):
        cam.status()


def test_silence_is_a_timeout() -> None:
    camera = virtual()
    cam = dock(camera, Tampering(camera, lambda d: b"" if d[3] == Command.STATUS | RESPONSE_BIT else d), timeout=0.1)
    with pytest.raises(LinkTimeoutError, match=r"did not answer STATUS within 0.1 s; .* \(tried 3 times\)"):
        cam.status()


class SlowCable(LoopbackTransport):
    """A loopback cable on a fake clock: answers arrive ``delays[i]`` seconds after request i (None: lost).

    Waiting costs no wall-clock time: a read that finds nothing due within its timeout advances the
    clock by that timeout, so the test observes deadlines exactly, on a busy machine too.
    """

    def __init__(self, link: VirtualCamera, delays: list[float | None]) -> None:
        super().__init__(link)
        self.now = 1000.0
        self.delays = delays
        self.writes: list[tuple[float, int]] = []  # (time, command) of each request
        self.due: list[tuple[float, bytes]] = []
        #: a read with nothing due returns empty after this long, even if its timeout is longer (as a USB
        #: zero-length packet or a spurious wake-up does)
        self.empty_after: float | None = None

    def clock(self) -> float:
        return self.now

    def _write_all(self, data: bytes, timeout: float) -> None:
        self.writes.append((self.now, data[3]))
        super()._write_all(data, timeout)
        answer = self.link.transmit(MIB + 65536, 0.0)
        delay = self.delays.pop(0) if self.delays else 0.0
        if delay is not None:
            self.due.append((self.now + delay, answer))
            self.due.sort(key=lambda item: item[0])

    def _read_some(self, timeout: float) -> bytes:
        wait = timeout if self.empty_after is None else min(timeout, self.empty_after)
        if self.due and self.due[0][0] <= self.now + wait:
            at, answer = self.due.pop(0)
            self.now = max(self.now, at)
            return answer
        self.now += wait
        return b""


@pytest.mark.parametrize(
    "delays",
    [[None, None, None], [6.0, 6.0, 6.0], [None, 9.5, 9.5]],
    ids=["lost", "late", "lost-then-late"],
)
def test_every_retry_gets_the_full_deadline(delays: list[float | None]) -> None:
    """Each attempt waits the whole documented deadline (5 s), even while late answers to earlier attempts
    arrive during it, and the error names that deadline (it read 5 -> 4 -> 3 s before)."""
    camera = virtual()
    cable = SlowCable(camera, [])
    cam = Camera(cable, timeout=5.0, clock=cable.clock)
    cam.open()
    cam.authenticate(ENROLLED)
    cable.delays = list(delays)
    with pytest.raises(LinkTimeoutError) as timed_out:
        cam.status()
    assert str(timed_out.value) == (
        f"camera {SERIAL} did not answer STATUS within 5 s; re-dock it if this persists (tried 3 times)"
    )
    sent = [at for at, command in cable.writes if command == Command.STATUS]
    assert len(sent) == 3
    assert [b - a for a, b in itertools.pairwise(sent)] == [5.0, 5.0]  # each retry after a full 5 s
    assert cable.now - sent[-1] == 5.0  # and the last attempt too


def test_an_early_empty_read_does_not_end_the_attempt() -> None:
    """Reads that come back empty after 1 s do not cut a 5 s deadline short (they used to end the attempt)."""
    camera = virtual()
    cable = SlowCable(camera, [])
    cam = Camera(cable, timeout=5.0, clock=cable.clock)
    cam.open()
    cam.authenticate(ENROLLED)
    cable.empty_after = 1.0
    cable.delays = [4.5]
    assert cam.status().recording_count == 3
    assert [command for _at, command in cable.writes].count(Command.STATUS) == 1  # answered on the first try


def test_a_retry_after_lost_answers_succeeds_within_its_own_deadline() -> None:
    camera = virtual()
    cable = SlowCable(camera, [])
    cam = Camera(cable, timeout=5.0, clock=cable.clock)
    cam.open()
    cam.authenticate(ENROLLED)
    cable.delays = [None, None, 4.9]  # the third attempt is answered 4.9 s after it was sent
    assert cam.status().recording_count == 3
    sent = [at for at, command in cable.writes if command == Command.STATUS]
    assert [b - a for a, b in itertools.pairwise(sent)] == [5.0, 5.0]


# -- firmware ----------------------------------------------------------------------------------------
IMAGE = hashlib.shake_256(b"firmware image").digest(600 * 1024)
IMAGE_SHA = hashlib.sha256(IMAGE).digest()


def signed(
    version: str = "2.0.0", image: bytes = IMAGE, key: Ed25519PrivateKey | None = None
) -> tuple[int, bytes, str, bytes]:
    """FW_BEGIN arguments for ``image``, signed by the test vendor key unless ``key`` is given."""
    digest = hashlib.sha256(image).digest()
    signature = (key or sim_vendor_key()).sign(m.firmware_message(version, len(image), digest))
    return len(image), digest, version, signature


def send(cam: Camera, image: bytes, offset: int, *, stop: int | None = None) -> int:
    end = len(image) if stop is None else stop
    while offset < end:
        offset = cam.firmware_chunk(offset, image[offset : offset + m.MAX_FIRMWARE_CHUNK])
    return offset


def test_firmware_update() -> None:
    camera = virtual()
    cam = dock(camera)
    assert cam.firmware_begin(*signed()) == 0
    assert send(cam, IMAGE, 0) == len(IMAGE)
    assert cam.firmware_commit() == m.FirmwareCommitted("2.0.0", 1)
    assert Camera(LoopbackTransport(camera)).open().firmware == "2.0.0"


def test_firmware_transfer_resumes_after_a_redock() -> None:
    camera = virtual()
    cam = dock(camera)
    assert cam.firmware_begin(*signed()) == 0
    held = send(cam, IMAGE, 0, stop=m.MAX_FIRMWARE_CHUNK)
    assert held == m.MAX_FIRMWARE_CHUNK
    camera.reset()
    again = dock(camera)
    assert again.firmware_begin(*signed()) == held  # same image: the camera kept what it has
    send(again, IMAGE, held)
    assert again.firmware_commit().version == "2.0.0"


def test_another_image_restarts_the_transfer() -> None:
    cam = dock(virtual())
    cam.firmware_begin(*signed())
    send(cam, IMAGE, 0, stop=1)
    assert cam.firmware_begin(*signed("2.0.1")) == 0


def test_wrongly_signed_firmware_is_refused() -> None:
    cam = dock(virtual())
    with pytest.raises(DeviceError) as info:
        cam.firmware_begin(*signed(key=Ed25519PrivateKey.generate()))
    assert info.value.status == Status.FIRMWARE_REJECTED
    size, digest, _, signature = signed()
    with pytest.raises(DeviceError) as info:
        cam.firmware_begin(size, digest, "2.0.1", signature)  # the version is signed too
    assert info.value.status == Status.FIRMWARE_REJECTED


def test_firmware_commit_checks_the_image() -> None:
    cam = dock(virtual())
    cam.firmware_begin(*signed())
    bad = bytes(len(IMAGE))  # right size, wrong bytes
    send(cam, bad, 0)
    with pytest.raises(DeviceError) as info:
        cam.firmware_commit()
    assert info.value.status == Status.FIRMWARE_REJECTED


def test_firmware_chunk_at_the_wrong_offset_is_out_of_range() -> None:
    cam = dock(virtual())
    cam.firmware_begin(*signed())
    with pytest.raises(DeviceError) as info:
        cam.firmware_chunk(100, IMAGE[100:200])
    assert info.value.status == Status.OUT_OF_RANGE


def test_a_firmware_chunk_whose_answer_was_lost_is_retried_safely() -> None:
    camera = virtual()
    cam = dock(camera, Tampering(camera, damage_first(Command.FW_CHUNK)))
    cam.firmware_begin(*signed())
    assert cam.firmware_chunk(0, IMAGE[:1000]) == 1000
