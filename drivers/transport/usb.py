"""USB transport: protocol frames over a vendor-class interface's bulk endpoints, through pyusb.

The device comes from libusb on a real dock or from :class:`~.usbip_backend.UsbipBackend` for a
camera exported over USB/IP; the code path is the same. Each read is one bulk IN transfer of
``READ_TRANSFER_SIZE``, so a 1 MiB frame plus its header arrives in a single transfer. The camera's
data path reads with :meth:`UsbTransport.read_into`: pyusb's ``read(endpoint, array, timeout)`` fills the
caller's ``array('B')`` in place (libusb through its address, USB/IP with ``recv_into``) and returns the
count, so a transfer costs no new buffer; ``read_some`` keeps a scratch buffer of its own, allocated on
first use.
"""

from __future__ import annotations

import errno
import math
import re
import time
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice

import usb.backend
import usb.core
import usb.util

from bodycam.drivers.errors import DisconnectedError, LinkTimeoutError, TransportError
from bodycam.drivers.transport.base import Transport
from bodycam.drivers.transport.usbip_backend import UsbipBackend

READ_TRANSFER_SIZE = 1024 * 1024 + 64 * 1024
VENDOR_CLASS = 0xFF
#: errno values that mean the camera (or the USB/IP connection to it) is gone, or its pipe is dead
_GONE = {errno.ENODEV, errno.ENOENT, errno.EPIPE, errno.ESHUTDOWN}
_MAX_TIMEOUT_MS = 0x7FFFFFFF


def _timeout_ms(timeout: float) -> int:
    """Seconds -> pyusb milliseconds; never 0, which pyusb/libusb take as 'wait forever'."""
    if not math.isfinite(timeout):
        return _MAX_TIMEOUT_MS
    return min(max(1, math.ceil(timeout * 1000)), _MAX_TIMEOUT_MS)


def _is_usbip(device: usb.core.Device) -> bool:
    return isinstance(device.backend, UsbipBackend)


def _find_bulk_interface(config: usb.core.Configuration) -> tuple[usb.core.Interface, int, int]:
    """The first vendor-class interface with exactly one bulk IN and one bulk OUT endpoint."""
    for intf in config:
        if intf.bInterfaceClass != VENDOR_CLASS:
            continue
        ins: list[int] = []
        outs: list[int] = []
        for ep in intf:
            if usb.util.endpoint_type(ep.bmAttributes) != usb.util.ENDPOINT_TYPE_BULK:
                continue
            if usb.util.endpoint_direction(ep.bEndpointAddress) == usb.util.ENDPOINT_IN:
                ins.append(ep.bEndpointAddress)
            else:
                outs.append(ep.bEndpointAddress)
        if len(ins) == 1 and len(outs) == 1:
            return intf, ins[0], outs[0]
    raise TransportError("no vendor-class interface with one bulk IN and one bulk OUT endpoint")


class UsbTransport(Transport):
    kind = "usb"
    read_size = READ_TRANSFER_SIZE

    def __init__(self, device: usb.core.Device, address: str) -> None:
        super().__init__(address)
        self._dev = device
        if _is_usbip(device):
            self.kind = "usbip"
        self._buf: array[int] | None = None  # read_some's scratch; the data path reads into the caller's buffers
        self._claimed: int | None = None
        try:
            self._open()
        except usb.core.USBError as err:
            self._release()
            raise self._error(err, "opening") from err
        except TransportError as err:
            self._release()
            raise TransportError(f"camera at {self.kind}:{self.address}: {err}") from err

    def _open(self) -> None:
        dev = self._dev
        try:
            config = dev.get_active_configuration()
        except usb.core.USBError as err:  # unconfigured ("Configuration not set"), or the query failed
            if err.errno in _GONE - {errno.EPIPE}:
                raise
            dev.set_configuration()
            config = dev.get_active_configuration()
        intf, self._ep_in, self._ep_out = _find_bulk_interface(config)
        number = intf.bInterfaceNumber
        try:
            if dev.is_kernel_driver_active(number):
                dev.detach_kernel_driver(number)
        except (NotImplementedError, usb.core.USBError):
            pass  # not supported on this platform or backend; claiming will tell if it matters
        usb.util.claim_interface(dev, number)
        self._claimed = number
        if intf.bAlternateSetting != 0:
            dev.set_interface_altsetting(number, intf.bAlternateSetting)

    # -- the backend contract ---------------------------------------------------------------------
    def _read_some(self, timeout: float) -> bytes:
        if self._buf is None:
            self._buf = array("B", [0]) * READ_TRANSFER_SIZE
        n = self._read_into(self._buf, timeout)
        return bytes(memoryview(self._buf)[:n])

    def _read_into(self, buf: array[int], timeout: float) -> int:
        """One bulk IN transfer of ``len(buf)`` bytes straight into ``buf``; 0 on a timeout."""
        try:
            return int(self._dev.read(self._ep_in, buf, _timeout_ms(timeout)))
        except usb.core.USBTimeoutError:
            return 0
        except usb.core.USBError as err:
            raise self._error(err, "reading from") from err

    def _write_all(self, data: bytes, timeout: float) -> None:
        pending = array("B", data)  # pyusb's native buffer type: converted once, not per attempt
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LinkTimeoutError(
                    f"camera at {self.kind}:{self.address} accepted {len(data) - len(pending)} of {len(data)} "
                    f"bytes within {timeout:.1f} s; check the cable or re-dock the camera"
                )
            try:
                written = self._dev.write(self._ep_out, pending, _timeout_ms(remaining))
            except usb.core.USBTimeoutError:
                continue  # the deadline check above reports it
            except usb.core.USBError as err:
                raise self._error(err, "writing to") from err
            if written >= len(pending):
                return
            del pending[:written]

    def _close(self) -> None:
        self._release()

    # -- helpers ------------------------------------------------------------------------------------
    def _release(self) -> None:
        try:
            if self._claimed is not None:
                usb.util.release_interface(self._dev, self._claimed)
        except (usb.core.USBError, ValueError):
            pass
        finally:
            self._claimed = None
        try:
            usb.util.dispose_resources(self._dev)
        except (usb.core.USBError, ValueError):
            pass

    def _error(self, err: usb.core.USBError, doing: str) -> TransportError:
        where = f"camera at {self.kind}:{self.address}"
        if err.errno in _GONE:
            if err.errno == errno.EPIPE:
                return DisconnectedError(f"{where}: the data pipe stalled while {doing} it ({err}); re-dock the camera")
            return DisconnectedError(f"{where} went away while {doing} it ({err}); re-dock the camera")
        if err.errno in (errno.EBUSY, errno.EACCES):
            return TransportError(
                f"{where} cannot be opened ({err}); is another process using it, and is this user in the "
                f"'bodycam' group?"
            )
        return TransportError(f"{doing} {where} failed: {err}")


def find_devices(
    vid_pids: Iterable[tuple[int, int]], backend: usb.backend.IBackend | None = None
) -> list[usb.core.Device]:
    """Every device with one of ``vid_pids`` (one enumeration pass; libusb when ``backend`` is None)."""
    wanted = {(int(vid), int(pid)) for vid, pid in vid_pids}

    def match(dev: usb.core.Device) -> bool:
        return (dev.idVendor, dev.idProduct) in wanted

    try:
        return list(usb.core.find(find_all=True, backend=backend, custom_match=match))
    except usb.core.NoBackendError as err:
        raise TransportError("no USB backend available; install libusb-1.0 (apt install libusb-1.0-0)") from err
    except usb.core.USBError as err:
        raise TransportError(f"USB enumeration failed: {err}") from err


def open_usb(device: usb.core.Device, address: str) -> UsbTransport:
    """Open ``device`` (a ``usb.core.Device``) as the camera at ``address`` (used in messages)."""
    return UsbTransport(device, address)


#: USB devices one scan looks at, at most (a dock whose hubs hold many devices: libusb lists them all,
#: we read no more than this many of its entries)
MAX_USB_DEVICES = 256
#: registry cameras one scan returns, at most (twice the daemon's eight bays)
MAX_USB_CAMERAS = 16
#: each control transfer reading a camera's serial number (pyusb's default is a second)
SERIAL_TIMEOUT_MS = 500
#: what one scan may spend reading serial numbers in all; cameras past it wait for the next scan
SERIAL_BUDGET_S = 3.0
#: the camera protocol's serial alphabet (protocol/messages.SERIAL_PATTERN, a layer above this one); a USB
#: serial descriptor is camera-controlled, and it names a bay, a log line and ``/dev/bodycam/<serial>``
_SERIAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")


@dataclass(frozen=True, slots=True)
class UsbCamera:
    """A registry camera on a USB bus, found without claiming it."""

    device: usb.core.Device
    location: str  #: ``bus-address`` as libusb (or the USB/IP server) numbers it
    serial: str | None  #: its USB serial descriptor; None when it could not be read (why: in ``problems``)


def _location(dev: usb.core.Device) -> str:
    return f"{getattr(dev, 'bus', '?')}-{getattr(dev, 'address', '?')}"


def read_serial(dev: usb.core.Device) -> str:
    """The serial number descriptor of ``dev`` (two control transfers on endpoint 0, each within
    ``SERIAL_TIMEOUT_MS``; an interface another session claimed is not touched). TransportError with the
    reason (no permission, gone, no or unsafe serial)."""
    where = f"USB device {_location(dev)} ({dev.idVendor:04x}:{dev.idProduct:04x})"
    dev.default_timeout = SERIAL_TIMEOUT_MS
    try:
        serial = usb.util.get_string(dev, dev.iSerialNumber)
    except usb.core.USBError as err:
        hint = "; is this user in the 'bodycam' group?" if err.errno in (errno.EACCES, errno.EPERM) else ""
        raise TransportError(f"{where}: reading its serial number failed: {err}{hint}") from err
    except (ValueError, UnicodeDecodeError) as err:  # no langid (permission, a device mid-reset), a bad string
        raise TransportError(f"{where}: reading its serial number failed: {err}") from err
    finally:
        try:
            usb.util.dispose_resources(dev)  # no handle left open between scans
        except (usb.core.USBError, ValueError):
            pass
    if serial is None or not _SERIAL.fullmatch(serial):
        raise TransportError(f"{where} gives no serial number in the protocol's alphabet ({serial!r}); skipped")
    return serial


def find_cameras(
    vid_pids: Iterable[tuple[int, int]],
    backend: usb.backend.IBackend | None = None,
    *,
    problems: list[tuple[str, str]] | None = None,
    known: dict[tuple[str, int, int], str] | None = None,
    budget_s: float = SERIAL_BUDGET_S,
) -> list[UsbCamera]:
    """The registry cameras on the USB buses ``backend`` sees (libusb when None; a ``UsbipBackend`` serves a
    virtual camera through the same ``usb.core.find``), each with its serial number, bounded in count
    (``MAX_USB_DEVICES`` looked at, ``MAX_USB_CAMERAS`` returned) and in time (``SERIAL_BUDGET_S`` of serial
    reads; ``known`` caches serials by location so a camera already read costs no transfer, and one in
    session is never asked again). A serial that cannot be read goes to ``problems`` as (address, reason);
    TransportError when the bus cannot be enumerated at all (no libusb, enumeration failed)."""
    wanted = {(int(vid), int(pid)) for vid, pid in vid_pids}
    failed = problems if problems is not None else []
    deadline = time.monotonic() + budget_s
    found: list[UsbCamera] = []
    seen: set[tuple[str, int, int]] = set()
    try:
        for dev in islice(usb.core.find(find_all=True, backend=backend), MAX_USB_DEVICES):
            if (dev.idVendor, dev.idProduct) not in wanted:
                continue
            location = _location(dev)
            key = (location, dev.idVendor, dev.idProduct)
            seen.add(key)
            serial = known.get(key) if known is not None else None
            if serial is None:
                if time.monotonic() > deadline:
                    failed.append((f"usb:{location}", f"USB device {location}: serial not read in this scan's time"))
                    continue
                try:
                    serial = read_serial(dev)
                except TransportError as err:
                    failed.append((f"usb:{location}", str(err)))
                if serial is not None and known is not None:
                    known[key] = serial
            found.append(UsbCamera(dev, location, serial))
            if len(found) >= MAX_USB_CAMERAS:
                break
    except usb.core.NoBackendError as err:
        raise TransportError("no USB backend available; install libusb-1.0 (apt install libusb-1.0-0)") from err
    except usb.core.USBError as err:  # mid-enumeration (a device gone as it was listed): keep what was found
        failed.append(("usb", f"USB enumeration stopped: {err}"))
        return found
    if known is not None:  # a location freed and reused by another camera must not keep the old serial
        for stale in set(known) - seen:
            del known[stale]
    return found
