# python-usbip: the subset bodycam.drivers uses (see typings/README.md)
from usbip.core import IN as IN
from usbip.core import OUT as OUT
from usbip.core import SPEED_FULL as SPEED_FULL
from usbip.core import SPEED_HIGH as SPEED_HIGH
from usbip.core import SPEED_LOW as SPEED_LOW
from usbip.core import SPEED_SUPER as SPEED_SUPER
from usbip.device import Endpoint as Endpoint
from usbip.device import In as In
from usbip.device import Out as Out
from usbip.device import USBDevice as USBDevice
from usbip.function import Interface as Interface
