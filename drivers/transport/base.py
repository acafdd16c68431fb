"""The transport seam: moving bytes between dock and camera, nothing more.

A backend implements only ``_read_some``/``_write_all``/``_close`` (and, where the medium can fill a
caller's buffer, ``_read_into``); this base class owns deadlines, ``read_exact``, buffering, tracing and
the closed-state check, so every backend behaves the same at its edges (python-can ``BusABC``,
python-fido2 ``CtapHidConnection``).

The camera's data path uses :meth:`Transport.read_into`: each read lands in a receive buffer the caller
owns and reuses, so no ``bytes`` is allocated per 1 MiB transfer (issue 14: a fresh transfer-sized
object is a new mapping, page-faulted in and unmapped again, ~0.2 CPU s per GiB).
"""

from __future__ import annotations

import abc
import logging
import time
from array import array

from bodycam.drivers.errors import DisconnectedError, LinkTimeoutError, TransportError

LOG = logging.getLogger(__name__)
TRAFFIC = 5  # below DEBUG: hex dumps of link traffic (never enabled in production logging)
logging.addLevelName(TRAFFIC, "TRAFFIC")


class Transport(abc.ABC):
    """A byte pipe to one camera. Not thread-safe: one conversation at a time."""

    #: short name used in messages and in the registry ("usb", "usbip", "serial")
    kind: str = "?"
    #: the most bytes one read may deliver (one USB transfer: a 1 MiB frame, its header and room to
    #: spare); the receive buffers the camera hands to :meth:`read_into` are this size
    read_size: int = 1024 * 1024 + 64 * 1024

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

    def _read_into(self, buf: array[int], timeout: float) -> int:
        """Fill ``buf`` from its start with what arrives first and return the count, or 0 when nothing
        arrived within ``timeout`` seconds.

        This default goes through :meth:`_read_some` (a copy); bytes beyond ``len(buf)`` wait in the
        pending buffer for the next read. USB and serial override it to read in place.
        """
        chunk = self._read_some(timeout)
        n = min(len(chunk), len(buf))
        memoryview(buf)[:n] = memoryview(chunk)[:n]
        if n < len(chunk):
            self._pending += memoryview(chunk)[n:]
        return n

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

    def read_into(self, buf: array[int], timeout: float) -> int:
        """Read whatever arrives first (buffered bytes, else one read or transfer) into ``buf`` from its
        start, at most ``len(buf)`` bytes; return the count. LinkTimeoutError if nothing arrived.

        ``buf`` is an ``array('B')`` (pyusb reads only into arrays) of :attr:`read_size` bytes for a
        whole transfer; the caller owns it and may reuse it for the next read.
        """
        self._check_open()
        if self._pending:
            n = min(len(self._pending), len(buf))
            with memoryview(self._pending) as pending:
                memoryview(buf)[:n] = pending[:n]
            del self._pending[:n]
            return n
        n = self._read_into(buf, timeout)
        if not 0 <= n <= len(buf):  # a backend's count is checked, never trusted to index the buffer
            raise TransportError(
                f"camera at {self.kind}:{self.address}: a read reported {n} bytes into a {len(buf)}-byte buffer"
            )
        if not n:
            raise LinkTimeoutError(
                f"camera at {self.kind}:{self.address} sent nothing within {timeout:.1f} s; "
                "check the cable or re-dock the camera"
            )
        if LOG.isEnabledFor(TRAFFIC):
            LOG.log(TRAFFIC, "%s << %s", self.address, bytes(memoryview(buf)[: min(n, 64)]).hex())
        return n

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
