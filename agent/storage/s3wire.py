"""One HTTP/1.1 GET written and its answer read on a kept-alive socket, without http.client's per-request
machinery (issue 14: ``verify`` of a force's small recordings).

A signed GET of a 4 KiB object cost verify's reader about 0.38 ms of CPU, of which the same request sent
and read on a bare socket (same signature, same bytes on the wire) took 0.12-0.14 (bench/verify.py's 4 KiB
objects in SeaweedFS, one reader, docs/performance.md): the rest was http.client building the request a
header at a time and parsing the answer's headers with the ``email`` package. Verify reads every object
once, so for small recordings that was a third to a half of its CPU per object.

Only what an S3 GET needs is taken, and only as far as it is exactly HTTP/1.1: a status line
``HTTP/1.x NNN ...``, header lines ``name: value`` (CRLF or LF endings), at most :data:`MAX_HEAD` bytes and
:data:`MAX_HEADERS` lines before the blank line, a body of ``Content-Length`` bytes. Anything else (a
folded or nameless header line, an interim 1xx answer, two different lengths, a head that never ends) is
:class:`BadAnswer`, an ``http.client.HTTPException``, which the caller treats as no answer and asks again
through botocore, as it did when http.client refused an answer. A ``Transfer-Encoding`` answer has no
length here (``length`` None): the GET does not take it, and its connection is not reused.
"""

from __future__ import annotations

import http.client
import io
import re
import socket
import ssl
from collections.abc import Mapping
from typing import Final

#: the most bytes of status line and headers read before the blank line (S3's are under 2 KiB)
MAX_HEAD: Final = 64 * 1024
#: the most header lines (http.client's bound too)
MAX_HEADERS: Final = 100
#: what one receive asks for while the head is read (the body's first bytes usually come with it)
_RECV: Final = 64 * 1024
_STATUS: Final = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: [^\r\n]*)?\r?")
_END_OF_HEAD: Final = re.compile(rb"\n\r?\n")
_TOKEN: Final = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")
_DIGITS: Final = re.compile(r"[0-9]{1,16}")
_UNSAFE: Final = re.compile(r"[\x00-\x1f\x7f]")

Socket = socket.socket | ssl.SSLSocket


class BadAnswer(http.client.HTTPException):
    """An answer that is not one this module reads exactly as HTTP/1.1 says (see the module docstring)."""


class BadRequest(http.client.HTTPException):
    """A request this module will not write: a control character in its line or a header (http.client
    refuses the same)."""


class Closed(http.client.RemoteDisconnected):
    """The connection ended before any byte of an answer (a kept-alive connection the server had closed)."""


def request_bytes(method: str, target: str, headers: Mapping[str, str]) -> bytes:
    """The request's head as http.client would send it for a request without a body (its own
    ``Accept-Encoding: identity`` included); :class:`BadRequest` for a control character in any part of it."""
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()), "Accept-Encoding: identity"]
    if any(_UNSAFE.search(line) for line in lines):
        raise BadRequest("a control character in a request line or header")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


class Response:
    """An answer's status and headers (lower-case names; of a name given twice, the last), and its body
    read in pieces of at most the size asked: ``read``, ``isclosed`` and ``will_close`` as
    http.client.HTTPResponse has them."""

    __slots__ = ("_got", "_pending", "_reader", "_sock", "headers", "length", "status", "will_close")

    def __init__(
        self, sock: Socket, status: int, headers: dict[str, str], length: int | None, pending: bytes, close: bool
    ) -> None:
        self._sock = sock
        self.status = status
        self.headers = headers
        #: the body's length (Content-Length), None when the answer gives none this module reads
        self.length = length
        self._pending = pending
        self._reader: io.BufferedReader | None = None
        self._got = 0
        #: the connection must not carry another request (HTTP/1.0, ``Connection: close``, no length, or
        #: bytes past the body)
        self.will_close = close or length is None or len(pending) > length

    def read(self, size: int) -> bytes:
        """At most ``size`` bytes of the body (fewer only at its end or when the connection ends first:
        the caller compares what it got with ``length``); ``b""`` once it is all read. Past the bytes that
        came with the head, through a buffered reader over the socket, as http.client reads a body: one
        allocation per call, filled in place."""
        want = size if self.length is None else min(size, self.length - self._got)
        if want <= 0:
            return b""
        data = b""
        if self._pending:
            data, self._pending = self._pending[:want], self._pending[want:]
        if len(data) < want:
            rest = self._file().read(want - len(data))
            data = data + rest if data else rest
        self._got += len(data)
        return data

    def readinto(self, buffer: memoryview) -> int:
        """:meth:`read` into the caller's memory (a byte view): how many bytes came, at most its length;
        no allocation, so a reader that reuses one buffer touches no fresh pages per chunk."""
        want = len(buffer) if self.length is None else min(len(buffer), self.length - self._got)
        if want <= 0:
            return 0
        got = min(want, len(self._pending))
        if got:
            buffer[:got] = self._pending[:got]
            self._pending = self._pending[got:]
        if got < want:
            got += self._file().readinto(buffer[got:want]) or 0
        self._got += got
        return got

    def _file(self) -> io.BufferedReader:
        """The socket as a buffered reader, made at the first read past the head's bytes (a small
        object's body usually came with its head). It never reads past what the server sent for this
        answer, so the connection stays at the next answer's start."""
        if self._reader is None:
            self._reader = self._sock.makefile("rb")
        return self._reader

    def isclosed(self) -> bool:
        """Whether the body was read to its length (http.client's sense: nothing more to read)."""
        return self.length is not None and self._got >= self.length


def read_response(sock: Socket) -> Response:
    """Read an answer's status line and headers from ``sock`` (the bytes after them wait for ``read``).
    Raises :class:`Closed` when the connection ends before any byte, :class:`BadAnswer` for anything
    not read exactly, OSError from the socket (its timeout included)."""
    buf = b""
    end = None
    while end is None:
        if len(buf) > MAX_HEAD:
            raise BadAnswer(f"no end of the answer's headers within {MAX_HEAD} bytes")
        chunk = sock.recv(_RECV)
        if not chunk:
            if not buf:
                raise Closed("the connection ended before an answer")
            raise BadAnswer("the connection ended inside the answer's headers")
        buf += chunk
        end = _END_OF_HEAD.search(buf, max(0, len(buf) - len(chunk) - 3))
    if end.start() > MAX_HEAD:
        raise BadAnswer(f"no end of the answer's headers within {MAX_HEAD} bytes")
    lines = buf[: end.start()].split(b"\n")
    status = _STATUS.fullmatch(lines[0])
    if status is None:
        raise BadAnswer("the answer does not start with an HTTP/1.x status line")
    code = int(status.group(2))
    if not 200 <= code <= 599:
        raise BadAnswer(f"an interim or unknown status {code} where an answer was expected")
    if len(lines) - 1 > MAX_HEADERS:
        raise BadAnswer(f"more than {MAX_HEADERS} header lines")
    headers: dict[str, str] = {}
    lengths: set[str] = set()
    for raw in lines[1:]:
        line = raw[:-1] if raw.endswith(b"\r") else raw
        name, colon, value = line.partition(b":")
        if not colon or _TOKEN.fullmatch(name) is None:
            raise BadAnswer("a header line that is not 'name: value'")
        key = name.decode("ascii").lower()
        text = value.strip(b" \t").decode("iso-8859-1")
        headers[key] = text
        if key == "content-length":
            lengths.add(text)
    close = status.group(1) == b"0" or "close" in headers.get("connection", "").lower()
    length = None
    if "transfer-encoding" not in headers and len(lengths) == 1:
        given = next(iter(lengths))
        length = int(given) if _DIGITS.fullmatch(given) else None
    elif len(lengths) > 1:
        raise BadAnswer("two different Content-Lengths")
    return Response(sock, code, headers, length, buf[end.end() :], close)


__all__ = ["MAX_HEAD", "MAX_HEADERS", "BadAnswer", "BadRequest", "Closed", "Response", "read_response", "request_bytes"]
