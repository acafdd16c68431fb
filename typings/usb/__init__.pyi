# pyusb: the subset bodycam.drivers uses (see typings/README.md)
