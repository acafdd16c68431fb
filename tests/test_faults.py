"""``sim serve --fault SPEC`` parsing (drivers/virtual/faults.py): every fault the virtual camera knows
parses to a value of its field's declared type, and a bad spec is one ConfigError naming it."""

from __future__ import annotations

import time
from dataclasses import Field, fields

import pytest

from bodycam.drivers.device.camera import Camera
from bodycam.drivers.errors import ConfigError
from bodycam.drivers.protocol.frames import MAX_READ, Command, Frame
from bodycam.drivers.protocol.messages import ReadRequest
from bodycam.drivers.virtual import camera as virtual_camera
from bodycam.drivers.virtual.camera import VirtualCamera, public_bytes, sim_device_key, trickle_due
from bodycam.drivers.virtual.faults import Faults, parse_faults
from bodycam.drivers.virtual.loopback import LoopbackTransport
from bodycam.drivers.virtual.server import SimSpec, build_camera

EXAMPLE = {"bool": None, "float": "0.25", "int": "7", "int | None": "1048576"}
TYPES = {"bool": bool, "float": float, "int": int, "int | None": int}


@pytest.mark.parametrize("field", fields(Faults), ids=lambda f: f.name)
def test_every_fault_parses_to_its_declared_type(field: Field[object]) -> None:
    name, kind = field.name, str(field.type)
    raw = EXAMPLE[kind]
    spec = name.replace("_", "-") + ("" if raw is None else f"={raw}")
    value = getattr(parse_faults([spec]), name)
    assert type(value) is TYPES[kind] and value == (True if raw is None else TYPES[kind](raw))
    assert parse_faults([spec]).names == [name.replace("_", "-")]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("melt", "unknown fault 'melt'"),
        ("wrong-hash=1", "takes no value"),
        ("flip-rate=2", "between 0 and 1"),
        ("flip-rate", "could not convert"),
        ("stall-ms=-1", "must not be negative"),
        ("unplug-at=lots", "invalid literal"),
    ],
)
def test_a_bad_fault_spec_is_one_config_error_naming_it(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_faults([spec])


def test_no_fault_is_the_default() -> None:
    assert parse_faults([]) == Faults() and Faults().names == []


def test_a_trickle_frame_is_held_for_its_length_at_the_trickle_rate() -> None:
    """Each frame has a slot of its length at the rate on its answer's schedule: the first frame of an
    answer goes its length / the rate after the answer started, the k-th once the k frames' bytes have
    had their time, so a frame sent late is held only what remains of its slot (issue 14: holding each
    frame its whole length on top of its send time paced 40 MB/s at ~32); slow trickles keep 0.1 s frames."""
    assert trickle_due(100.0, MAX_READ, 40_000_000) - 100.0 == pytest.approx(MAX_READ / 40e6)
    assert trickle_due(5.0, 10, 100) == pytest.approx(5.1)
    assert trickle_due(5.0, 30, 100) == pytest.approx(5.3)  # the third 10-byte frame: 0.3 s in, whenever sent
    assert trickle_due(0.0, 40 * MAX_READ, 40_000_000) == pytest.approx(40 * MAX_READ / 40e6)
    assert trickle_due(0.0, 40_000_000 // 10, 40_000_000) == pytest.approx(0.1)


RATE = 2_000_000  # frames of RATE // 10 = 200 kB, a 0.1 s slot each


class SlowCable(LoopbackTransport):
    """A loopback cable that takes half a frame's slot at ``RATE`` to carry each frame, as a USB transfer
    takes time: a camera that holds each frame its whole slot on top of that moves 2/3 of the rate."""

    def _read_some(self, timeout: float) -> bytes:
        data = super()._read_some(timeout)
        time.sleep(len(data) / RATE / 2)
        return data


def test_a_paced_camera_moves_about_the_rate_asked_over_many_frames() -> None:
    """bytes / elapsed over 42 frames (4 answers of 1 MiB) at ``trickle-bps`` 2 MB/s, through a cable
    that takes half of each frame's slot: never above the rate (the schedule), and at least 0.8 of it
    (before: about 0.67). Generous bounds: a busy machine only delays a frame, which the schedule absorbs."""
    serial = "SIM-PACED"
    camera: VirtualCamera = build_camera(
        SimSpec(serial, recordings=1, training=1, size=4 * 1024 * 1024, faults=Faults(trickle_bps=RATE))
    )
    cam = Camera(SlowCable(camera), timeout=5.0)
    cam.open()
    cam.authenticate(public_bytes(sim_device_key(serial)))
    rec = cam.recordings()[0]
    started = time.monotonic()
    got = sum(len(chunk) for chunk in cam.iter_read(rec, span=1024 * 1024))
    elapsed = time.monotonic() - started
    assert got == rec.size
    assert got / elapsed <= RATE * 1.01, (got, elapsed)
    assert got / elapsed >= RATE * 0.8, (got, elapsed)


def _read(recording_id: int, offset: int, length: int, seq: int) -> Frame:
    return Frame(Command.READ, seq, ReadRequest(recording_id, offset, length).to_bytes())


def test_a_paced_camera_keeps_its_schedule_across_the_answers_of_one_transfer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The frames' due times (``_hold_until``) on a clock the test sets: the second READ of a transfer,
    started when the last frame of the first went out a little late, is due one slot after the first
    answer's last frame, not one slot after it was sent (before: the schedule restarted with each answer,
    ~3 % of the rate lost at 4 MiB answers, issue 14). A READ after a pause, of another offset or
    after a re-plug starts a schedule of its own (no burst to catch up)."""
    now = [100.0]
    monkeypatch.setattr(virtual_camera.time, "monotonic", lambda: now[0])
    serial = "SIM-SCHEDULE"
    camera = build_camera(SimSpec(serial, recordings=1, training=1, size=4 * RATE, faults=Faults(trickle_bps=RATE)))
    rec = next(iter(camera.recordings.values()))
    piece = RATE // 10  # a 0.1 s slot each

    def answer(offset: int, length: int, seq: int) -> list[float]:
        dues = []
        for _frame in camera._read_frames(_read(rec.id, offset, length, seq)):
            dues.append(camera._hold_until)
            now[0] = camera._hold_until + 0.01  # each frame leaves 10 ms after it was due
        return dues

    first = answer(0, 2 * piece, 1)
    assert first == pytest.approx([100.1, 100.2])
    assert answer(2 * piece, 2 * piece, 2) == pytest.approx([100.3, 100.4])  # before: 100.31, 100.41
    now[0] = 105.0  # the dock stopped asking for a while: no burst to catch up
    assert answer(4 * piece, piece, 3) == pytest.approx([105.1])
    assert answer(0, piece, 4) == pytest.approx([105.11 + 0.1])  # another offset: a new schedule
    camera.reset()  # a re-plug: the next answer starts afresh even where the last one ended
    assert answer(piece, piece, 5) == pytest.approx([105.22 + 0.1])
