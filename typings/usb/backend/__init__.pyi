# pyusb's backend seam: a backend is handed to usb.core.find(backend=...). Its methods are called by
# usb.core only with the device and handle objects the same backend returned, so a subclass declares
# them with its own types; none is called through IBackend by this project.

class IBackend:
    def __init__(self) -> None: ...
