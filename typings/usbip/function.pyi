# python-usbip usbip.function: the subset bodycam.drivers uses (see typings/README.md)
from usbip.device import Endpoint, USBDevice

class Interface:
    bInterfaceClass: int
    bInterfaceSubClass: int
    bInterfaceProtocol: int
    string_index: int
    interface_number: int
    dev: USBDevice | None
    def __init__(self) -> None: ...
    def on_out(self, ep: Endpoint, data: bytes) -> None: ...
