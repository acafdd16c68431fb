"""Serve a :class:`ByteLink` as a USB/IP device: the virtual camera on the wire a real dock sees.

The device is built with the ``usbip`` package: a vendor-class (0xFF) interface with bulk IN 0x81 and
bulk OUT 0x01 (512-byte packets, high speed). The package's per-connection protocol loop
(``usbip.protocol.serve_connection``) runs every connection; this module owns the listening socket
(so port 0 works and accepted connections can be dropped to simulate an unplug) and the bulk data path:

* bulk OUT: each transfer's payload goes to ``link.receive(data)``;
* bulk IN is a pull: a URB asks ``link.transmit(urb_length, ...)`` for one transfer's worth. If the link
  has data at once, the URB completes in the connection's thread. Otherwise the URB is *parked* (the
  NAK-until-data of a real controller) and a per-connection pump thread keeps asking the link, in
  ``PARK_POLL_S`` slices, and completes it when data arrives. The connection thread stays free, so the
  host's CMD_UNLINK (its timeout) is answered at once and EP0 keeps working. Completion and unlink are
  serialised on the connection, so a URB is either completed (RET_SUBMIT before RET_UNLINK) or
  cancelled - never both. Data the link produced for a URB that was cancelled meanwhile is kept and
  starts the next IN transfer, so no byte of the stream is lost to a host timeout.

A zero-length completion is never used as "no data": on USB that is a valid empty transfer.

The same link serves every connection of one server (the camera keeps its state across re-plugs).
Each new import is a bus reset: the previous session, if any, is dropped (one host at a time, as
with a real cable), buffered IN data is discarded and ``link.reset()`` is called if the link has it.
If the link raises :class:`LinkClosed`, that connection is closed - an unplug, as the host sees it.

Link threading contract: ``receive`` and ``transmit`` may run at the same time on different threads
(``transmit`` waiting for the answer ``receive`` produces), but each is called by one thread at a time.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections import deque
from collections.abc import Callable

import usbip
from usbip import protocol as usbip_protocol
from usbip.core import Urb as _Urb

from bodycam.drivers.errors import TransportError
from bodycam.drivers.virtual.link import ByteLink, LinkClosed

LOG = logging.getLogger(__name__)

EP_IN = 0x81
EP_OUT = 0x01
BULK_MPS = 512
PARK_POLL_S = 0.05  # how long one transmit() call of the pump may wait; bounds how late a cancel is seen
MAX_IN_TRANSFER = 16 * 1024 * 1024  # largest IN transfer asked of the link, whatever the host requests
_STALL = -32  # -EPIPE: the URB status of a STALLed transfer
_USBIP_IN = 1


Respond = Callable[[_Urb], None]


def _finish(urb: _Urb, data: bytes, status: int = 0) -> _Urb:
    urb.buffer, urb.actual, urb.status = data, len(data), status
    return urb


class _CameraInterface(usbip.Interface):
    bInterfaceClass = 0xFF  # noqa: N815 - the package's descriptor field names
    bInterfaceSubClass = 0x00  # noqa: N815
    bInterfaceProtocol = 0x00  # noqa: N815
    ep_in = usbip.In(EP_IN & 0x0F, "bulk", mps=BULK_MPS)
    ep_out = usbip.Out(EP_OUT, "bulk", mps=BULK_MPS)

    def __init__(self, server: UsbipCameraServer) -> None:
        super().__init__()
        self._server = server
        # Interface.__init__ shadowed the class-level spec with the endpoint it built from it
        ep = vars(self)["ep_in"]
        assert isinstance(ep, usbip.Endpoint)
        self.in_endpoint: usbip.Endpoint = ep

    def on_out(self, ep: usbip.Endpoint, data: bytes) -> None:
        self._server._on_out(data)


class _CameraDevice(usbip.USBDevice):
    def __init__(
        self, server: UsbipCameraServer, vid: int, pid: int, *, manufacturer: str, product: str, serial: str
    ) -> None:
        super().__init__(vid, pid, manufacturer=manufacturer, product=product, serial=serial)
        self._server = server

    def handle_urb(self, urb: _Urb, respond: Respond | None = None) -> _Urb | None:
        if urb.ep == EP_IN & 0x0F and urb.direction == _USBIP_IN:
            return self._server._submit_in(urb, respond)
        done = super().handle_urb(urb, respond)
        session = self._server._current()
        if session is not None and session.unplug_reason is not None:
            # the firmware took the OUT data and then closed the link: acknowledge it, then pull the cable
            if done is not None and respond is not None:
                respond(done)
            session.unplug(session.unplug_reason)
            return None
        return done

    def cancel_urb(self, seqnum: int) -> None:
        session = self._server._current()
        if session is not None:
            session.cancel(seqnum)
        super().cancel_urb(seqnum)

    def reset_io(self) -> None:
        # serve_connection calls this right after a successful import, and SET_CONFIGURATION calls it too
        super().reset_io()
        session = self._server._current()
        if session is not None and not session.imported:
            session.imported = True
            self._server._on_import(session)


class _Session:
    """One accepted connection: its parked IN URBs and the pump thread that completes them."""

    def __init__(self, server: UsbipCameraServer, conn: socket.socket, peer: str) -> None:
        self.server = server
        self.conn = conn
        self.peer = peer
        self.imported = False
        self.closed = False
        self.unplug_reason: str | None = None  # set when the link closed while taking OUT data
        self.thread: threading.Thread | None = None
        self._cv = threading.Condition()
        self._parked: deque[_Urb] = deque()
        self._respond: Respond | None = None
        self._pump_busy = False  # the pump holds data it took from the link and has not placed yet
        self._pump: threading.Thread | None = None

    def submit_in(self, urb: _Urb, respond: Respond) -> _Urb | None:
        length = min(max(urb.length, 0), MAX_IN_TRANSFER)
        with self._cv:
            if self.closed:
                return None
            if not self._parked and not self._pump_busy:  # nothing queued ahead: try to answer now
                try:
                    data = self.server._take(length, 0.0)
                except LinkClosed as err:
                    self.unplug(f"the camera closed the link ({err})")
                    return None
                if data or length == 0:
                    return _finish(urb, data)
            self._parked.append(urb)  # NAK until the link has data
            self._respond = respond
            if self._pump is None:
                self._pump = threading.Thread(target=self._pump_loop, name=f"usbip-in-{self.peer}", daemon=True)
                self._pump.start()
            self._cv.notify_all()
            return None

    def cancel(self, seqnum: int) -> bool:
        """The host unlinked ``seqnum``: forget it if still parked (it is then never completed)."""
        with self._cv:
            for urb in self._parked:
                if urb.seqnum == seqnum:
                    self._parked.remove(urb)
                    return True
        return False

    def _pump_loop(self) -> None:
        server = self.server
        while True:
            with self._cv:
                while not self.closed and not self._parked:
                    self._cv.wait()
                if self.closed:
                    return
                respond = self._respond
                assert respond is not None
                if server._in_halted():
                    stalled, self._parked = list(self._parked), deque()
                    for urb in stalled:
                        respond(_finish(urb, b"", _STALL))
                    continue
                urb = self._parked[0]
                self._pump_busy = True
            try:
                data, generation = server._take_tagged(min(max(urb.length, 0), MAX_IN_TRANSFER), PARK_POLL_S)
            except LinkClosed as err:
                self.unplug(f"the camera closed the link ({err})")
                return
            except Exception:
                LOG.exception("virtual camera link failed while serving %s", self.peer)
                self.unplug("link error")
                return
            with self._cv:
                self._pump_busy = False
                if data and not self.closed and self._parked and self._parked[0] is urb:
                    self._parked.popleft()
                    respond(_finish(urb, data))  # under the lock: a racing UNLINK then finds nothing parked
                elif data:
                    server._unget(data, generation)  # cancelled meanwhile: keep it for the next transfer

    def close(self) -> None:
        with self._cv:
            self.closed = True
            self._parked.clear()
            self._cv.notify_all()

    def unplug(self, reason: str) -> None:
        """Close this connection as a pulled cable would: the host's pending and next transfers fail."""
        LOG.info("virtual camera connection from %s dropped: %s", self.peer, reason)
        self.close()
        with contextlib.suppress(OSError):
            self.conn.shutdown(socket.SHUT_RDWR)  # wakes the connection thread; it closes the socket


class UsbipCameraServer:
    """A USB/IP server exporting one virtual camera whose firmware is ``link``.

    ``start()`` listens and returns ``(host, port)`` (port 0 picks a free port); ``serve_forever()``
    blocks until ``stop()`` (from a signal handler or another thread); ``drop_connections()`` simulates
    an unplug of the attached dock. The device stays exported, so the dock can import it again.
    """

    def __init__(
        self,
        link: ByteLink,
        *,
        vid: int,
        pid: int,
        manufacturer: str,
        product: str,
        serial: str,
        host: str = "127.0.0.1",
        port: int = 0,
        busid: str = "1-1",
    ) -> None:
        self.link = link
        self.host = host
        self.port = port
        self.busid = busid
        #: how many times a host imported the device (each one a bus reset of the camera)
        self.imports = 0
        self._device = _CameraDevice(self, vid, pid, manufacturer=manufacturer, product=product, serial=serial)
        self._device.set_speed(usbip.SPEED_HIGH)  # before add(), so endpoints are sized for high speed
        self._interface = self._device.add(_CameraInterface(self))
        # the wire identity a usbip listener would assign: bus 1, address 2
        self._device.busid, self._device.busnum, self._device.devnum = busid, 1, 2
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._sessions: set[_Session] = set()
        self._lock = threading.Lock()
        self._rx_lock = threading.Lock()  # one link.receive at a time
        self._tx_lock = threading.Lock()  # one link.transmit at a time; guards _carry
        self._carry: deque[bytes] = deque()  # produced by the link, not yet delivered
        self._generation = 0  # bumped by every import, so data from before it is never delivered after
        self._tls = threading.local()
        self._stopped = threading.Event()

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def connections(self) -> int:
        """Accepted connections currently open."""
        with self._lock:
            return len(self._sessions)

    def start(self) -> tuple[str, int]:
        """Listen (binding now, so the port is known) and accept in a background thread."""
        if self._listener is not None:
            return self.host, self.port
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
            listener.listen(8)
        except OSError as err:
            listener.close()
            raise TransportError(f"cannot serve the virtual camera on {self.address}: {err.strerror or err}") from err
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stopped.clear()
        self._accept_thread = threading.Thread(target=self._accept_loop, name=f"usbip-accept-{self.port}", daemon=True)
        self._accept_thread.start()
        LOG.info("virtual camera exported as %s on USB/IP %s", self.busid, self.address)
        return self.host, self.port

    def serve_forever(self) -> None:
        """Serve until ``stop()`` is called (from another thread) or the caller is interrupted."""
        self.start()
        try:
            while not self._stopped.wait(0.5):
                pass
        finally:
            self.stop()

    def stop(self) -> None:
        self._stopped.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
            listener.close()
        self.drop_connections()
        threads = [self._accept_thread] if self._accept_thread is not None else []
        with self._lock:
            threads += [s.thread for s in self._sessions if s.thread is not None]
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout=2.0)
        self._accept_thread = None

    def drop_connections(self) -> int:
        """Close every accepted connection (a simulated unplug); return how many there were."""
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.unplug("dropped by the server")
        return len(sessions)

    def __enter__(self) -> UsbipCameraServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- connections --------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        listener = self._listener
        while listener is not None and not self._stopped.is_set():
            try:
                conn, peer = listener.accept()
            except OSError:
                break
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            session = _Session(self, conn, f"{peer[0]}:{peer[1]}")
            with self._lock:
                if self._stopped.is_set():
                    conn.close()
                    break
                self._sessions.add(session)
            session.thread = threading.Thread(
                target=self._serve, args=(session,), name=f"usbip-conn-{session.peer}", daemon=True
            )
            session.thread.start()

    def _serve(self, session: _Session) -> None:
        self._tls.session = session
        try:
            usbip_protocol.serve_connection(session.conn, [self._device])
        except Exception:
            LOG.exception("USB/IP connection from %s failed", session.peer)
        finally:
            self._tls.session = None
            session.close()
            with contextlib.suppress(OSError):
                session.conn.close()
            with self._lock:
                self._sessions.discard(session)

    def _current(self) -> _Session | None:
        session: _Session | None = getattr(self._tls, "session", None)
        return session

    def _on_import(self, session: _Session) -> None:
        """A host imported the device: a bus reset. One host at a time, so earlier sessions are dropped."""
        with self._lock:
            others = [s for s in self._sessions if s is not session and s.imported]
            self.imports += 1
        for other in others:
            other.unplug("another host imported the camera")
        with self._rx_lock, self._tx_lock:
            self._generation += 1
            self._carry.clear()
            self._device.config = 0  # unconfigured until the host sends SET_CONFIGURATION
            reset = getattr(self.link, "reset", None)
            if callable(reset):
                reset()
        LOG.info("virtual camera %s imported by %s", self.busid, session.peer)

    # -- the data path ------------------------------------------------------------------------------
    def _on_out(self, data: bytes) -> None:
        try:
            with self._rx_lock:
                self.link.receive(bytes(data))
        except LinkClosed as err:
            session = self._current()
            if session is not None:
                session.unplug_reason = f"the camera closed the link ({err})"  # handle_urb unplugs after the ACK

    def _submit_in(self, urb: _Urb, respond: Respond | None) -> _Urb | None:
        if self._in_halted():
            return _finish(urb, b"", _STALL)
        session = self._current()
        if session is not None and respond is not None:
            return session.submit_in(urb, respond)
        # no asynchronous completion available (not called by serve_connection): a short blocking pull
        return _finish(urb, self._take(min(max(urb.length, 0), MAX_IN_TRANSFER), 0.5))

    def _in_halted(self) -> bool:
        return self._interface.in_endpoint.halted

    def _take(self, max_bytes: int, timeout: float) -> bytes:
        """One IN transfer's worth: left-over data first, else ``link.transmit``. May raise LinkClosed."""
        return self._take_tagged(max_bytes, timeout)[0]

    def _take_tagged(self, max_bytes: int, timeout: float) -> tuple[bytes, int]:
        """:meth:`_take` plus the import generation the data belongs to (for :meth:`_unget`)."""
        with self._tx_lock:
            generation = self._generation
            if max_bytes <= 0:
                return b"", generation
            if self._carry:
                data = self._carry.popleft()
            else:
                data = self.link.transmit(max_bytes, timeout)
            if len(data) > max_bytes:  # never more than the host asked for; keep the tail
                self._carry.appendleft(data[max_bytes:])
                data = data[:max_bytes]
            return data, generation

    def _unget(self, data: bytes, generation: int) -> None:
        with self._tx_lock:
            if generation == self._generation:  # not across an import (bus reset)
                self._carry.appendleft(data)
