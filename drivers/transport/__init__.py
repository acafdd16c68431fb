"""Transports by name, imported lazily (python-can ``BACKENDS``): a dock without pyusb or pyserial
still imports ``bodycam``; only opening that kind of link fails, with a message saying what to install.

Kinds: ``usb`` (libusb via pyusb), ``usbip`` (pyusb over a USB/IP server), ``serial`` (pyserial).
"""

from __future__ import annotations

import contextlib
import glob
import logging
import socket

from ..errors import TransportError
from ..models import MODELS
from .base import Transport

LOG = logging.getLogger(__name__)
__all__ = ["Transport", "discover_local", "open_serial", "open_usbip"]


def open_serial(path: str) -> Transport:
    """Open the camera on serial port ``path`` (``/dev/ttyACM0``, ``/dev/serial/by-id/...``, a pty)."""
    from .serial import SerialTransport

    return SerialTransport(path)


def open_usbip(address: str, *, connect_timeout: float = 3.0) -> list[Transport]:
    """Every supported camera exported by the USB/IP server at ``HOST:PORT``.

    Raises ConfigError for a malformed address, TransportError when the server cannot be reached.
    """
    from .usb import find_devices, open_usb
    from .usbip_backend import UsbipBackend, parse_address

    host, port = parse_address(address)
    try:
        socket.create_connection((host, port), timeout=connect_timeout).close()
    except OSError as err:
        raise TransportError(
            f"cannot reach USB/IP server at {host}:{port}: {err.strerror or err}; is the camera server running?"
        ) from err
    backend = UsbipBackend(f"{host}:{port}")
    devices = find_devices([(m.vid, m.pid) for m in MODELS], backend=backend)
    return [open_usb(dev, f"{host}:{port}") for dev in devices]


def discover_local() -> list[Transport]:
    """Cameras attached to this dock: USB devices of the model registry, then serial ports.

    A missing libusb or pyserial only means that kind is not searched (logged at debug level).
    """
    found: list[Transport] = []
    try:
        from .usb import find_devices, open_usb

        for dev in find_devices([(m.vid, m.pid) for m in MODELS]):
            address = f"{getattr(dev, 'bus', '?')}-{getattr(dev, 'address', '?')}"
            with contextlib.suppress(TransportError):
                found.append(open_usb(dev, address))
    except Exception as err:
        LOG.debug("USB discovery unavailable: %s", err)
    for path in sorted(glob.glob("/dev/serial/by-id/*")):
        if any(f"{m.vid:04x}_{m.pid:04x}" in path.lower() for m in MODELS) or "bodycam" in path.lower():
            with contextlib.suppress(TransportError):
                found.append(open_serial(path))
    try:
        from serial.tools import list_ports

        known = {(m.vid, m.pid) for m in MODELS}
        for port in list_ports.comports():
            if (port.vid, port.pid) in known and not any(t.address == port.device for t in found):
                with contextlib.suppress(TransportError):
                    found.append(open_serial(port.device))
    except ImportError as err:
        LOG.debug("serial discovery unavailable: %s", err)
    return found
