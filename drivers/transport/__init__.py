"""Transports by name, imported lazily (python-can ``BACKENDS``): a dock without pyusb or pyserial
still imports ``bodycam``; only opening that kind of link fails, with a message saying what to install.

Kinds: ``usb`` (libusb via pyusb), ``usbip`` (pyusb over a USB/IP server), ``serial`` (pyserial).
"""

from __future__ import annotations

import glob
import logging
import socket

from bodycam.drivers.errors import TransportError
from bodycam.drivers.models import MODELS
from bodycam.drivers.transport.base import Transport

LOG = logging.getLogger(__name__)
BY_ID = "/dev/serial/by-id"  # udev's stable names of serial ports
__all__ = ["Transport", "discover_local", "open_serial", "open_usbip"]


def open_serial(path: str) -> Transport:
    """Open the camera on serial port ``path`` (``/dev/ttyACM0``, ``/dev/serial/by-id/...``, a pty)."""
    from bodycam.drivers.transport.serial import SerialTransport

    return SerialTransport(path)


def open_usbip(address: str, *, connect_timeout: float = 3.0) -> list[Transport]:
    """Every supported camera exported by the USB/IP server at ``HOST:PORT``.

    Raises ConfigError for a malformed address, TransportError when the server cannot be reached.
    """
    from bodycam.drivers.transport.usb import find_devices, open_usb
    from bodycam.drivers.transport.usbip_backend import UsbipBackend, parse_address

    host, port = parse_address(address)
    try:
        socket.create_connection((host, port), timeout=connect_timeout).close()
    except OSError as err:
        raise TransportError(
            f"cannot reach USB/IP server at {host}:{port}: {err.strerror or err}; is the camera server running?"
        ) from err
    backend = UsbipBackend(f"{host}:{port}")
    devices = find_devices([(m.vid, m.pid) for m in MODELS], backend=backend)
    if not devices and backend.last_error is not None:
        # something answers on that port, but not as a USB/IP server exporting a camera (an HTTP
        # server, a wrong port): say so rather than report "no cameras"
        raise TransportError(f"{host}:{port} is not a USB/IP server with a camera: {backend.last_error}")
    return [open_usb(dev, f"{host}:{port}") for dev in devices]


def discover_local(problems: list[tuple[str, str]] | None = None, *, by_id: str = BY_ID) -> list[Transport]:
    """Cameras attached to this dock: USB devices of the model registry, then serial ports.

    A missing libusb or pyserial only means that kind is not searched (logged at debug level). A
    camera that is found but cannot be opened is appended to ``problems`` as (address, error), the
    error carrying its hint (group membership, a busy port), so the operator sees why it is missing.
    """
    found: list[Transport] = []
    failed: list[tuple[str, str]] = problems if problems is not None else []
    try:
        from bodycam.drivers.transport.usb import find_devices, open_usb

        for dev in find_devices([(m.vid, m.pid) for m in MODELS]):
            address = f"{getattr(dev, 'bus', '?')}-{getattr(dev, 'address', '?')}"
            try:
                found.append(open_usb(dev, address))
            except TransportError as err:
                failed.append((f"usb:{address}", str(err)))
    except Exception as err:
        LOG.debug("USB discovery unavailable: %s", err)
    for path in sorted(glob.glob(f"{glob.escape(by_id)}/*")):
        if any(f"{m.vid:04x}_{m.pid:04x}" in path.lower() for m in MODELS) or "bodycam" in path.lower():
            try:
                found.append(open_serial(path))
            except TransportError as err:
                failed.append((f"serial:{path}", str(err)))
    try:
        from serial.tools import list_ports

        known = {(m.vid, m.pid) for m in MODELS}
        for port in list_ports.comports():
            if (port.vid, port.pid) in known and not any(t.address == port.device for t in found):
                try:
                    found.append(open_serial(port.device))
                except TransportError as err:
                    failed.append((f"serial:{port.device}", str(err)))
    except ImportError as err:
        LOG.debug("serial discovery unavailable: %s", err)
    return found
