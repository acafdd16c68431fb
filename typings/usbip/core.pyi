# python-usbip usbip.core: the subset bodycam.drivers uses (see typings/README.md)
from dataclasses import dataclass

IN: int
OUT: int
SPEED_LOW: int
SPEED_FULL: int
SPEED_HIGH: int
SPEED_SUPER: int

@dataclass
class Urb:
    command: int = 0
    seqnum: int = 0
    devid: int = 0
    direction: int = 0
    ep: int = 0
    flags: int = 0
    length: int = 0
    interval: int = 0
    setup: bytes = ...
    buffer: bytes = b""
    status: int = 0
    actual: int = 0
    number_of_packets: int = 0
    iso_packets: list[list[int]] | None = None
    @property
    def ep_addr(self) -> int: ...
