"""The camera read path reuses its receive buffers (issue 14), and never lets that change a byte it lent.

``Camera.iter_read(..., lend=N)`` yields views of a ring of N + 1 transfer buffers instead of a fresh
``bytes`` per 1 MiB frame; these tests check the reuse on the real media (USB/IP and a pty) and the
contract the pipeline relies on: the last N chunks yielded stay intact while the generator runs on,
whatever the camera packs into a transfer (several frames, split frames, garbage, stale answers).
"""

from __future__ import annotations

import hashlib
from array import array
from collections import deque
from collections.abc import Iterator

import pytest

from bodycam.drivers.device.camera import MAX_LEND, Camera
from bodycam.drivers.errors import LinkTimeoutError, TransportError
from bodycam.drivers.models import by_name
from bodycam.drivers.protocol import messages as m
from bodycam.drivers.protocol.frames import RESPONSE_BIT, Command, Status, encode_frame
from bodycam.drivers.transport.base import Transport
from bodycam.drivers.virtual.camera import VirtualCamera, public_bytes, sim_device_key
from bodycam.drivers.virtual.link import LinkClosed
from bodycam.drivers.virtual.loopback import LoopbackTransport
from bodycam.drivers.virtual.server import SimSpec, build_camera

from .sims import MEDIA, serve, spec

MiB = 1024 * 1024
SERIAL = "RX-0001"


def _checked(chunks: Iterator[bytes | memoryview], lend: int) -> Iterator[bytes | memoryview]:
    """The chunks, each checked against its snapshot while it is one of the last ``lend`` yielded."""
    held: deque[tuple[bytes | memoryview, bytes]] = deque(maxlen=max(1, lend))
    for chunk in chunks:
        for view, snapshot in held:
            assert bytes(view) == snapshot, "a lent chunk changed while the caller could still hold it"
        held.append((chunk, bytes(chunk)))
        yield chunk


def _docked(camera: VirtualCamera, transport: Transport) -> Camera:
    cam = Camera(transport, timeout=2.0)
    cam.open()
    cam.authenticate(public_bytes(sim_device_key(camera.serial)))
    return cam


@pytest.mark.parametrize("medium", MEDIA)
def test_lent_chunks_are_views_of_a_few_reused_buffers(medium: str) -> None:
    with serve(medium, spec(SERIAL, recordings=1, training=1, size=24 * MiB + 5)) as sim:
        with sim.connect() as cam:
            cam.open()
            cam.authenticate(sim.enrolled_key)
            rec = cam.recordings()[0]
            digest = hashlib.sha256()
            buffers: list[object] = []  # the objects the views are of, kept so identities stay unique
            chunks = 0
            for chunk in _checked(cam.iter_read(rec, lend=2), 2):
                digest.update(chunk)
                chunks += 1
                if isinstance(chunk, memoryview):
                    assert chunk.readonly
                    if not any(chunk.obj is b for b in buffers):
                        buffers.append(chunk.obj)
            assert digest.digest() == rec.sha256
            if medium == "usbip":  # a frame a transfer: every chunk a view, 3 buffers for 25 frames
                assert chunks == 25 and 1 <= len(buffers) <= 3
            # without lend every chunk is the caller's own (b"".join of the generator is safe)
            assert all(isinstance(c, bytes) for c in cam.iter_read(rec, rec.size - 3 * MiB))
            assert hashlib.sha256(b"".join(cam.iter_read(rec))).digest() == rec.sha256


class Packing(LoopbackTransport):
    """A camera that packs what it sends differently: ``frames`` answers glued into one read, or each
    read cut to ``cut`` bytes (frames split across reads), with ``junk`` bytes of garbage first."""

    def __init__(self, link: VirtualCamera, *, frames: int = 1, cut: int = 0, junk: bytes = b"") -> None:
        super().__init__(link)
        self.frames, self.cut, self.junk = frames, cut, junk
        self._carry = b""

    def _read_some(self, timeout: float) -> bytes:
        if self._carry:
            data, self._carry = self._carry, b""
        else:
            data = super()._read_some(timeout)
            for _ in range(self.frames - 1):
                try:
                    more = self.link.transmit(1024 * 1024 + 65536, 0.05)
                except LinkClosed:
                    break
                if not more:
                    break
                data += more
            if data and self.junk:
                data = self.junk + data
        if self.cut and len(data) > self.cut:
            data, self._carry = data[: self.cut], data[self.cut :]
        return data


@pytest.mark.parametrize("lend", [1, 2, 5])
@pytest.mark.parametrize(
    "packing",
    [
        {"frames": 1},
        {"frames": 4},  # four 256 KiB frames a read: one buffer holds several lent chunks
        {"frames": 3, "junk": b"\x00BC\x01garbage"},  # garbage before each read: resynchronised
        {"frames": 1, "cut": 100_000},  # frames split across reads: the copying decoder
        {"frames": 2, "cut": 700_000},
    ],
    ids=["one", "four-a-read", "junk", "split", "glued-and-split"],
)
def test_a_lent_chunk_stays_intact_while_the_next_ones_are_read(lend: int, packing: dict[str, object]) -> None:
    camera = build_camera(SimSpec(SERIAL, model=by_name("Warden W9"), recordings=1, training=1, size=12 * MiB + 77))
    cam = _docked(camera, Packing(camera, **packing))  # type: ignore[arg-type]
    rec = cam.recordings()[0]
    digest = hashlib.sha256()
    for chunk in _checked(cam.iter_read(rec, span=2 * MiB, lend=lend), lend):
        digest.update(chunk)
    assert digest.digest() == rec.sha256
    # the conversation goes on after a lending read (its buffers let go, none reused under the caller)
    assert cam.status().recording_count == 1


class StaleFlood(LoopbackTransport):
    """Before each answer to a READ, answers to a request never made (stale frames of 256 KiB), each a
    transfer of its own (``glued``: all in the answer's transfer)."""

    def __init__(self, link: VirtualCamera, *, glued: bool) -> None:
        super().__init__(link)
        self.glued = glued
        self._queue: list[bytes] = []

    def _read_some(self, timeout: float) -> bytes:
        if self._queue:
            return self._queue.pop(0)
        data = super()._read_some(timeout)
        if len(data) > 4 and data[3] == Command.READ | RESPONSE_BIT:
            stale = encode_frame(Command.READ, 0xFFFF, bytes(256 * 1024), status=Status.OK, response=True)
            if self.glued:
                return stale * 3 + data
            self._queue = [stale, stale, data]
            return stale
        return data


@pytest.mark.parametrize("glued", [False, True], ids=["own-transfers", "glued"])
def test_transfers_of_stale_frames_never_overwrite_a_lent_chunk(glued: bool) -> None:
    """Reads that yield nothing (stale answers) must not recycle a buffer the caller may still hold."""
    camera = build_camera(SimSpec(SERIAL, model=by_name("Warden W9"), recordings=1, training=1, size=6 * MiB))
    cam = _docked(camera, StaleFlood(camera, glued=glued))
    rec = cam.recordings()[0]
    digest = hashlib.sha256()
    for chunk in _checked(cam.iter_read(rec, span=MiB, lend=2), 2):
        digest.update(chunk)
    assert digest.digest() == rec.sha256


def test_lend_is_bounded() -> None:
    camera = build_camera(SimSpec(SERIAL, recordings=1, training=1, size=MiB))
    cam = _docked(camera, LoopbackTransport(camera))
    rec = cam.recordings()[0]
    for bad in (-1, MAX_LEND + 1):
        with pytest.raises(ValueError, match="lend must be"):
            next(cam.iter_read(rec, lend=bad))


class Lying(Transport):
    """A backend that reports more bytes than the buffer it was given holds."""

    kind = "test"

    def _read_some(self, timeout: float) -> bytes:
        return b""

    def _read_into(self, buf: array[int], timeout: float) -> int:
        return len(buf) + 1

    def _write_all(self, data: bytes, timeout: float) -> None:
        pass

    def _close(self) -> None:
        pass


def test_a_read_count_beyond_the_buffer_is_one_line_error() -> None:
    transport = Lying("x")
    with pytest.raises(TransportError, match="reported 17 bytes into a 16-byte buffer"):
        transport.read_into(array("B", bytes(16)), 1.0)
    cam = Camera(Lying("y"), timeout=0.5, retries=0)
    with pytest.raises(TransportError, match="into a"):
        cam.call(Command.STATUS)


def test_read_into_serves_what_the_backend_returned_beyond_the_buffer_first() -> None:
    camera = build_camera(SimSpec(SERIAL, recordings=1, training=1, size=MiB))
    transport = LoopbackTransport(camera)
    transport.write(encode_frame(Command.HELLO, 1, m.HelloRequest(1, 2, 1 << 20).to_bytes()))
    small = array("B", bytes(7))
    got = bytearray()
    while True:
        try:
            n = transport.read_into(small, 0.5)
        except LinkTimeoutError:
            break
        got += memoryview(small)[:n]
    assert got[:2] == b"BC" and len(got) > 20  # the whole answer, 7 bytes at a time, nothing lost
