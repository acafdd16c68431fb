"""The seam between the virtual camera's firmware and whatever carries its bytes (USB/IP, a pty).

The firmware core implements :class:`ByteLink`; a server (``usbip_device``, ``pty_device``) moves bytes
between the medium and it. Keeping the firmware medium-agnostic is what lets one emulator serve every
transport the real driver supports.
"""

from __future__ import annotations

from typing import Protocol


class LinkClosed(Exception):
    """Raised by a ByteLink when a fault (``unplug-at``) means the medium must drop the connection."""


class ByteLink(Protocol):
    def receive(self, data: bytes) -> None:
        """Bytes from the dock (a bulk OUT transfer, or bytes read from the pty). May raise LinkClosed."""

    def transmit(self, max_bytes: int, timeout: float) -> bytes:
        """Up to ``max_bytes`` bytes for the dock, or ``b""`` if none are ready within ``timeout``.

        On USB each call's result is one bulk IN transfer. May raise LinkClosed.
        """
