"""The dock's and the auditor's side of a witness's HTTP interface (C2SP tlog-witness, plus our
``GET /checkpoint/<origin>``), over stdlib ``http.client``.

Every call has a timeout and reads at most :data:`witnessapi.MAX_RESPONSE` bytes: a witness is another
organisation's server, and a slow or hostile one must cost the dock a bounded wait, never a hang. The
timeout bounds the whole exchange, not each read: a socket timeout alone lets a witness that sends one
byte every few seconds (of its status line, its headers or its body) hold the dock for hours.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

from bodycam.agent.formats import witnessapi
from bodycam.drivers.errors import BodycamError

DEFAULT_TIMEOUT = 10.0


class WitnessUnavailable(BodycamError):
    """The witness could not be reached or answered with a server error: try again later."""


class WitnessRefused(BodycamError):
    """The witness answered and refused (400, 403, 404, 422, ...): a retry of the same request will not help."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class WitnessConflict(BodycamError):
    """409: the witness's latest cosigned size is not the old size sent (``size``)."""

    def __init__(self, size: int, message: str) -> None:
        super().__init__(message)
        self.size = size


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    content_type: str
    body: bytes


def _request(url: str, method: str, path: str, body: bytes | None, timeout: float) -> _Reply:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WitnessRefused(0, f"witness URL {url} is not http(s)://host[:port]/[prefix]")
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname, parts.port, timeout=timeout)
    expired = threading.Event()
    # the connected socket, kept here: http.client drops conn.sock once a response is to be read until the
    # connection closes, while the response still reads from it
    opened: list[socket.socket] = []

    def expire() -> None:
        # shutting the socket down ends the read in progress (the caller's thread sees EOF or an error)
        expired.set()
        for sock in opened:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    deadline = threading.Timer(timeout, expire)
    deadline.daemon = True
    deadline.start()
    try:
        conn.connect()  # bounded by the socket timeout; a deadline that passed meanwhile is checked next
        if conn.sock is not None:
            opened.append(conn.sock)
        if expired.is_set():
            raise OSError("connecting took the whole timeout")
        headers = {"Content-Type": "text/plain"} if body is not None else {}
        conn.request(method, parts.path.rstrip("/") + path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read(witnessapi.MAX_RESPONSE + 1)
        if expired.is_set():  # a body read until the connection closed ends quietly at the shutdown
            raise OSError("answer cut short")
        if len(data) > witnessapi.MAX_RESPONSE:
            raise WitnessUnavailable(f"witness {url} answered more than {witnessapi.MAX_RESPONSE} bytes")
        return _Reply(response.status, response.getheader("Content-Type", ""), data)
    except (OSError, http.client.HTTPException) as err:
        if expired.is_set():
            raise WitnessUnavailable(f"witness {url} did not answer within {timeout:g} s") from None
        reason = " ".join(str(err).split())[:200]  # one line: a bad status line carries its CRLF
        raise WitnessUnavailable(f"witness {url} is unreachable: {reason or type(err).__name__}") from None
    finally:
        deadline.cancel()
        conn.close()


def _message(reply: _Reply) -> str:
    return reply.body[:200].decode("utf-8", "replace").strip()


def add_checkpoint(
    url: str, old: int, proof: Sequence[bytes], checkpoint: bytes, *, timeout: float = DEFAULT_TIMEOUT
) -> list[str]:
    """Submit ``checkpoint`` with a consistency proof from ``old``; the signature lines the witness returns
    (unverified: the caller checks them against the witness's key). Raises WitnessUnavailable,
    WitnessConflict, WitnessRefused."""
    reply = _request(url, "POST", "/add-checkpoint", witnessapi.encode_request(old, proof, checkpoint), timeout)
    if reply.status == 200:
        text = reply.body.decode("utf-8", "replace")
        return [line for line in text.split("\n") if line]
    if reply.status == 409:
        try:
            size = witnessapi.parse_size(reply.body)
        except witnessapi.BadRequest:
            raise WitnessRefused(409, f"witness {url}: a 409 answer without its size") from None
        raise WitnessConflict(size, f"witness {url} has cosigned size {size}, not {old}")
    if reply.status >= 500:
        raise WitnessUnavailable(f"witness {url} answered {reply.status}: {_message(reply)}")
    raise WitnessRefused(reply.status, f"witness {url} refused the checkpoint ({reply.status}): {_message(reply)}")


def latest(url: str, origin: str, *, timeout: float = DEFAULT_TIMEOUT) -> bytes | None:
    """The latest checkpoint the witness cosigned for ``origin`` (None when it has none). Raises
    WitnessUnavailable, WitnessRefused."""
    reply = _request(url, "GET", "/checkpoint/" + urllib.parse.quote(origin, safe="/"), None, timeout)
    if reply.status == 200:
        return reply.body
    if reply.status == 404:
        return None
    if reply.status >= 500:
        raise WitnessUnavailable(f"witness {url} answered {reply.status}: {_message(reply)}")
    raise WitnessRefused(reply.status, f"witness {url} refused to say its checkpoint ({reply.status})")
