"""USB/IP end to end: a ByteLink served by UsbipCameraServer, imported by UsbipBackend, read through pyusb
and UsbTransport - the same code path a dock runs against a real camera, minus the cable."""

from __future__ import annotations

import errno
import multiprocessing
import random
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import usb.core
import usb.util

from bodycam.drivers.errors import ConfigError, DisconnectedError, LinkTimeoutError, TransportError
from bodycam.drivers.transport.usb import READ_TRANSFER_SIZE, UsbTransport, find_devices, open_usb
from bodycam.drivers.transport.usbip_backend import DIR_IN, ExportedDevice, UsbipBackend, _Session, parse_address
from bodycam.drivers.virtual.link import LinkClosed
from bodycam.drivers.virtual.usbip_device import UsbipCameraServer

VID, PID = 0x1209, 0xBC02
SERIAL = "SN-USBIP-0001"
FRAME = 512 * 1024


# -- tiny firmwares ----------------------------------------------------------------------------------
class EchoLink:
    """Sends back what it receives. ``UNPLUG`` makes it raise LinkClosed (a firmware-side unplug)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._cv = threading.Condition()
        self.resets = 0

    def reset(self) -> None:
        with self._cv:
            self._buf.clear()
            self.resets += 1

    def receive(self, data: bytes) -> None:
        if data == b"UNPLUG":
            raise LinkClosed("unplug requested")
        with self._cv:
            self._buf += data
            self._cv.notify_all()

    def transmit(self, max_bytes: int, timeout: float) -> bytes:
        with self._cv:
            if not self._buf and not self._cv.wait_for(lambda: bool(self._buf), timeout):
                return b""
            out = bytes(self._buf[:max_bytes])
            del self._buf[:max_bytes]
            return out


PERIOD = 2_000_003  # a prime, so transfer boundaries never line up with the pattern's period


def _pattern_block() -> bytes:
    block = random.Random(20240607).randbytes(PERIOD)
    return block + block  # any slice of up to PERIOD bytes at offset % PERIOD is contiguous


def expected(offset: int, size: int, block: bytes) -> bytes:
    out = bytearray()
    while size:
        start = offset % PERIOD
        n = min(size, PERIOD)
        out += block[start : start + n]
        offset += n
        size -= n
    return bytes(out)


class PatternLink:
    """``PULL`` + u64 n arms n bytes of a deterministic pattern; transmit serves them in order."""

    def __init__(self) -> None:
        self._block = memoryview(_pattern_block())
        self._offset = 0
        self._armed = 0
        self._cv = threading.Condition()

    def reset(self) -> None:
        with self._cv:
            self._offset = self._armed = 0

    def receive(self, data: bytes) -> None:
        if data[:4] == b"PULL":
            with self._cv:
                self._armed += struct.unpack(">Q", data[4:12])[0]
                self._cv.notify_all()

    def transmit(self, max_bytes: int, timeout: float) -> bytes:
        with self._cv:
            if not self._armed and not self._cv.wait_for(lambda: self._armed > 0, timeout):
                return b""
            n = min(max_bytes, self._armed, PERIOD)
            start = self._offset % PERIOD
            self._offset += n
            self._armed -= n
            return bytes(self._block[start : start + n])


# -- fixtures --------------------------------------------------------------------------------------
def _serve_in_thread(link: Any, serial: str = SERIAL) -> tuple[UsbipCameraServer, threading.Thread]:
    server = UsbipCameraServer(
        link, vid=VID, pid=PID, manufacturer="Sentinel", product="BWC-2 (virtual)", serial=serial
    )
    server.start()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def echo() -> Iterator[tuple[UsbipCameraServer, EchoLink, UsbipBackend]]:
    link = EchoLink()
    server, thread = _serve_in_thread(link)
    backend = UsbipBackend(server.address)
    yield server, link, backend
    backend.close()
    server.stop()
    thread.join(timeout=5)
    assert not thread.is_alive()


@pytest.fixture
def pattern() -> Iterator[tuple[UsbipCameraServer, UsbipBackend]]:
    server, thread = _serve_in_thread(PatternLink())
    backend = UsbipBackend(server.address)
    yield server, backend
    backend.close()
    server.stop()
    thread.join(timeout=5)


def _open(backend: UsbipBackend, address: str = "cam") -> UsbTransport:
    devices = find_devices([(VID, PID)], backend=backend)
    assert len(devices) == 1
    return open_usb(devices[0], address)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- addresses -----------------------------------------------------------------------------------
def test_parse_address() -> None:
    assert parse_address("127.0.0.1:3240") == ("127.0.0.1", 3240)
    assert parse_address(" dock-7.local:40001 ") == ("dock-7.local", 40001)
    assert parse_address("[::1]:3240") == ("::1", 3240)
    for bad in ("127.0.0.1", "127.0.0.1:", ":3240", "host:0", "host:65536", "host:http", "::1:3240", "[::1]"):
        with pytest.raises(ConfigError, match="HOST:PORT"):
            parse_address(bad)


# -- discovery -----------------------------------------------------------------------------------
def test_find_by_vid_pid_reads_descriptors_and_serial(echo: tuple[UsbipCameraServer, EchoLink, UsbipBackend]) -> None:
    server, link, backend = echo
    devices = list(usb.core.find(find_all=True, idVendor=VID, idProduct=PID, backend=backend))
    assert len(devices) == 1
    dev = devices[0]
    assert usb.util.get_string(dev, dev.iSerialNumber) == SERIAL
    assert dev.serial_number == SERIAL
    assert dev.product == "BWC-2 (virtual)"
    assert dev.speed == usb.util.SPEED_HIGH
    assert (dev.bus, dev.port_numbers) == (1, (1,))
    dev.set_configuration()
    intf = dev.get_active_configuration()[(0, 0)]
    assert intf.bInterfaceClass == 0xFF
    assert [(ep.bEndpointAddress, ep.wMaxPacketSize) for ep in intf] == [(0x81, 512), (0x01, 512)]
    # other ids are not found; a second find through the same backend reuses the import (no device reset)
    assert usb.core.find(idVendor=VID, idProduct=PID + 1, backend=backend) is None
    assert usb.core.find(idVendor=VID, idProduct=PID, backend=backend) is not None
    assert server.imports == 1
    assert link.resets == 1


def test_unreachable_server_finds_nothing_and_open_usbip_says_why() -> None:
    address = f"127.0.0.1:{_closed_port()}"
    backend = UsbipBackend(address)
    assert list(usb.core.find(find_all=True, backend=backend)) == []
    assert find_devices([(VID, PID)], backend=backend) == []
    assert backend.last_error is not None and "cannot reach" in backend.last_error

    from bodycam.drivers.transport import open_usbip

    with pytest.raises(TransportError, match=f"cannot reach USB/IP server at {address}"):
        open_usbip(address)
    with pytest.raises(ConfigError):
        open_usbip("no-port-here")


# -- data path -------------------------------------------------------------------------------------
def test_write_read_round_trip(echo: tuple[UsbipCameraServer, EchoLink, UsbipBackend]) -> None:
    _server, _link, backend = echo
    with _open(backend, "dock-slot-3") as transport:
        assert transport.kind == "usbip" and UsbTransport.kind == "usb"
        assert repr(transport) == "<UsbTransport usbip:dock-slot-3>"
        transport.write(b"ping")
        assert transport.read_exact(4, timeout=2) == b"ping"
        payload = random.Random(1).randbytes(300_000)
        transport.write(payload)
        assert transport.read_exact(len(payload), timeout=5) == payload


def test_pull_8_mib_in_large_transfers_matches_pattern(pattern: tuple[UsbipCameraServer, UsbipBackend]) -> None:
    _server, backend = pattern
    total = 8 * 1024 * 1024
    block = _pattern_block()
    with _open(backend) as transport:
        transport.write(b"PULL" + struct.pack(">Q", total))
        received = bytearray()
        while len(received) < total:
            received += transport.read_exact(FRAME, timeout=5)
        assert bytes(received) == expected(0, total, block)


def test_raw_pyusb_reads_fill_the_whole_buffer(pattern: tuple[UsbipCameraServer, UsbipBackend]) -> None:
    _server, backend = pattern
    dev = usb.core.find(idVendor=VID, idProduct=PID, backend=backend)
    dev.set_configuration()
    dev.write(0x01, b"PULL" + struct.pack(">Q", 3 * READ_TRANSFER_SIZE), 1000)
    from array import array

    buf = array("B", bytes(READ_TRANSFER_SIZE))
    block = _pattern_block()
    for i in range(3):
        assert dev.read(0x81, buf, 2000) == READ_TRANSFER_SIZE
        assert buf.tobytes() == expected(i * READ_TRANSFER_SIZE, READ_TRANSFER_SIZE, block)
    usb.util.dispose_resources(dev)


def test_read_timeout_then_connection_still_works(echo: tuple[UsbipCameraServer, EchoLink, UsbipBackend]) -> None:
    _server, _link, backend = echo
    with _open(backend) as transport:
        start = time.monotonic()
        with pytest.raises(LinkTimeoutError, match="usbip:cam"):
            transport.read_exact(4, timeout=0.3)
        elapsed = time.monotonic() - start
        assert 0.29 <= elapsed < 1.0
        transport.write(b"after")
        assert transport.read_exact(5, timeout=2) == b"after"
    # at the pyusb level the timeout is a USBTimeoutError (ETIMEDOUT), as with libusb
    dev = usb.core.find(idVendor=VID, idProduct=PID, backend=backend)
    with pytest.raises(usb.core.USBTimeoutError) as info:
        dev.read(0x81, 64, 100)
    assert info.value.errno == errno.ETIMEDOUT
    usb.util.dispose_resources(dev)


def test_no_byte_lost_when_transfers_time_out_while_data_trickles_in(
    echo: tuple[UsbipCameraServer, EchoLink, UsbipBackend],
) -> None:
    """Host timeouts (CMD_UNLINK) racing device completions must neither drop nor reorder data."""
    _server, link, backend = echo
    dev = usb.core.find(idVendor=VID, idProduct=PID, backend=backend)
    dev.set_configuration()
    rng = random.Random(7)
    chunks = [rng.randbytes(rng.randrange(1, 3000)) for _ in range(150)]
    sent = b"".join(chunks)

    def trickle() -> None:
        for chunk in chunks:
            link.receive(chunk)
            time.sleep(rng.choice((0.0, 0.001, 0.004, 0.02)))

    producer = threading.Thread(target=trickle)
    producer.start()
    received = bytearray()
    timeouts = 0
    deadline = time.monotonic() + 15
    while len(received) < len(sent) and time.monotonic() < deadline:
        try:
            received += dev.read(0x81, 4096, 3)
        except usb.core.USBTimeoutError:
            timeouts += 1
    producer.join()
    usb.util.dispose_resources(dev)
    assert timeouts > 10  # the race was exercised
    assert bytes(received) == sent


def test_drop_connections_mid_read_is_a_disconnect(echo: tuple[UsbipCameraServer, EchoLink, UsbipBackend]) -> None:
    server, link, backend = echo
    transport = _open(backend, "slot-1")
    timer = threading.Timer(0.3, server.drop_connections)
    timer.start()
    start = time.monotonic()
    with pytest.raises(DisconnectedError, match="usbip:slot-1"):
        transport.read_exact(1, timeout=10)
    assert time.monotonic() - start < 3
    transport.close()
    # re-dock: the same backend imports the camera again (a bus reset), and it works
    with _open(backend) as again:
        again.write(b"back")
        assert again.read_exact(4, timeout=2) == b"back"
    assert server.imports == 2 and link.resets == 2


def test_link_closed_by_firmware_unplugs(echo: tuple[UsbipCameraServer, EchoLink, UsbipBackend]) -> None:
    _server, _link, backend = echo
    with _open(backend) as transport:
        transport.write(b"UNPLUG")
        with pytest.raises(DisconnectedError):
            transport.read_exact(1, timeout=5)


def test_a_new_import_takes_the_camera_over(echo: tuple[UsbipCameraServer, EchoLink, UsbipBackend]) -> None:
    server, _link, backend = echo
    first = _open(backend, "first")
    other = UsbipBackend(server.address)
    try:
        with _open(other, "second") as second:
            second.write(b"mine")
            assert second.read_exact(4, timeout=2) == b"mine"
            with pytest.raises(DisconnectedError, match="usbip:first"):
                first.read_exact(1, timeout=2)
    finally:
        first.close()
        other.close()


def test_stall_maps_to_epipe_and_clear_halt_recovers(echo: tuple[UsbipCameraServer, EchoLink, UsbipBackend]) -> None:
    _server, link, backend = echo
    dev = usb.core.find(idVendor=VID, idProduct=PID, backend=backend)
    dev.set_configuration()
    with pytest.raises(usb.core.USBError) as info:  # unknown vendor request: the device STALLs EP0
        dev.ctrl_transfer(0xC0, 0x7E, 0, 0, 16)
    assert info.value.errno == errno.EPIPE and info.value.backend_error_code == -9
    assert dev.ctrl_transfer(0x80, 0x08, 0, 0, 1).tolist() == [1]  # EP0 still fine: GET_CONFIGURATION
    dev.ctrl_transfer(0x02, 0x03, 0, 0x81)  # SET_FEATURE(ENDPOINT_HALT) on bulk IN
    link.receive(b"queued")
    with pytest.raises(usb.core.USBError) as info:
        dev.read(0x81, 64, 1000)
    assert info.value.errno == errno.EPIPE
    dev.clear_halt(0x81)
    assert dev.read(0x81, 64, 1000).tobytes() == b"queued"
    usb.util.dispose_resources(dev)


# -- a hostile or broken server --------------------------------------------------------------------
def _fake_server(reply: bytes) -> tuple[str, threading.Thread]:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        with listener:
            listener.settimeout(5)
            conn, _ = listener.accept()
            with conn:
                conn.recv(8)
                conn.sendall(reply)
                time.sleep(0.2)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"127.0.0.1:{port}", thread


def test_hostile_device_count_is_refused_without_allocating() -> None:
    address, thread = _fake_server(struct.pack(">HHII", 0x0111, 0x0005, 0, 0x7FFFFFFF))
    backend = UsbipBackend(address)
    assert list(backend.enumerate_devices()) == []
    assert backend.last_error is not None and "limit" in backend.last_error
    thread.join(timeout=5)


# -- the URB engine against a scripted server: unlink races ------------------------------------------
def _scripted_session() -> tuple[_Session, socket.socket]:
    host, device = socket.socketpair()
    info = ExportedDevice("1-1", 1, 2, 3, VID, PID, 0x0100, 1, 1)
    return _Session(host, info, "scripted/1-1"), device


def _recv_command(sock: socket.socket) -> tuple[int, int, int]:
    """(command, seqnum, unlinked seqnum) of the next 48-byte command."""
    raw = b""
    while len(raw) < 48:
        raw += sock.recv(48 - len(raw))
    command, seqnum, _devid, _direction, _ep, extra = struct.unpack(">IIIIII", raw[:24])
    return command, seqnum, extra


def _ret(command: int, seqnum: int, status: int, actual: int) -> bytes:
    return struct.pack(">IIIIIiiiii8x", command, seqnum, 0, 0, 0, status, actual, 0, 0, 0)


def _script(device: socket.socket, steps: Any) -> threading.Thread:
    thread = threading.Thread(target=steps, args=(device,), daemon=True)
    thread.start()
    return thread


def test_completion_racing_the_unlink_is_delivered_not_dropped() -> None:
    session, device = _scripted_session()

    def steps(sock: socket.socket) -> None:
        _, submitted, _ = _recv_command(sock)
        command, unlink_seq, target = _recv_command(sock)  # the host timed out
        assert (command, target) == (2, submitted)
        sock.sendall(_ret(3, submitted, 0, 5) + b"hello" + _ret(4, unlink_seq, 0, 0))

    thread = _script(device, steps)
    buf = bytearray(64)
    assert session.transfer(DIR_IN, 1, bytes(8), memoryview(buf), 50) == 5
    assert buf[:5] == b"hello"
    thread.join(timeout=5)
    session.close()
    device.close()


def test_late_completion_after_unlink_is_skipped() -> None:
    session, device = _scripted_session()

    def steps(sock: socket.socket) -> None:
        _, first, _ = _recv_command(sock)
        _, unlink_seq, _ = _recv_command(sock)
        sock.sendall(_ret(4, unlink_seq, 0, 0))  # "unlinked" ... but the data still comes (usbip package race)
        _, second, _ = _recv_command(sock)
        sock.sendall(_ret(3, first, 0, 3) + b"old" + _ret(3, second, 0, 3) + b"new")

    thread = _script(device, steps)
    buf = bytearray(64)
    with pytest.raises(usb.core.USBTimeoutError):
        session.transfer(DIR_IN, 1, bytes(8), memoryview(buf), 50)
    assert session.transfer(DIR_IN, 1, bytes(8), memoryview(buf), 2000) == 3
    assert buf[:3] == b"new"
    thread.join(timeout=5)
    session.close()
    device.close()


def test_reply_longer_than_the_request_is_a_lost_device() -> None:
    session, device = _scripted_session()

    def steps(sock: socket.socket) -> None:
        _, submitted, _ = _recv_command(sock)
        sock.sendall(_ret(3, submitted, 0, 1 << 30))

    thread = _script(device, steps)
    for _ in range(2):  # the session is torn down, and stays down
        with pytest.raises(usb.core.USBError) as info:
            session.transfer(DIR_IN, 1, bytes(8), memoryview(bytearray(64)), 2000)
        assert info.value.errno == errno.ENODEV
    assert session.lost is not None and "protocol error" in session.lost
    thread.join(timeout=5)
    device.close()


# -- the server in its own process, as it runs for real ----------------------------------------------
def _serve_pattern_process(ports: Any) -> None:
    server = UsbipCameraServer(
        PatternLink(), vid=VID, pid=PID, manufacturer="Sentinel", product="BWC-2 (virtual)", serial="SN-PROC"
    )
    ports.put(server.start()[1])
    server.serve_forever()  # until the process is killed, as a camera's power goes


def test_server_in_another_process() -> None:
    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    proc = ctx.Process(target=_serve_pattern_process, args=(ports,), daemon=True)
    proc.start()
    try:
        port = ports.get(timeout=20)
        backend = UsbipBackend(f"127.0.0.1:{port}")
        devices = find_devices([(VID, PID)], backend=backend)
        assert [d.serial_number for d in devices] == ["SN-PROC"]
        total = 4 * 1024 * 1024
        with open_usb(devices[0], f"127.0.0.1:{port}") as transport:
            transport.write(b"PULL" + struct.pack(">Q", total))
            data = b"".join(transport.read_exact(FRAME, timeout=5) for _ in range(total // FRAME))
            assert data == expected(0, total, _pattern_block())
            # the camera process dies: a parked read fails at once with a disconnect
            threading.Timer(0.2, proc.kill).start()
            with pytest.raises(DisconnectedError):
                transport.read_exact(1, timeout=10)
        assert find_devices([(VID, PID)], backend=backend) == []
        backend.close()
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(timeout=5)
