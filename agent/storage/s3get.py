"""Object GETs for S3Bucket.open_read without botocore's per-request machinery (issue 14 item 6).

Reading a recording through ``client.get_object`` costs about 2 ms of CPU in botocore per object, whatever
its size: parameter validation, a dozen event hooks, the SigV4 request signer, response parsing, and a
second SHA-256 over every body (``response_checksum_validation`` re-hashes the object against the
checksum it was stored with). For ``verify`` of a force (100,000 small recordings) that was most of its
time; every reader of an object here (verify, receive) hashes the bytes itself and compares them with the
signed manifest, so the second SHA-256 bought nothing.

A :class:`SignedGet` sends the same GET through the bucket's :class:`~bodycam.agent.storage.s3http.S3Http`
(the URL botocore would use, signed with SigV4 over the same credentials, on a kept-alive connection),
written and its answer's head read by agent/storage/s3wire.py rather than http.client (a third of the
remaining CPU of a small object's read).
Only a 200 with a Content-Length is taken. An error status gives its :class:`Refusal` (status and error
document), which the bucket turns into the BodycamError ``get_object``'s would have become (a missing
object is ObjectNotFoundError without loading botocore) or, when transient, asks again through
``get_object``; anything else (a redirect, a connection failure) returns None and the caller makes the
request again through ``get_object``, which retries as before. A body that ends before its Content-Length is
:class:`ShortBody`, which :class:`~bodycam.agent.storage.bucket.ObjectReader` wraps like any other
mid-stream failure.
"""

from __future__ import annotations

import http.client
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

from bodycam.agent.storage.bucket import MAX_OBJECT
from bodycam.agent.storage.s3http import Request, S3Http
from bodycam.agent.storage.s3wire import Response

LOG = logging.getLogger(__name__)

#: ask for the stored checksum headers, as ``get_object`` does under botocore's default validation mode
_HEADERS: Final = {"x-amz-checksum-mode": "ENABLED"}
_DIGITS: Final = re.compile(r"[0-9]{1,16}")
#: what reading a signed GET's body may raise (ObjectReader turns it into a one-line UploadError)
READ_ERRORS: Final = (OSError, http.client.HTTPException)
#: the most of an error answer's document read (S3's are a few hundred bytes)
MAX_ERROR: Final = 64 * 1024


class SignedGet:
    """GET one object's bytes: ``open(full_key, version_id)`` gives ``(headers, body)`` or None."""

    def __init__(self, http: S3Http) -> None:
        self._http = http

    def open(self, full_key: str, version_id: str | None = None) -> tuple[dict[str, str], Body] | Refusal | None:
        """Headers (lower-case names) and the body of a 200 answer; the status and error document (at most
        :data:`MAX_ERROR` bytes) of a 4xx or 5xx, for the bucket to turn into its error or ask again; None
        for anything else (no answer, a redirect, a 200 without a length). Raises
        :class:`~bodycam.agent.storage.s3http.AnswerTimeout` for a head not through by its deadline."""
        query = [("versionId", version_id)] if version_id else []
        opened = self._http.open_get(Request("GET", full_key, query, _HEADERS))
        if opened is None:
            LOG.debug("signed GET of %s: no answer; through get_object instead", full_key)
            return None
        response, conn = opened
        headers = response.headers
        if response.status >= 400:
            return Refusal(response.status, _error_body(self._http, response, conn))
        if response.status != 200 or "content-length" not in headers or "transfer-encoding" in headers:
            LOG.debug("signed GET of %s: HTTP %s; through get_object instead", full_key, response.status)
            conn.close()
            return None
        size = content_length(headers)
        if size is None:
            conn.close()
            raise BadContentLength(full_key)
        return headers, Body(self._http, response, conn, size)


@dataclass(frozen=True)
class Refusal:
    """A GET answered with an error status: the status and the start of its error document."""

    status: int
    body: bytes


def _error_body(http: S3Http, response: Response, conn: http.client.HTTPConnection) -> bytes:
    """An error answer's document, at most :data:`MAX_ERROR` bytes, read by its deadline; the connection
    back to the pool when it was read whole, else closed."""
    alarm = http.alarm(conn, MAX_ERROR)
    try:
        data = response.read(MAX_ERROR + 1)
    except READ_ERRORS:
        conn.close()
        alarm.disarm()
        return b""
    if alarm.disarm() or len(data) > MAX_ERROR or not response.isclosed() or response.will_close:
        conn.close()
    else:
        http.release(conn)
    return data[:MAX_ERROR]


class BadContentLength(ValueError):
    """A 200 whose Content-Length is not a whole number of bytes an object can have: the bucket turns it
    into its one-line error naming the object (the value itself, the endpoint's, is not repeated)."""


class ShortBody(http.client.HTTPException):
    """The connection ended before the body's Content-Length."""


def content_length(headers: dict[str, str]) -> int | None:
    """The Content-Length as a size, None unless it is plain digits (no sign, no exponent, no spaces) and
    at most :data:`MAX_OBJECT` (S3's largest object): ``int()`` alone took ``+2`` and ``-5``, and raised a
    bare ValueError on ``abc``."""
    value = headers.get("content-length", "")
    if not _DIGITS.fullmatch(value) or int(value) > MAX_OBJECT:
        return None
    return int(value)


class Body:
    """The body of one answer, read in pieces; a body that ends short of ``expected`` bytes is
    :class:`ShortBody`, not the end of the object. It is due whole by a deadline (the read timeout plus
    ``expected`` at :data:`~bodycam.agent.storage.s3http.MIN_RATE`): past it, a read raises
    :class:`~bodycam.agent.storage.s3http.AnswerTimeout`, however the endpoint spaces its bytes out."""

    __slots__ = ("_alarm", "_conn", "_expected", "_got", "_http", "_response")

    def __init__(self, http: S3Http, response: Response, conn: http.client.HTTPConnection, expected: int) -> None:
        self._http = http
        self._response = response
        self._conn = conn
        self._expected = expected
        self._got = 0
        self._alarm = http.alarm(conn, expected)

    def read(self, size: int) -> bytes:
        try:
            data = self._response.read(size)
        except READ_ERRORS:
            self._check_deadline()
            raise
        self._counted(len(data), size)
        return data

    def readinto(self, buffer: memoryview) -> int:
        """:meth:`read` into the caller's memory; :class:`ShortBody` and the deadline likewise."""
        try:
            n = self._response.readinto(buffer)
        except READ_ERRORS:
            self._check_deadline()
            raise
        self._counted(n, len(buffer))
        return n

    def _counted(self, n: int, asked: int) -> None:
        self._got += n
        if n == 0 and asked > 0 and self._got < self._expected:
            self._check_deadline()  # the shut-down socket reads as the end of the answer
            raise ShortBody(f"the answer ended after {self._got} of {self._expected} bytes")

    def _check_deadline(self) -> None:
        if self._alarm.fired:
            raise self._alarm.timeout("the object's body") from None

    def close(self) -> None:
        """Read to the end, the connection goes back to the pool; otherwise it is closed, not reused."""
        late = self._alarm.disarm()
        if not late and self._got == self._expected and self._response.isclosed() and not self._response.will_close:
            self._http.release(self._conn)
        else:
            self._conn.close()


def info_fields(headers: dict[str, str]) -> dict[str, Any]:
    """What ``get_object`` (or ``head_object``) would have parsed from these headers, as ObjectInfo fields."""
    return {
        "size": content_length(headers) or 0,
        "etag": headers.get("etag", ""),
        "version_id": headers.get("x-amz-version-id") or None,
        "checksum": headers.get("x-amz-checksum-crc32c") or headers.get("x-amz-checksum-sha256") or None,
        "last_modified": _http_date(headers.get("last-modified")),
        "lock_mode": headers.get("x-amz-object-lock-mode"),
        "retain_until": _iso_date(headers.get("x-amz-object-lock-retain-until-date")),
    }


def _http_date(value: str | None) -> datetime | None:
    try:
        return parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError):
        return None


def _iso_date(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


__all__ = [
    "MAX_ERROR",
    "READ_ERRORS",
    "BadContentLength",
    "Body",
    "Refusal",
    "ShortBody",
    "SignedGet",
    "content_length",
    "info_fields",
]
