"""A pyusb backend that imports devices from a USB/IP server over TCP (no root, no vhci).

``usb.core.find(idVendor=..., backend=UsbipBackend("127.0.0.1:3240"))`` finds the devices the
server exports, and the ordinary pyusb calls (``set_configuration``, string descriptors, ``read``,
``write``, ``ctrl_transfer``, ``clear_halt``) work on them unchanged, so the USB transport runs the
same code against a real dock (libusb) and a virtual camera (``bodycam.drivers.virtual.usbip_device``).

Design (see the notes in ``docs/usbip.md``):

* The handshake (OP_REQ_DEVLIST / OP_REQ_IMPORT) and the URB phase (CMD_SUBMIT / RET_SUBMIT /
  CMD_UNLINK / RET_UNLINK, 48-byte big-endian headers) are spoken here directly, so this module
  needs only pyusb, and IN data is received with ``recv_into`` straight into pyusb's buffer.
* A device is imported once, when it is first enumerated, and that connection is reused by
  ``open_device`` and by later enumerations through the same backend while it is alive: every
  import resets the device on the server, so a second ``find()`` must not re-import it.
* One URB is in flight per device (a lock around submit + completion).
* Timeouts (pyusb gives milliseconds, 0 = infinite like libusb) are implemented with CMD_UNLINK;
  data that completes in the race with the unlink is delivered, not dropped.
* Errors follow the libusb1 backend: a STALL is ``USBError`` errno EPIPE, a lost connection is
  errno ENODEV (what libusb reports on unplug), a timeout is ``usb.core.USBTimeoutError``.
* Everything read from the server is bounded (device counts, interface counts, reply lengths), so
  a hostile server cannot make the dock allocate without limit.
"""

# ruff: noqa: N815 - descriptor fields carry their USB spec names, which is what pyusb reads

from __future__ import annotations

import dataclasses
import errno
import logging
import re
import select
import socket
import struct
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

import usb.backend
import usb.core

from bodycam.drivers.errors import ConfigError, TransportError

LOG = logging.getLogger(__name__)

DEFAULT_PORT = 3240

# -- wire constants (Documentation/usb/usbip_protocol.rst) -------------------------------------
USBIP_VERSION = 0x0111
OP_REQ_DEVLIST, OP_REP_DEVLIST = 0x8005, 0x0005
OP_REQ_IMPORT, OP_REP_IMPORT = 0x8003, 0x0003
CMD_SUBMIT, CMD_UNLINK, RET_SUBMIT, RET_UNLINK = 1, 2, 3, 4
DIR_OUT, DIR_IN = 0, 1
URB_DIR_IN = 0x0200  # Linux transfer_flags bit the kernel client sets on IN URBs

_OP_HEADER = struct.Struct(">HHI")  # version, code, status
_USB_DEVICE = struct.Struct(">256s32sIIIHHHBBBBBB")  # struct usbip_usb_device, 312 bytes
_CMD_SUBMIT = struct.Struct(">IIIIIIiiii8s")  # basic header + cmd_submit + setup, 48 bytes
_CMD_UNLINK = struct.Struct(">IIIIII24x")  # basic header + unlink seqnum + padding, 48 bytes
_RET = struct.Struct(">IIIIIiiiii8x")  # basic header + ret_submit/ret_unlink, 48 bytes
_HEADER_SIZE = 48
_SETUP = struct.Struct("<BBHHH")
_NO_SETUP = bytes(8)

# -- bounds on what a server may make us hold -------------------------------------------------
MAX_EXPORTED_DEVICES = 64  # OP_REP_DEVLIST device count
MAX_INTERFACES = 32  # interfaces per device in OP_REP_DEVLIST
MAX_CONFIGURATIONS = 8  # configuration descriptors read per device
_MAX_REMEMBERED_UNLINKS = 64  # timed-out URBs whose late completion we may still have to skip
_GRACE_S = 5.0  # once a reply has started (or after CMD_UNLINK), how long the rest may take
_DRAIN_CHUNK = 256 * 1024

# -- descriptor constants ----------------------------------------------------------------------
_DT_DEVICE, _DT_CONFIG, _DT_STRING, _DT_INTERFACE, _DT_ENDPOINT = 1, 2, 3, 4, 5

# libusb error codes the libusb1 backend puts in USBError.backend_error_code
_LIBUSB_ERROR_IO = -1
_LIBUSB_ERROR_INVALID_PARAM = -2
_LIBUSB_ERROR_NO_DEVICE = -4
_LIBUSB_ERROR_TIMEOUT = -7
_LIBUSB_ERROR_OVERFLOW = -8
_LIBUSB_ERROR_PIPE = -9

# kernel usb_device_speed (wire) -> libusb/pyusb speed constants
_SPEED_FROM_WIRE = {0: 0, 1: 1, 2: 2, 3: 3, 4: 3, 5: 4, 6: 5}

_BUSID = re.compile(r"^\d{1,3}-(\d{1,3}(?:\.\d{1,3}){0,6})$")


# -- addresses ---------------------------------------------------------------------------------
def parse_address(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (``"[v6addr]:PORT"`` for IPv6) -> ``(host, port)``; ConfigError when malformed."""
    raw = text.strip()
    example = f"expected HOST:PORT, e.g. 127.0.0.1:{DEFAULT_PORT}"
    if raw.startswith("["):
        host, sep, port_text = raw[1:].partition("]:")
        if not sep:
            raise ConfigError(f"USB/IP server address {text!r} is malformed; {example} or [::1]:{DEFAULT_PORT}")
    else:
        host, sep, port_text = raw.rpartition(":")
        if not sep or ":" in host:
            raise ConfigError(f"USB/IP server address {text!r} has no port; {example}")
    if not host or any(ch.isspace() for ch in host):
        raise ConfigError(f"USB/IP server address {text!r} has no host; {example}")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"USB/IP server address {text!r} has an invalid port {port_text!r}; {example}")
    return host, int(port_text)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- descriptors as pyusb wants them -----------------------------------------------------------
@dataclass(slots=True)
class DeviceDescriptor:
    """A USB device descriptor (USB 2.0, 9.6.1), with pyusb's field names."""

    bLength: int
    bDescriptorType: int
    bcdUSB: int
    bDeviceClass: int
    bDeviceSubClass: int
    bDeviceProtocol: int
    bMaxPacketSize0: int
    idVendor: int
    idProduct: int
    bcdDevice: int
    iManufacturer: int
    iProduct: int
    iSerialNumber: int
    bNumConfigurations: int
    # what libusb adds and pyusb copies onto usb.core.Device
    bus: int | None = None
    address: int | None = None
    port_number: int | None = None
    port_numbers: tuple[int, ...] | None = None
    speed: int | None = None

    @classmethod
    def parse(cls, raw: bytes) -> DeviceDescriptor:
        if len(raw) < 18 or raw[1] != _DT_DEVICE:
            raise ValueError(f"device descriptor is malformed ({len(raw)} bytes)")
        return cls(*struct.unpack_from("<BBHBBBBHHHBBBB", raw))


@dataclass(slots=True)
class EndpointDescriptor:
    """A USB endpoint descriptor (USB 2.0, 9.6.6), with pyusb's field names."""

    bLength: int
    bDescriptorType: int
    bEndpointAddress: int
    bmAttributes: int
    wMaxPacketSize: int
    bInterval: int
    bRefresh: int = 0
    bSynchAddress: int = 0
    extra_descriptors: list[int] = field(default_factory=list)


@dataclass(slots=True)
class InterfaceDescriptor:
    """A USB interface descriptor (USB 2.0, 9.6.5), with pyusb's field names."""

    bLength: int
    bDescriptorType: int
    bInterfaceNumber: int
    bAlternateSetting: int
    bNumEndpoints: int
    bInterfaceClass: int
    bInterfaceSubClass: int
    bInterfaceProtocol: int
    iInterface: int
    extra_descriptors: list[int] = field(default_factory=list)
    endpoints: list[EndpointDescriptor] = field(default_factory=list)


@dataclass(slots=True)
class ConfigurationDescriptor:
    """A USB configuration descriptor (USB 2.0, 9.6.3), with pyusb's field names."""

    bLength: int
    bDescriptorType: int
    wTotalLength: int
    bNumInterfaces: int
    bConfigurationValue: int
    iConfiguration: int
    bmAttributes: int
    bMaxPower: int
    extra_descriptors: list[int] = field(default_factory=list)
    #: ``interfaces[logical interface index][logical alternate setting index]``
    interfaces: list[list[InterfaceDescriptor]] = field(default_factory=list)


def parse_configuration(blob: bytes) -> ConfigurationDescriptor:
    """A full configuration descriptor (header + interfaces + endpoints + class descriptors).

    Descriptors between an interface and its first endpoint are that interface's ``extra_descriptors``,
    those after an endpoint belong to the endpoint, those before the first interface to the
    configuration (libusb's split). ``bNumEndpoints`` is the number of endpoints actually present,
    so pyusb never asks for one that is not there.
    """
    if len(blob) < 9 or blob[1] != _DT_CONFIG or blob[0] < 9:
        raise ValueError(f"configuration descriptor is malformed ({len(blob)} bytes)")
    cfg = ConfigurationDescriptor(*struct.unpack_from("<BBHBBBBB", blob))
    by_number: dict[int, list[InterfaceDescriptor]] = {}
    intf: InterfaceDescriptor | None = None
    ep: EndpointDescriptor | None = None
    pos = blob[0]
    while pos + 2 <= len(blob):
        length, dtype = blob[pos], blob[pos + 1]
        if length < 2 or pos + length > len(blob):
            break
        chunk = blob[pos : pos + length]
        if dtype == _DT_INTERFACE and length >= 9:
            intf = InterfaceDescriptor(*struct.unpack_from("<BBBBBBBBB", chunk))
            by_number.setdefault(intf.bInterfaceNumber, []).append(intf)
            ep = None
        elif dtype == _DT_ENDPOINT and length >= 7 and intf is not None:
            b_length, b_type, address, attributes, max_packet, interval = struct.unpack_from("<BBBBHB", chunk)
            refresh, synch = (chunk[7], chunk[8]) if length >= 9 else (0, 0)
            ep = EndpointDescriptor(b_length, b_type, address, attributes, max_packet, interval, refresh, synch)
            intf.endpoints.append(ep)
        else:
            owner = ep if ep is not None else intf if intf is not None else cfg
            owner.extra_descriptors.extend(chunk)
        pos += length
    for alts in by_number.values():
        for alt in alts:
            alt.bNumEndpoints = len(alt.endpoints)
    cfg.interfaces = list(by_number.values())
    return cfg


@dataclass(frozen=True, slots=True)
class ExportedDevice:
    """One entry of the server's device list (OP_REP_DEVLIST / OP_REP_IMPORT)."""

    busid: str
    busnum: int
    devnum: int
    speed: int  # kernel usb_device_speed as sent on the wire
    vid: int
    pid: int
    bcd_device: int
    num_configurations: int
    num_interfaces: int
    interfaces: tuple[tuple[int, int, int], ...] = ()  # (class, subclass, protocol), devlist only

    @property
    def devid(self) -> int:
        return (self.busnum << 16) | self.devnum


def _parse_usb_device(raw: bytes) -> ExportedDevice:
    (_path, busid, busnum, devnum, speed, vid, pid, bcd, _dc, _sc, _pr, _cfg, ncfg, nif) = _USB_DEVICE.unpack(raw)
    return ExportedDevice(
        busid=busid.split(b"\0", 1)[0].decode("ascii", errors="replace"),
        busnum=busnum,
        devnum=devnum,
        speed=speed,
        vid=vid,
        pid=pid,
        bcd_device=bcd,
        num_configurations=ncfg,
        num_interfaces=nif,
    )


def _port_numbers(busid: str) -> tuple[int, ...] | None:
    match = _BUSID.match(busid)
    if match is None:
        return None
    return tuple(int(part) for part in match.group(1).split("."))


def _usb_error(message: str, code: int, err: int) -> usb.core.USBError:
    return usb.core.USBError(message, code, err)


def _timeout_error() -> usb.core.USBError:
    return usb.core.USBTimeoutError("Operation timed out", _LIBUSB_ERROR_TIMEOUT, errno.ETIMEDOUT)


def _check_status(status: int) -> None:
    """Raise what libusb would for a (signed, negative errno) URB status; 0 returns."""
    if status == 0 or status == -errno.EREMOTEIO:  # EREMOTEIO: short packet, we never ask for SHORT_NOT_OK
        return
    if status == -errno.EPIPE:
        raise _usb_error("Pipe error (endpoint stalled)", _LIBUSB_ERROR_PIPE, errno.EPIPE)
    if status in (-errno.ENODEV, -errno.ESHUTDOWN):
        raise _usb_error("No such device (it may have been disconnected)", _LIBUSB_ERROR_NO_DEVICE, errno.ENODEV)
    if status in (-errno.ETIMEDOUT, -errno.ETIME, -errno.ENOENT, -errno.ECONNRESET):
        raise _timeout_error()
    if status == -errno.EOVERFLOW:
        raise _usb_error("Overflow", _LIBUSB_ERROR_OVERFLOW, errno.EOVERFLOW)
    raise _usb_error(f"Input/Output Error (URB status {status})", _LIBUSB_ERROR_IO, errno.EIO)


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(deadline - time.monotonic(), 0.001)


# -- one imported device: the connection and its URB engine -------------------------------------
class _Session:
    """The TCP connection of one imported device. One URB at a time (``lock``)."""

    def __init__(self, sock: socket.socket, info: ExportedDevice, label: str) -> None:
        self.sock = sock
        self.info = info
        self.devid = info.devid
        self.label = label
        self.lock = threading.Lock()
        self.lost: str | None = None
        self._seqnum = 0
        self._header = bytearray(_HEADER_SIZE)
        #: by when the reply being read must be whole: its first bytes' arrival plus _GRACE_S
        self._reply_until = 0.0
        # seqnum -> (direction, length) of URBs we unlinked without seeing their completion
        self._unlinked: OrderedDict[int, tuple[int, int]] = OrderedDict()

    # -- lifecycle --
    def close(self, reason: str = "closed") -> None:
        if self.lost is None:
            self.lost = reason
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def alive(self) -> bool:
        """Still connected? A busy session (a transfer in flight) counts as alive."""
        if self.lost is not None:
            return False
        if not self.lock.acquire(blocking=False):
            return True
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
            if readable and self.sock.recv(1, socket.MSG_PEEK) == b"":
                self.close("the server closed the connection")
                return False
            return True
        except (OSError, ValueError):
            self.close("the connection failed")
            return False
        finally:
            self.lock.release()

    def _lost(self, reason: str) -> usb.core.USBError:
        """Tear the connection down and return the ENODEV error for the caller to raise."""
        self.close(reason)
        return _usb_error(
            f"No such device (USB/IP connection to {self.label} lost: {reason})", _LIBUSB_ERROR_NO_DEVICE, errno.ENODEV
        )

    def _next_seqnum(self) -> int:
        self._seqnum = self._seqnum + 1 if self._seqnum < 0xFFFFFFFF else 1
        return self._seqnum

    # -- the URB engine --
    def transfer(self, direction: int, ep: int, setup: bytes, data: memoryview, timeout_ms: int) -> int:
        """Submit one URB and wait for it. ``data`` is the OUT payload or the IN destination.

        Returns the number of bytes transferred. ``timeout_ms`` 0 (or less) waits forever.
        """
        with self.lock:
            if self.lost is not None:
                raise _usb_error(
                    f"No such device (USB/IP connection to {self.label} lost: {self.lost})",
                    _LIBUSB_ERROR_NO_DEVICE,
                    errno.ENODEV,
                )
            seqnum = self._next_seqnum()
            length = len(data)
            deadline = None if timeout_ms <= 0 else time.monotonic() + timeout_ms / 1000.0
            flags = URB_DIR_IN if direction == DIR_IN else 0
            header = _CMD_SUBMIT.pack(CMD_SUBMIT, seqnum, self.devid, direction, ep, flags, length, 0, 0, 0, setup)
            try:
                self.sock.settimeout(_remaining(deadline))
                if direction == DIR_OUT and length:
                    if length <= 64 * 1024:
                        self.sock.sendall(header + data.tobytes())
                    else:
                        self.sock.sendall(header)
                        self.sock.sendall(data)
                else:
                    self.sock.sendall(header)
            except TimeoutError:
                # part of the command may be on the wire: the stream cannot be resynchronised
                self.close("sending a transfer timed out")
                raise _timeout_error() from None
            except OSError as err:
                raise self._lost(f"send failed: {err}") from err
            return self._complete(seqnum, direction, ep, data, deadline)

    def _complete(self, seqnum: int, direction: int, ep: int, data: memoryview, deadline: float | None) -> int:
        while True:
            fields = self._read_header(deadline, timeout_is_loss=False)
            if fields is None:
                return self._unlink(seqnum, direction, ep, data)
            command, rseq = fields[0], fields[1]
            status, actual = fields[5], fields[6]
            if command == RET_SUBMIT and rseq == seqnum:
                actual = self._receive_payload(direction, data, actual)
                _check_status(status)
                return actual
            if command == RET_SUBMIT and rseq in self._unlinked:
                self._skip_late_completion(rseq, actual)
                continue
            raise self._lost(f"protocol error: unexpected reply (command {command}, seqnum {rseq})")

    def _unlink(self, seqnum: int, direction: int, ep: int, data: memoryview) -> int:
        """The URB timed out: CMD_UNLINK it and wait for RET_UNLINK.

        A RET_SUBMIT that wins the race is honoured (its data is delivered) - dropping it would
        lose bytes of the camera's stream, and libusb likewise returns data that arrived with a timeout.
        """
        unlink_seq = self._next_seqnum()
        try:
            self.sock.settimeout(_GRACE_S)
            self.sock.sendall(_CMD_UNLINK.pack(CMD_UNLINK, unlink_seq, self.devid, direction, ep, seqnum))
        except OSError as err:
            raise self._lost(f"sending CMD_UNLINK failed: {err}") from err
        grace = time.monotonic() + _GRACE_S
        result: tuple[int, int] | None = None
        while True:
            fields = self._read_header(grace, timeout_is_loss=True)
            if fields is None:  # pragma: no cover - timeout_is_loss raises instead
                raise self._lost("no answer to CMD_UNLINK")
            command, rseq = fields[0], fields[1]
            status, actual = fields[5], fields[6]
            if command == RET_UNLINK and rseq == unlink_seq:
                break
            if command == RET_SUBMIT and rseq == seqnum and result is None:
                result = (status, self._receive_payload(direction, data, actual))
                continue
            if command == RET_SUBMIT and rseq in self._unlinked:
                self._skip_late_completion(rseq, actual)
                continue
            raise self._lost(f"protocol error: unexpected reply (command {command}, seqnum {rseq}) to CMD_UNLINK")
        if result is not None:
            status, actual = result
            if actual > 0 and status in (-errno.ENOENT, -errno.ECONNRESET):
                return actual  # partially filled, then unlinked: the data is real
            _check_status(status)
            return actual
        # Some servers (the usbip package) may still send the RET_SUBMIT after RET_UNLINK: remember
        # the seqnum so that reply is skipped rather than taken for a protocol error.
        self._unlinked[seqnum] = (direction, len(data))
        while len(self._unlinked) > _MAX_REMEMBERED_UNLINKS:
            self._unlinked.popitem(last=False)
        raise _timeout_error()

    def _read_header(self, deadline: float | None, *, timeout_is_loss: bool) -> tuple[int, ...] | None:
        """The next 48-byte reply header, or None if nothing at all arrived before ``deadline``."""
        view = memoryview(self._header)
        got = 0
        try:
            self.sock.settimeout(_remaining(deadline))
            while got < _HEADER_SIZE:
                try:
                    if got:  # a reply has started: the rest of it, payload included, within _GRACE_S
                        self.sock.settimeout(self._reply_left())
                    n = self.sock.recv_into(view[got:])
                except TimeoutError:
                    if got == 0 and not timeout_is_loss:
                        return None
                    raise self._lost("the server stopped answering") from None
                if n == 0:
                    raise self._lost("the server closed the connection")
                if got == 0:
                    self._reply_until = time.monotonic() + _GRACE_S
                got += n
        except OSError as err:
            if isinstance(err, usb.core.USBError):
                raise
            raise self._lost(f"receive failed: {err}") from err
        return _RET.unpack(self._header)

    def _receive_payload(self, direction: int, data: memoryview, actual: int) -> int:
        """Read a completion's IN payload into ``data``; return the byte count."""
        if actual < 0 or actual > len(data):
            raise self._lost(f"protocol error: reply claims {actual} bytes for a {len(data)}-byte transfer")
        if direction != DIR_IN or actual == 0:
            return actual
        self._recv_exact(data[:actual])
        return actual

    def _reply_left(self) -> float:
        """Seconds left for the reply being read (TimeoutError once none): a per-read timeout alone let a
        server that sends a byte every few seconds, each in time, stretch one reply over days."""
        left = self._reply_until - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    def _recv_exact(self, view: memoryview) -> None:
        got = 0
        try:
            while got < len(view):
                self.sock.settimeout(self._reply_left())
                n = self.sock.recv_into(view[got:])
                if n == 0:
                    raise self._lost("the server closed the connection mid-transfer")
                got += n
        except TimeoutError:
            raise self._lost("the server stopped mid-transfer") from None
        except OSError as err:
            if isinstance(err, usb.core.USBError):
                raise
            raise self._lost(f"receive failed: {err}") from err

    def _skip_late_completion(self, seqnum: int, actual: int) -> None:
        direction, length = self._unlinked.pop(seqnum)
        if direction != DIR_IN or actual <= 0:
            return
        if actual > length:
            raise self._lost(f"protocol error: late reply claims {actual} bytes for a {length}-byte transfer")
        LOG.warning(
            "USB/IP server %s completed a timed-out transfer after unlinking it; %d bytes dropped", self.label, actual
        )
        scratch = bytearray(min(actual, _DRAIN_CHUNK))
        left = actual
        while left:
            part = memoryview(scratch)[: min(left, len(scratch))]
            self._recv_exact(part)
            left -= len(part)


# -- what pyusb holds ----------------------------------------------------------------------------
class UsbipDevice:
    """pyusb's device identification object: descriptors plus the imported connection."""

    def __init__(
        self, backend_label: str, session: _Session, device: DeviceDescriptor, configs: list[ConfigurationDescriptor]
    ) -> None:
        self.server = backend_label
        self.session = session
        self.descriptor = device
        self.configurations = configs

    @property
    def busid(self) -> str:
        return self.session.info.busid

    def __repr__(self) -> str:
        return (
            f"<UsbipDevice {self.server}/{self.busid} {self.descriptor.idVendor:04x}:{self.descriptor.idProduct:04x}>"
        )


class _Handle:
    def __init__(self, device: UsbipDevice) -> None:
        self.device = device
        self.closed = False


class UsbipBackend(usb.backend.IBackend):
    """pyusb backend for the USB/IP server at ``address`` (``HOST:PORT``).

    Keep one backend per server and reuse it: it keeps each imported device's connection, and a
    fresh import resets the device on the server.
    """

    def __init__(self, address: str, *, connect_timeout: float = 3.0, control_timeout_ms: int = 5000) -> None:
        super().__init__()
        self.host, self.port = parse_address(address)
        self.address = format_address(self.host, self.port)
        self.connect_timeout = connect_timeout
        self.control_timeout_ms = control_timeout_ms
        #: why the last enumeration found nothing (server down, protocol error), for diagnostics
        self.last_error: str | None = None
        self._devices: dict[str, UsbipDevice] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<UsbipBackend {self.address}>"

    # -- connection and handshake --
    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as err:
            raise TransportError(
                f"cannot reach USB/IP server at {self.address}: {err.strerror or err}; is the camera server running?"
            ) from err
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return sock

    def _recv_exact(self, sock: socket.socket, size: int, what: str, until: float) -> bytes:
        """``size`` bytes of a reply, all of them by ``until`` (monotonic): a per-read timeout alone let a
        server that sends a byte a second, each in time, hold discovery for as long as its reply lasts."""
        buf = bytearray(size)
        view = memoryview(buf)
        got = 0
        try:
            while got < size:
                left = until - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                sock.settimeout(left)
                n = sock.recv_into(view[got:])
                if n == 0:
                    raise TransportError(f"USB/IP server at {self.address} closed the connection during {what}")
                got += n
        except TimeoutError as err:
            raise TransportError(f"USB/IP server at {self.address} did not answer {what} in time") from err
        except OSError as err:
            raise TransportError(f"USB/IP {what} with {self.address} failed: {err}") from err
        return bytes(buf)

    def _op_request(self, sock: socket.socket, code: int, reply_code: int, payload: bytes, what: str) -> float:
        """Send an OP request and read its reply header (within ``connect_timeout``); returns by when the
        rest of the reply must have arrived (``_GRACE_S`` on, as for a URB reply once it has started)."""
        try:
            sock.sendall(_OP_HEADER.pack(USBIP_VERSION, code, 0) + payload)
        except OSError as err:
            raise TransportError(f"USB/IP {what} with {self.address} failed: {err}") from err
        header = self._recv_exact(sock, _OP_HEADER.size, what, time.monotonic() + self.connect_timeout)
        _version, rcode, status = _OP_HEADER.unpack(header)
        if rcode != reply_code:
            raise TransportError(f"USB/IP server at {self.address} answered {what} with op code {rcode:#06x}")
        if status != 0:
            raise TransportError(f"USB/IP server at {self.address} refused {what} (status {status})")
        return time.monotonic() + _GRACE_S

    def list_exported(self) -> list[ExportedDevice]:
        """The server's device list (OP_REQ_DEVLIST). Raises TransportError when it cannot be read."""
        sock = self._connect()
        try:
            until = self._op_request(sock, OP_REQ_DEVLIST, OP_REP_DEVLIST, b"", "the device list request")
            (count,) = struct.unpack(">I", self._recv_exact(sock, 4, "the device list", until))
            if count > MAX_EXPORTED_DEVICES:
                raise TransportError(
                    f"USB/IP server at {self.address} claims {count} devices (limit {MAX_EXPORTED_DEVICES})"
                )
            devices = []
            for _ in range(count):
                info = _parse_usb_device(self._recv_exact(sock, _USB_DEVICE.size, "the device list", until))
                if info.num_interfaces > MAX_INTERFACES:
                    raise TransportError(
                        f"USB/IP server at {self.address} claims {info.num_interfaces} interfaces on "
                        f"{info.busid} (limit {MAX_INTERFACES})"
                    )
                raw = self._recv_exact(sock, 4 * info.num_interfaces, "the device list", until)
                triples = tuple((raw[i], raw[i + 1], raw[i + 2]) for i in range(0, len(raw), 4))
                devices.append(dataclasses.replace(info, interfaces=triples))
            return devices
        finally:
            sock.close()

    def _import(self, busid: str) -> UsbipDevice:
        """OP_REQ_IMPORT ``busid`` and read its descriptors over the new connection."""
        sock = self._connect()
        try:
            until = self._op_request(
                sock, OP_REQ_IMPORT, OP_REP_IMPORT, busid.encode("ascii").ljust(32, b"\0")[:32], f"import of {busid}"
            )
            info = _parse_usb_device(self._recv_exact(sock, _USB_DEVICE.size, f"import of {busid}", until))
            if info.busid != busid:
                raise TransportError(
                    f"USB/IP server at {self.address} imported {info.busid!r} when asked for {busid!r}"
                )
            session = _Session(sock, info, f"{self.address}/{busid}")
            device, configs = self._read_descriptors(session)
        except BaseException:
            sock.close()
            raise
        device.bus = info.busnum
        device.address = info.devnum
        device.speed = _SPEED_FROM_WIRE.get(info.speed)
        device.port_numbers = _port_numbers(busid)
        device.port_number = device.port_numbers[-1] if device.port_numbers else None
        LOG.debug("imported %s/%s (%04x:%04x)", self.address, busid, device.idVendor, device.idProduct)
        return UsbipDevice(self.address, session, device, configs)

    def _read_descriptors(self, session: _Session) -> tuple[DeviceDescriptor, list[ConfigurationDescriptor]]:
        try:
            raw = self._get_descriptor(session, _DT_DEVICE, 0, 18)
            device = DeviceDescriptor.parse(raw)
            configs = []
            for index in range(min(device.bNumConfigurations, MAX_CONFIGURATIONS)):
                head = self._get_descriptor(session, _DT_CONFIG, index, 9)
                if len(head) < 9:
                    raise ValueError(f"configuration {index} header is {len(head)} bytes")
                (total,) = struct.unpack_from("<H", head, 2)
                configs.append(parse_configuration(self._get_descriptor(session, _DT_CONFIG, index, max(total, 9))))
            device.bNumConfigurations = len(configs)
        except (usb.core.USBError, ValueError) as err:
            raise TransportError(f"reading the descriptors of {session.label} failed: {err}") from err
        return device, configs

    def _get_descriptor(self, session: _Session, dtype: int, index: int, length: int) -> bytes:
        buf = bytearray(length)
        setup = _SETUP.pack(0x80, 0x06, (dtype << 8) | index, 0, length)
        n = session.transfer(DIR_IN, 0, setup, memoryview(buf), int(self.connect_timeout * 1000))
        return bytes(buf[:n])

    # -- enumeration --
    def enumerate_devices(self) -> Iterator[UsbipDevice]:
        """Each exported device, imported once; nothing (not an error) when the server is down."""
        try:
            exported = self.list_exported()
        except TransportError as err:
            self.last_error = str(err)
            LOG.debug("%s", err)
            return
        self.last_error = None
        with self._lock:
            listed = {info.busid for info in exported}
            for busid in [b for b in self._devices if b not in listed]:
                self._devices.pop(busid).session.close("no longer exported")
        for info in exported:
            with self._lock:
                dev = self._devices.get(info.busid)
                if dev is not None and not (dev.session.alive() and dev.session.info.devid == info.devid):
                    dev.session.close("replaced")
                    del self._devices[info.busid]
                    dev = None
                if dev is None:
                    try:
                        dev = self._import(info.busid)
                    except TransportError as err:
                        self.last_error = str(err)
                        LOG.warning("skipping USB/IP device %s/%s: %s", self.address, info.busid, err)
                        continue
                    self._devices[info.busid] = dev
            yield dev

    def close(self) -> None:
        """Close every imported connection (the devices see an unplug)."""
        with self._lock:
            devices, self._devices = list(self._devices.values()), {}
        for dev in devices:
            dev.session.close("backend closed")

    def _finalize_object(self) -> None:
        self.close()

    # -- descriptors --
    def get_parent(self, dev: UsbipDevice) -> None:
        return None

    def get_device_descriptor(self, dev: UsbipDevice) -> DeviceDescriptor:
        return dev.descriptor

    def get_configuration_descriptor(self, dev: UsbipDevice, config: int) -> ConfigurationDescriptor:
        if not 0 <= config < len(dev.configurations):
            raise IndexError(f"Invalid configuration index {config}")
        return dev.configurations[config]

    def get_interface_descriptor(self, dev: UsbipDevice, intf: int, alt: int, config: int) -> InterfaceDescriptor:
        cfg = self.get_configuration_descriptor(dev, config)
        if not 0 <= intf < len(cfg.interfaces):
            raise IndexError(f"Invalid interface index {intf}")
        alts = cfg.interfaces[intf]
        if not 0 <= alt < len(alts):
            raise IndexError(f"Invalid alternate setting index {alt}")
        return alts[alt]

    def get_endpoint_descriptor(
        self, dev: UsbipDevice, ep: int, intf: int, alt: int, config: int
    ) -> EndpointDescriptor:
        endpoints = self.get_interface_descriptor(dev, intf, alt, config).endpoints
        if not 0 <= ep < len(endpoints):
            raise IndexError(f"Invalid endpoint index {ep}")
        return endpoints[ep]

    # -- handles --
    def open_device(self, dev: UsbipDevice) -> _Handle:
        if dev.session.lost is not None:
            raise _usb_error(
                f"No such device (USB/IP connection to {dev.session.label} lost: {dev.session.lost})",
                _LIBUSB_ERROR_NO_DEVICE,
                errno.ENODEV,
            )
        return _Handle(dev)

    def close_device(self, dev_handle: _Handle) -> None:
        # The import stays: closing a handle is not an unplug, and re-importing would reset the device.
        dev_handle.closed = True

    def _session(self, dev_handle: _Handle) -> _Session:
        if dev_handle.closed:
            raise _usb_error("Invalid parameter (device handle is closed)", _LIBUSB_ERROR_INVALID_PARAM, errno.EINVAL)
        return dev_handle.device.session

    def _control(
        self,
        dev_handle: _Handle,
        request_type: int,
        request: int,
        value: int,
        index: int,
        data: memoryview,
        timeout: int,
    ) -> int:
        if len(data) > 0xFFFF:
            raise _usb_error(
                "Invalid parameter (control data over 65535 bytes)", _LIBUSB_ERROR_INVALID_PARAM, errno.EINVAL
            )
        setup = _SETUP.pack(request_type, request, value, index, len(data))
        direction = DIR_IN if request_type & 0x80 else DIR_OUT
        return self._session(dev_handle).transfer(direction, 0, setup, data, timeout)

    def set_configuration(self, dev_handle: _Handle, config_value: int) -> None:
        self._control(dev_handle, 0x00, 0x09, config_value, 0, memoryview(b""), self.control_timeout_ms)

    def get_configuration(self, dev_handle: _Handle) -> int:
        buf = bytearray(1)
        n = self._control(dev_handle, 0x80, 0x08, 0, 0, memoryview(buf), self.control_timeout_ms)
        if n < 1:
            raise _usb_error("Input/Output Error (empty GET_CONFIGURATION reply)", _LIBUSB_ERROR_IO, errno.EIO)
        return buf[0]

    def set_interface_altsetting(self, dev_handle: _Handle, intf: int, altsetting: int) -> None:
        self._control(dev_handle, 0x01, 0x0B, altsetting, intf, memoryview(b""), self.control_timeout_ms)

    def claim_interface(self, dev_handle: _Handle, intf: int) -> None:
        self._session(dev_handle)  # nothing to claim on the server; only check the handle

    def release_interface(self, dev_handle: _Handle, intf: int) -> None:
        pass

    def is_kernel_driver_active(self, dev_handle: _Handle, intf: int) -> bool:
        return False

    def detach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        pass

    def attach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        pass

    def clear_halt(self, dev_handle: _Handle, ep: int) -> None:
        # CLEAR_FEATURE(ENDPOINT_HALT) to the endpoint
        self._control(dev_handle, 0x02, 0x01, 0, ep, memoryview(b""), self.control_timeout_ms)

    def reset_device(self, dev_handle: _Handle) -> None:
        """The closest USB/IP analogue of a port reset: drop the connection and import again."""
        dev = dev_handle.device
        dev.session.close("device reset")  # wakes a transfer blocked on it (ENODEV), then re-import
        try:
            fresh = self._import(dev.busid)
        except TransportError as err:
            raise _usb_error(
                f"No such device (re-import failed: {err})", _LIBUSB_ERROR_NO_DEVICE, errno.ENODEV
            ) from err
        dev.session = fresh.session
        with self._lock:
            self._devices[dev.busid] = dev

    # -- data --
    def ctrl_transfer(
        self,
        dev_handle: _Handle,
        bmRequestType: int,  # noqa: N803 - pyusb's parameter names
        bRequest: int,  # noqa: N803
        wValue: int,  # noqa: N803
        wIndex: int,  # noqa: N803
        data: array[int],
        timeout: int,
    ) -> int:
        return self._control(dev_handle, bmRequestType, bRequest, wValue, wIndex, memoryview(data).cast("B"), timeout)

    def bulk_write(self, dev_handle: _Handle, ep: int, intf: int, data: array[int], timeout: int) -> int:
        view = memoryview(data).cast("B")
        return self._session(dev_handle).transfer(DIR_OUT, ep & 0x0F, _NO_SETUP, view, timeout)

    def bulk_read(self, dev_handle: _Handle, ep: int, intf: int, buff: array[int], timeout: int) -> int:
        view = memoryview(buff).cast("B")
        return self._session(dev_handle).transfer(DIR_IN, ep & 0x0F, _NO_SETUP, view, timeout)

    intr_write = bulk_write
    intr_read = bulk_read
