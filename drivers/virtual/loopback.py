"""An in-process transport straight into a ByteLink (python-can's ``virtual`` bus).

Unit tests pair the real ``Camera`` with a ``VirtualCamera`` through it, with no USB/IP or pty in
between; the integration tests run the same code over the real media.
"""

from __future__ import annotations

from bodycam.drivers.errors import DisconnectedError
from bodycam.drivers.transport.base import Transport
from bodycam.drivers.virtual.link import ByteLink, LinkClosed


class LoopbackTransport(Transport):
    kind = "loopback"

    def __init__(self, link: ByteLink, address: str = "memory") -> None:
        super().__init__(address)
        self.link = link

    def _read_some(self, timeout: float) -> bytes:
        try:
            return self.link.transmit(1024 * 1024 + 65536, timeout)
        except LinkClosed as err:
            raise DisconnectedError(f"camera at loopback:{self.address} was unplugged") from err

    def _write_all(self, data: bytes, timeout: float) -> None:
        try:
            self.link.receive(data)
        except LinkClosed as err:
            raise DisconnectedError(f"camera at loopback:{self.address} was unplugged") from err

    def _close(self) -> None:
        pass
