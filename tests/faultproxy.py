"""A small threaded TCP fault proxy for loopback tests (no toxiproxy or netem here).

Put it between a client and a server (SeaweedFS S3) and choose what the network does::

    with FaultProxy(("127.0.0.1", s3_port)) as proxy:
        proxy.set(cut_after=64 * 1024)       # reset each connection after 64 KiB went upstream
        proxy.set(delay_ms=200)              # 200 ms before every forwarded chunk, both ways
        proxy.set(drop_responses=1)          # next response: server committed it, client gets a reset
        proxy.set(refuse=True)               # new connections are reset at once
        proxy.set(flip_at=2 << 20, flips=1)  # flip one byte 2 MiB into a connection's upstream (once)
        proxy.set(trickle_ms=500)            # answers reach the client a byte at a time, 500 ms apart
        proxy.set(trickle_ms=500, trickle_after=4096)  # ... once 4 KiB of a connection's answers went through
        proxy.set()                          # pass everything

``set()`` also resets the connections that are open, so the new mode applies to the very next request
(clients reconnect, as they would after a network blip). Counters in ``stats`` tell a test what happened.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

_CHUNK = 64 * 1024


@dataclass
class Mode:
    delay_ms: int = 0
    cut_after: int | None = None
    drop_responses: int = 0
    refuse: bool = False
    flip_at: int | None = None
    flips: int = 0
    trickle_ms: int = 0
    trickle_after: int = 0


@dataclass
class Stats:
    connections: int = 0
    refused: int = 0
    cuts: int = 0
    dropped_responses: int = 0
    flipped: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    errors: list[str] = field(default_factory=list)


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a crashed peer looks to the other side.

    ``shutdown`` first: a bare close() neither wakes a thread blocked in recv() on the socket nor tells
    the peer anything until that recv returns.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to ``upstream`` with the faults of ``set()``."""

    def __init__(self, upstream: tuple[str, int], listen_host: str = "127.0.0.1") -> None:
        if listen_host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("the fault proxy listens on loopback only")
        self.upstream = upstream
        self.mode = Mode()
        self.stats = Stats()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closing = threading.Event()
        self._listener = socket.create_server((listen_host, 0))
        self._listener.settimeout(0.2)
        self.host, self.port = self._listener.getsockname()[:2]
        self._thread = threading.Thread(target=self._accept_loop, name="faultproxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def set(
        self,
        *,
        delay_ms: int = 0,
        cut_after: int | None = None,
        drop_responses: int = 0,
        refuse: bool = False,
        flip_at: int | None = None,
        flips: int = 0,
        trickle_ms: int = 0,
        trickle_after: int = 0,
    ) -> None:
        """Switch mode (everything not named passes) and reset the connections now open."""
        with self._lock:
            self.mode = Mode(delay_ms, cut_after, drop_responses, refuse, flip_at, flips, trickle_ms, trickle_after)
            victims = list(self._open)
            self._open.clear()
        for sock in victims:
            _reset(sock)

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(2)
        with self._lock:
            victims = list(self._open)
            self._open.clear()
        for sock in victims:
            _reset(sock)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                mode = self.mode
                if mode.refuse:
                    self.stats.refused += 1
            if mode.refuse:
                _reset(client)
                continue
            threading.Thread(target=self._serve, args=(client, mode), daemon=True).start()

    def _serve(self, client: socket.socket, mode: Mode) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError as err:
            self.stats.errors.append(f"upstream connect: {err}")
            _reset(client)
            return
        for sock in (client, upstream):
            sock.settimeout(None)
        with self._lock:
            self.stats.connections += 1
            self._open.update((client, upstream))
        pair = (client, upstream)
        threading.Thread(target=self._pump_up, args=(pair, mode), daemon=True).start()
        self._pump_down(pair, mode)

    def _forget(self, pair: tuple[socket.socket, socket.socket]) -> None:
        with self._lock:
            for sock in pair:
                self._open.discard(sock)
        for sock in pair:
            _reset(sock)

    def _pump_up(self, pair: tuple[socket.socket, socket.socket], mode: Mode) -> None:
        client, upstream = pair
        sent = 0
        try:
            while data := client.recv(_CHUNK):
                if mode.delay_ms:
                    time.sleep(mode.delay_ms / 1000)
                if mode.cut_after is not None and sent + len(data) >= mode.cut_after:
                    upstream.sendall(data[: mode.cut_after - sent])
                    with self._lock:
                        self.stats.bytes_up += mode.cut_after - sent
                        self.stats.cuts += 1
                    break
                data = self._maybe_flip(data, sent)
                upstream.sendall(data)
                sent += len(data)
                with self._lock:
                    self.stats.bytes_up += len(data)
        except OSError:
            pass
        self._forget(pair)

    def _maybe_flip(self, data: bytes, sent: int) -> bytes:
        """``data`` with the byte at the connection's offset ``flip_at`` inverted, while flips are left
        (counted across connections, like drop_responses: the corruption a TCP checksum can miss)."""
        with self._lock:
            at = self.mode.flip_at
            if at is None or self.mode.flips <= 0 or not sent <= at < sent + len(data):
                return data
            self.mode.flips -= 1
            self.stats.flipped += 1
        out = bytearray(data)
        out[at - sent] ^= 0xFF
        return bytes(out)

    def _pump_down(self, pair: tuple[socket.socket, socket.socket], mode: Mode) -> None:
        client, upstream = pair
        down = 0
        try:
            while data := upstream.recv(_CHUNK):
                with self._lock:
                    drop = self.mode.drop_responses > 0
                    if drop:
                        self.mode.drop_responses -= 1
                        self.stats.dropped_responses += 1
                if drop:  # the server answered, so it committed the request: the client never hears it
                    break
                if mode.delay_ms:
                    time.sleep(mode.delay_ms / 1000)
                prompt = max(0, min(len(data), mode.trickle_after - down)) if mode.trickle_ms else len(data)
                client.sendall(data[:prompt])
                for i in range(prompt, len(data)):  # a peer that answers a byte at a time, each in time
                    time.sleep(mode.trickle_ms / 1000)
                    client.sendall(data[i : i + 1])
                down += len(data)
                with self._lock:
                    self.stats.bytes_down += len(data)
        except OSError:
            pass
        self._forget(pair)
