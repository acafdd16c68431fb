# pyusb usb.core: the subset bodycam.drivers uses (see typings/README.md)
from array import array
from collections.abc import Callable, Iterator
from typing import Literal, overload

from usb.backend import IBackend

class USBError(OSError):
    backend_error_code: int | None
    def __init__(self, strerror: str, error_code: int | None = None, errno: int | None = None) -> None: ...

class USBTimeoutError(USBError): ...
class NoBackendError(ValueError): ...

class Endpoint:
    bEndpointAddress: int
    bmAttributes: int
    wMaxPacketSize: int

class Interface:
    bInterfaceNumber: int
    bAlternateSetting: int
    bInterfaceClass: int
    bInterfaceSubClass: int
    bInterfaceProtocol: int
    def __iter__(self) -> Iterator[Endpoint]: ...

class Configuration:
    bConfigurationValue: int
    def __iter__(self) -> Iterator[Interface]: ...

class Device:
    backend: IBackend
    idVendor: int
    idProduct: int
    bus: int | None
    address: int | None
    iSerialNumber: int
    default_timeout: int
    def get_active_configuration(self) -> Configuration: ...
    def set_configuration(self, configuration: int | Configuration | None = None) -> None: ...
    def set_interface_altsetting(
        self, interface: int | Interface | None = None, alternate_setting: int | None = None
    ) -> None: ...
    def is_kernel_driver_active(self, interface: int) -> bool: ...
    def detach_kernel_driver(self, interface: int) -> None: ...
    @overload
    def read(self, endpoint: int | Endpoint, size_or_buffer: array[int], timeout: int | None = None) -> int: ...
    @overload
    def read(self, endpoint: int | Endpoint, size_or_buffer: int, timeout: int | None = None) -> array[int]: ...
    def write(self, endpoint: int | Endpoint, data: bytes | array[int], timeout: int | None = None) -> int: ...

@overload
def find(
    find_all: Literal[False] = False,
    backend: IBackend | None = None,
    custom_match: Callable[[Device], bool] | None = None,
    **args: int,
) -> Device | None: ...
@overload
def find(
    find_all: Literal[True],
    backend: IBackend | None = None,
    custom_match: Callable[[Device], bool] | None = None,
    **args: int,
) -> Iterator[Device]: ...
