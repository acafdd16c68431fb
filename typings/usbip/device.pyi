# python-usbip usbip.device: the subset bodycam.drivers uses (see typings/README.md)
from collections.abc import Callable
from typing import TypeVar

from usbip.core import Urb

_T = TypeVar("_T")

class _EPSpec:
    addr: int
    type: str
    mps: int
    interval: int

def In(addr: int, type: str = "bulk", mps: int = 64, interval: int = 0) -> _EPSpec: ...
def Out(addr: int, type: str = "bulk", mps: int = 64, interval: int = 0) -> _EPSpec: ...

class Endpoint:
    number: int
    dir: int
    type: str
    mps: int
    halted: bool

class USBDevice:
    busid: str | None
    config: int
    busnum: int
    devnum: int
    speed: int
    def __init__(
        self,
        vid: int,
        pid: int,
        *,
        product: str | None = None,
        manufacturer: str | None = None,
        serial: str | None = None,
        bcdDevice: int = 0x0100,
        bcdUSB: int = 0x0200,
        device_class: int = 0,
        device_subclass: int = 0,
        device_protocol: int = 0,
    ) -> None: ...
    def set_speed(self, speed: int) -> None: ...
    # add() returns the interface (or a Function's primary handle); for a bare Interface, itself
    def add(self, obj: _T) -> _T: ...
    def handle_urb(self, urb: Urb, respond: Callable[[Urb], None] | None = None) -> Urb | None: ...
    def cancel_urb(self, seqnum: int) -> None: ...
    def reset_io(self) -> None: ...
