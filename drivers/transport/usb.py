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
import time
from array import array
from collections.abc import Iterable

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
