# python-usbip usbip.protocol: the subset bodycam.drivers uses (see typings/README.md)
import socket

from usbip.device import USBDevice

def serve_connection(sock: socket.socket, devs: USBDevice | list[USBDevice]) -> None: ...
