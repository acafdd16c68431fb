"""Transports by name, imported lazily (python-can ``BACKENDS``): a dock without pyusb or pyserial
still imports ``bodycam``; only opening that kind of link fails, with a message saying what to install.

Kinds: ``usb`` (libusb via pyusb), ``usbip`` (pyusb over a USB/IP server), ``serial`` (pyserial).
"""

from __future__ import annotations

import glob
import logging
import os
import re
import socket
from typing import TYPE_CHECKING

from bodycam.drivers.errors import TransportError
from bodycam.drivers.models import MODELS
from bodycam.drivers.transport.base import Transport

if TYPE_CHECKING:
    import usb.backend

LOG = logging.getLogger(__name__)
BY_ID = "/dev/serial/by-id"  # udev's stable names of serial ports
__all__ = ["Transport", "discover_local", "open_serial", "open_usb_camera", "open_usbip"]


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


def open_usb_camera(serial: str, *, usb_backend: usb.backend.IBackend | None = None) -> Transport:
    """Open the registry camera with USB serial number ``serial`` on this dock's USB ports (the daemon's bay
    for a camera its scan found there). TransportError when it is not there (undocked since the scan)."""
    from bodycam.drivers.transport.usb import find_cameras, open_usb

    problems: list[tuple[str, str]] = []
    for cam in find_cameras([(m.vid, m.pid) for m in MODELS], usb_backend, problems=problems):
        if cam.serial == serial:
            return open_usb(cam.device, serial)
    why = f" ({problems[0][1]})" if problems else ""
    raise TransportError(f"no camera with serial number {serial} on this dock's USB ports{why}; re-dock the camera")


def discover_local(
    problems: list[tuple[str, str]] | None = None,
    *,
    by_id: str = BY_ID,
    usb_backend: usb.backend.IBackend | None = None,
) -> list[Transport]:
    """Cameras attached to this dock: USB devices of the model registry, then serial ports.

    A missing libusb or pyserial only means that kind is not searched (logged at debug level). A
    camera that is found but cannot be opened is appended to ``problems`` as (address, error), the
    error carrying its hint (group membership, a busy port), so the operator sees why it is missing.
    One camera, one link: a serial port of a camera already found over USB (the same USB serial number:
    a Sentinel's CDC-ACM interface) is not opened (docs/decisions.md). ``usb_backend`` is pyusb's (libusb
    when None; a test passes a ``UsbipBackend`` to find a virtual camera the way libusb finds a real one).
    """
    found: list[Transport] = []
    failed: list[tuple[str, str]] = problems if problems is not None else []
    on_usb: set[str] = set()
    try:
        from bodycam.drivers.transport.usb import find_cameras, open_usb

        for cam in find_cameras([(m.vid, m.pid) for m in MODELS], usb_backend, problems=failed):
            try:
                found.append(open_usb(cam.device, cam.location))
            except TransportError as err:
                failed.append((f"usb:{cam.location}", str(err)))
                continue
            if cam.serial is not None:
                on_usb.add(cam.serial)
    except Exception as err:
        LOG.debug("USB discovery unavailable: %s", err)
    for path in sorted(glob.glob(f"{glob.escape(by_id)}/*")):
        if any(f"{m.vid:04x}_{m.pid:04x}" in path.lower() for m in MODELS) or "bodycam" in path.lower():
            if _by_id_serial(path, on_usb) is not None:
                LOG.debug("%s is the serial interface of a camera opened over USB; not opened", path)
                continue
            try:
                found.append(open_serial(path))
            except TransportError as err:
                failed.append((f"serial:{path}", str(err)))
    try:
        from serial.tools import list_ports

        known = {(m.vid, m.pid) for m in MODELS}
        opened = {os.path.realpath(t.address) for t in found if t.kind == "serial"}
        for port in list_ports.comports():
            if (port.vid, port.pid) not in known or os.path.realpath(port.device) in opened:
                continue
            if port.serial_number in on_usb:
                LOG.debug("%s is the serial interface of a camera opened over USB; not opened", port.device)
                continue
            try:
                found.append(open_serial(port.device))
            except TransportError as err:
                failed.append((f"serial:{port.device}", str(err)))
    except ImportError as err:
        LOG.debug("serial discovery unavailable: %s", err)
    return found


def _by_id_serial(path: str, serials: set[str]) -> str | None:
    """Which of ``serials`` the ``/dev/serial/by-id`` name ``path`` carries: udev names a CDC-ACM port
    ``usb-<vendor>_<product>_<serial>-if<NN>`` from the same USB serial descriptor."""
    name = os.path.basename(path)
    for serial in serials:
        if re.fullmatch(rf".*_{re.escape(serial)}-if[0-9]{{2}}(-port[0-9]+)?", name):
            return serial
    return None
