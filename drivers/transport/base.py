"""The transport seam: moving bytes between dock and camera, nothing more.

A backend implements only ``_read_some``/``_write_all``/``_close``; this base class owns deadlines,
``read_exact``, buffering, tracing and the closed-state check, so every
backend behaves the same at its edges (python-can ``BusABC``, python-fido2 ``CtapHidConnection``).
"""

from __future__ import annotations

import abc
import logging
import time

from bodycam.drivers.errors import DisconnectedError, LinkTimeoutError

LOG = logging.getLogger(__name__)
TRAFFIC = 5  # below DEBUG: hex dumps of link traffic (never enabled in production logging)
logging.addLevelName(TRAFFIC, "TRAFFIC")


class Transport(abc.ABC):
    """A byte pipe to one camera. Not thread-safe: one conversation at a time."""

    #: short name used in messages and in the registry ("usb", "usbip", "serial")
    kind: str = "?"

    def __init__(self, address: str) -> None:
        self.address = address
        self._pending = bytearray()
        self._closed = False

    # -- what a backend implements -------------------------------------------------------------
    @abc.abstractmethod
    def _read_some(self, timeout: float) -> bytes:
        """Return at least one byte, or ``b""`` when nothing arrived within ``timeout`` seconds.

        Raises DisconnectedError when the link is gone.
        """

    @abc.abstractmethod
    def _write_all(self, data: bytes, timeout: float) -> None:
        """Send every byte of ``data`` (as one transfer where the medium has transfers)."""

    @abc.abstractmethod
    def _close(self) -> None:
        """Release the OS resources; called once."""

    # -- what callers use ----------------------------------------------------------------------
    def write(self, data: bytes, timeout: float = 5.0) -> None:
        self._check_open()
        if LOG.isEnabledFor(TRAFFIC):
            LOG.log(TRAFFIC, "%s >> %s", self.address, bytes(data[:64]).hex())
        self._write_all(data, timeout)

    def read_exact(self, size: int, timeout: float) -> bytes:
        """Read exactly ``size`` bytes or raise LinkTimeoutError once ``timeout`` seconds have passed."""
        self._check_open()
        if len(self._pending) >= size:
            out = bytes(self._pending[:size])
            del self._pending[:size]
            return out
        deadline = time.monotonic() + timeout
        while len(self._pending) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LinkTimeoutError(
                    f"camera at {self.kind}:{self.address} sent {len(self._pending)} of {size} expected "
                    f"bytes within {timeout:.1f} s; check the cable or re-dock the camera"
                )
            chunk = self._read_some(remaining)
            if chunk:
                if LOG.isEnabledFor(TRAFFIC):
                    LOG.log(TRAFFIC, "%s << %s", self.address, chunk[:64].hex())
                if not self._pending and len(chunk) == size:
                    return chunk
                self._pending += chunk
        out = bytes(self._pending[:size])
        del self._pending[:size]
        return out

    def read_some(self, timeout: float) -> bytes:
        """Whatever arrives first (buffered bytes, else one read or transfer); LinkTimeoutError if nothing."""
        self._check_open()
        if self._pending:
            out = bytes(self._pending)
            self._pending.clear()
            return out
        chunk = self._read_some(timeout)
        if not chunk:
            raise LinkTimeoutError(
                f"camera at {self.kind}:{self.address} sent nothing within {timeout:.1f} s; "
                "check the cable or re-dock the camera"
            )
        if LOG.isEnabledFor(TRAFFIC):
            LOG.log(TRAFFIC, "%s << %s", self.address, chunk[:64].hex())
        return chunk

    def discard_pending(self) -> int:
        """Drop buffered bytes (after a protocol error) and return how many were dropped."""
        dropped = len(self._pending)
        self._pending.clear()
        return dropped

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise DisconnectedError(f"link to camera at {self.kind}:{self.address} is closed")

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind}:{self.address}>"
