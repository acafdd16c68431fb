"""Serial transport: protocol frames over a byte stream (CDC-ACM on a dock, a pty in tests).

pyserial opens and configures the port (raw mode, exclusive lock); the data path then uses the
file descriptor directly with ``select`` so one read returns everything the kernel holds, which is
what keeps a pty or a 12 Mbit/s ACM link busy. The camera's data path reads with ``readinto`` semantics
(``os.readv`` into the caller's reused buffer): ``os.read(fd, 1 MiB)`` allocated a 1 MiB ``bytes`` for
every read, a fresh mapping each time, and shrank it to the few KiB a pty delivers (issue 14).
"""

from __future__ import annotations

import errno
import os
import select
import time
from array import array

from bodycam.drivers.errors import DisconnectedError, LinkTimeoutError, TransportError
from bodycam.drivers.transport.base import Transport

READ_SIZE = 1024 * 1024
_GONE = {errno.EIO, errno.ENXIO, errno.ENODEV, errno.EBADF}


class SerialTransport(Transport):
    kind = "serial"

    def __init__(self, port: str, *, baudrate: int = 115200) -> None:
        super().__init__(port)
        import serial  # pyserial; imported here so a dock without it still imports bodycam

        try:
            self._serial = serial.Serial(port, baudrate=baudrate, timeout=0, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as err:
            hint = "is the camera docked, and is this user in the 'bodycam' (or 'dialout') group?"
            raise TransportError(f"cannot open serial port {port}: {err}; {hint}") from err
        self._fd: int = self._serial.fileno()

    def _read_some(self, timeout: float) -> bytes:
        try:
            if not self._ready(timeout):
                return b""
            data = os.read(self._fd, READ_SIZE)
        except BlockingIOError:
            return b""
        except OSError as err:
            raise self._error(err) from err
        if not data:
            raise DisconnectedError(f"camera on serial port {self.address} hung up")
        return data

    def _read_into(self, buf: array[int], timeout: float) -> int:
        """What the kernel holds, up to ``len(buf)`` bytes, read into ``buf`` in place; 0 on a timeout."""
        try:
            if not self._ready(timeout):
                return 0
            n = os.readv(self._fd, [buf])
        except BlockingIOError:
            return 0
        except OSError as err:
            raise self._error(err) from err
        if not n:
            raise DisconnectedError(f"camera on serial port {self.address} hung up")
        return n

    def _ready(self, timeout: float) -> bool:
        ready, _, _ = select.select([self._fd], [], [], max(0.0, timeout))
        return bool(ready)

    def _error(self, err: OSError) -> TransportError:
        if err.errno in _GONE:
            return DisconnectedError(f"camera on serial port {self.address} went away ({err.strerror})")
        return TransportError(f"reading serial port {self.address} failed: {err}")

    def _write_all(self, data: bytes, timeout: float) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + timeout
        while view:
            try:
                sent = os.write(self._fd, view)
                view = view[sent:]
                continue
            except BlockingIOError:
                pass
            except OSError as err:
                if err.errno in _GONE:
                    raise DisconnectedError(f"camera on serial port {self.address} went away ({err.strerror})") from err
                raise TransportError(f"writing serial port {self.address} failed: {err}") from err
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LinkTimeoutError(f"camera on serial port {self.address} stopped accepting bytes")
            select.select([], [self._fd], [], remaining)

    def _close(self) -> None:
        try:
            self._serial.close()
        except OSError:
            pass
