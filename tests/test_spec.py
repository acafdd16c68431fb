"""The written protocol (docs/protocol.md, docs/firmware.md) against the code it describes.

An independent firmware is built from these documents alone, so every value they state that the code
also holds (model ids, the simulator's vendor key, limits) is checked here: a change to one without the
other fails.
"""

from __future__ import annotations

import hashlib
import re
import struct
from pathlib import Path

import pytest

from bodycam.agent.formats.sshsig import fingerprint, public_key_line
from bodycam.drivers import models
from bodycam.drivers.device.camera import DOCK_MAX_FRAME, MIN_CAMERA_FRAME, Camera
from bodycam.drivers.errors import DeviceError, ProtocolError
from bodycam.drivers.protocol import messages as m
from bodycam.drivers.protocol.frames import (
    MAX_READ_SPAN,
    MAX_RESYNC_BYTES,
    OVERHEAD,
    Command,
    Status,
    decode_frame,
    encode_frame,
)
from bodycam.drivers.virtual.camera import public_bytes, sim_vendor_key

from .test_device_loopback import MIB, Tampering, dock, exchange, virtual

DOCS = Path(__file__).resolve().parent.parent / "docs"
PROTOCOL = (DOCS / "protocol.md").read_text(encoding="utf-8")
FIRMWARE = (DOCS / "firmware.md").read_text(encoding="utf-8")


def generated_block(text: str, command: str) -> str:
    match = re.search(rf"<!-- BEGIN generated: {re.escape(command)} -->\n(.*?)<!-- END generated -->", text, re.DOTALL)
    assert match, f"no generated block for {command!r}"
    return match.group(1)


def test_the_model_table_is_the_registry() -> None:
    """Model ids live only in drivers/models.py; the spec's table is generated from it."""
    assert generated_block(PROTOCOL, "python -m bodycam.drivers.models --markdown") == models.markdown_table()


def test_no_model_id_is_written_outside_the_generated_table() -> None:
    outside = re.sub(r"<!-- BEGIN generated.*?<!-- END generated -->", "", PROTOCOL, flags=re.DOTALL)
    for model in models.MODELS:
        for text in (model.name, model.usb_id, f"0x{model.pid:04X}", f"0x{model.pid:04x}"):
            assert text not in outside, f"{text} is written by hand in docs/protocol.md"


def test_the_simulator_vendor_key_is_given_as_bytes() -> None:
    key = sim_vendor_key().public_key()
    rows = dict(re.findall(r"^\| (raw 32 bytes, hex|OpenSSH line[^|]*|fingerprint) \| `([^`]+)` \|$", FIRMWARE, re.M))
    assert rows["raw 32 bytes, hex"] == public_bytes(key).hex()
    ssh = next(value for name, value in rows.items() if name.startswith("OpenSSH line"))
    assert ssh == public_key_line(key)
    assert rows["fingerprint"] == fingerprint(key)


# -- camera behaviour the spec settles, on the virtual camera (docs/protocol.md) --------------------------
def test_hello_starts_a_session_and_forgets_authentication() -> None:
    """On serial the camera cannot see the port close: HELLO is what ends the last program's session."""
    camera = virtual()
    cam = dock(camera)
    assert cam.recordings()
    [hello] = exchange(camera, encode_frame(Command.HELLO, 1, m.HelloRequest(1, 2, DOCK_MAX_FRAME).to_bytes()))
    assert hello.status == Status.OK
    [answer] = exchange(camera, encode_frame(Command.LIST, 2, m.ListRequest(0, 1).to_bytes()))
    assert answer.status == Status.NOT_AUTHENTICATED
    fresh = dock(camera)  # the ordinary opening (HELLO, IDENTIFY, AUTH) works again
    assert len(fresh.recordings()) == 3


def test_camera_announces_the_largest_frame_and_the_dock_needs_a_full_fw_chunk() -> None:
    camera = virtual()
    [hello] = exchange(camera, encode_frame(Command.HELLO, 1, m.HelloRequest(1, 2, DOCK_MAX_FRAME).to_bytes()))
    assert m.HelloResponse.from_bytes(bytes(hello.payload)) == m.HelloResponse(2, 1_052_692)
    assert MIN_CAMERA_FRAME == 262_172 == OVERHEAD + 8 + m.MAX_FIRMWARE_CHUNK

    def small_buffers(data: bytes) -> bytes:
        frame = decode_frame(data)[0]
        if frame.command != Command.HELLO:
            return data
        return encode_frame(
            Command.HELLO, frame.seq, m.HelloResponse(2, MIN_CAMERA_FRAME - 1).to_bytes(), response=True
        )

    with pytest.raises(ProtocolError, match="accepts frames of at most 262171 bytes; the protocol requires 262172"):
        Camera(Tampering(camera, small_buffers), timeout=0.5).open()


def test_list_with_max_count_zero_answers_the_total_and_no_entry() -> None:
    camera = virtual()
    dock(camera)  # authenticates the camera's session
    [answer] = exchange(camera, encode_frame(Command.LIST, 3, m.ListRequest(0, 0).to_bytes()))
    assert answer.status == Status.OK
    assert m.ListResponse.from_bytes(bytes(answer.payload)) == m.ListResponse(3, ())
    [past] = exchange(camera, encode_frame(Command.LIST, 4, m.ListRequest(7, 64).to_bytes()))
    assert m.ListResponse.from_bytes(bytes(past.payload)) == m.ListResponse(3, ())


def test_the_order_of_checks() -> None:
    """Unknown command, then authentication, then the payload, then the recording, then the offset."""
    camera = virtual()
    [answer] = exchange(camera, encode_frame(0x7E, 1, bytes(5000)))  # a payload does not matter
    assert answer.status == Status.UNKNOWN_COMMAND
    [answer] = exchange(camera, encode_frame(Command.READ, 2, b"\x01"))
    assert answer.status == Status.NOT_AUTHENTICATED
    dock(camera)
    too_long = m.ReadRequest(424242, 10**12, MAX_READ_SPAN + 1)
    [answer] = exchange(camera, encode_frame(Command.READ, 3, too_long.to_bytes()))
    assert answer.status == Status.BAD_REQUEST  # the length limit before the unknown id
    [answer] = exchange(camera, encode_frame(Command.READ, 4, m.ReadRequest(424242, 10**12, 1).to_bytes()))
    assert answer.status == Status.NO_SUCH_RECORDING  # the id before the offset
    rec = camera.listing()[0]
    [answer] = exchange(camera, encode_frame(Command.READ, 5, m.ReadRequest(rec.id, rec.size + 1, 1).to_bytes()))
    assert answer.status == Status.OUT_OF_RANGE


def test_a_zero_size_firmware_image_is_a_bad_request_even_when_signed() -> None:
    cam = dock(virtual())
    empty = hashlib.sha256(b"").digest()
    signature = sim_vendor_key().sign(m.firmware_message("9.9.9", 0, empty))
    payload = struct.pack("<Q32s", 0, empty) + b"\x059.9.9" + signature
    with pytest.raises(DeviceError) as refused:
        cam.call(Command.FW_BEGIN, payload)
    assert refused.value.status == Status.BAD_REQUEST
    with pytest.raises(DeviceError) as nothing:
        cam.firmware_commit()
    assert nothing.value.status == Status.FIRMWARE_REJECTED  # nothing pending: the old firmware stays


def test_fw_begin_checks_limits_before_the_signature() -> None:
    cam = dock(virtual())
    unsigned = struct.pack("<Q32s", m.MAX_FIRMWARE_SIZE + 1, bytes(32)) + b"\x011" + bytes(64)
    with pytest.raises(DeviceError) as refused:
        cam.call(Command.FW_BEGIN, unsigned)
    assert refused.value.status == Status.BAD_REQUEST  # not FIRMWARE_REJECTED


def test_a_read_answer_ended_early_by_a_storage_error_is_a_refusal_and_the_link_stays_usable() -> None:
    """The only way a READ answer ends short: one non-OK frame in place of the next piece, then nothing."""
    camera = virtual(recordings=1, size=3 * MIB)  # 1 MiB frames: MORE_FOLLOWS, MORE_FOLLOWS, OK
    pieces: list[int] = []

    def fail_second_piece(data: bytes) -> bytes:
        frame = decode_frame(data)[0]
        if frame.command != Command.READ:
            return data
        pieces.append(frame.seq)
        if len(pieces) < 2:
            return data
        if len(pieces) == 2:  # the camera's flash fails: it ends the answer with STORAGE_ERROR
            return encode_frame(Command.READ, frame.seq, status=Status.STORAGE_ERROR, response=True)
        return b""  # and sends nothing more of it

    cam = dock(camera, Tampering(camera, fail_second_piece))
    rec = cam.recordings()[0]
    with pytest.raises(DeviceError) as failed:
        cam.read(rec, 0, rec.size)
    assert failed.value.status == Status.STORAGE_ERROR
    assert "refused READ: 0x0A STORAGE_ERROR" in str(failed.value)
    assert cam.status().recording_count == 1  # not retried, and the conversation goes on


def test_camera_resynchronises_after_more_garbage_than_the_limit() -> None:
    camera = virtual()
    garbage = b"B" + bytes(MAX_RESYNC_BYTES + 4096)
    assert exchange(camera, garbage, timeout=0.05) == []  # garbage is never answered
    [answer] = exchange(camera, encode_frame(Command.STATUS, 9))
    assert answer.status == Status.OK


def test_the_limits_table_is_the_code() -> None:
    from bodycam.drivers.device import camera as device
    from bodycam.drivers.protocol import dockauth
    from bodycam.drivers.protocol import frames as protocol

    table = dict(re.findall(r"^\| ([A-Z_]+) \| ([0-9,]+)", PROTOCOL, re.M))
    modules = (m, protocol, dockauth, device)
    code = {name: next(getattr(mod, name) for mod in modules if hasattr(mod, name)) for name in table}
    assert {name: int(value.replace(",", "")) for name, value in table.items()} == code
    assert {"MAX_PAYLOAD", "MAX_READ_SPAN", "MAX_FIRMWARE_CHUNK", "MIN_CAMERA_FRAME", "MAX_RESYNC_BYTES"} <= set(table)


def test_the_auth_column_and_the_pairing_list_are_the_code() -> None:
    """NEEDS_AUTH and NEEDS_DOCK (drivers/protocol/frames.py), the one source the virtual camera reads."""
    from bodycam.drivers.protocol.frames import NEEDS_AUTH, NEEDS_DOCK

    rows = re.findall(r"^\| 0x[0-9A-F]{2} \| ([A-Z_]+) +\| (yes)? *\|", PROTOCOL, re.M)
    assert {Command[name] for name, auth in rows if auth} == NEEDS_AUTH
    refused = re.search(r"it refuses ((?:[A-Z_]+, )+[A-Z_]+ and [A-Z_]+) with\s+`DOCK_NOT_PROVEN`", PROTOCOL)
    assert refused, "docs/protocol.md no longer lists what a paired camera refuses"
    assert {Command[name] for name in re.split(r", | and ", refused.group(1))} == NEEDS_DOCK
