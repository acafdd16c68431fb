"""Camera drivers: transports, the wire protocol and the ``Camera`` device API (``bodycam.drivers``)."""
