"""Object GETs for S3Bucket.open_read without botocore's per-request machinery (issue 14 item 6).

Reading a recording through ``client.get_object`` costs about 2 ms of CPU in botocore per object, whatever
its size: parameter validation, a dozen event hooks, the SigV4 request signer, response parsing, and a
second SHA-256 over every body (``response_checksum_validation`` re-hashes the object against the
checksum it was stored with). For ``verify`` of a force (100,000 small recordings) that was most of its
time; every reader of an object here (verify, receive) hashes the bytes itself and compares them with the
signed manifest, so the second SHA-256 bought nothing.

A :class:`SignedGet` sends the same GET: the URL the client would use (learned once from
``generate_presigned_url``, which does no I/O, so addressing style and endpoint stay botocore's), signed
with botocore's own ``S3SigV4Auth`` over the client's own credentials and region, through the client's
own HTTP session (its connection pool, timeouts, TLS and proxy settings). Only a 200 with a
Content-Length is taken; anything else (an error status, a redirect, a connection failure) returns None
and the caller makes the request again through ``get_object``, which retries and turns errors into the
BodycamError tree exactly as before. A body that ends before its Content-Length is an urllib3
``IncompleteRead`` (botocore's session does not enforce the length; its StreamingBody did), which
:class:`~bodycam.agent.storage.bucket.ObjectReader` wraps like any other mid-stream failure.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import quote

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import BotoCoreError
from urllib3.exceptions import IncompleteRead

from bodycam.agent.storage.bucket import MAX_OBJECT

LOG = logging.getLogger(__name__)

_PROBE: Final = "bodycam-probe-key"
#: ask for the stored checksum headers, as ``get_object`` does under botocore's default validation mode
_HEADERS: Final = {"x-amz-checksum-mode": "ENABLED"}
_DIGITS: Final = re.compile(r"[0-9]{1,16}")


class SignedGet:
    """GET one object's bytes: ``open(full_key, version_id)`` gives ``(headers, body)`` or None."""

    def __init__(self, target: SigningTarget) -> None:
        self._target = target

    def open(self, full_key: str, version_id: str | None = None) -> tuple[dict[str, str], Body] | None:
        """Headers (lower-case names) and the body of a 200 answer; None for anything else."""
        target = self._target
        url = target.base + quote(full_key, safe="/~")
        if version_id:
            url += "?versionId=" + quote(version_id, safe="")
        request = AWSRequest("GET", url, headers=dict(_HEADERS), stream_output=True)
        try:
            S3SigV4Auth(target.credentials.get_frozen_credentials(), "s3", target.region).add_auth(request)
            response = target.session.send(request.prepare())
        except (BotoCoreError, OSError, ValueError) as err:
            LOG.debug("signed GET of %s: %s; through get_object instead", full_key, err)
            return None
        raw = response.raw
        headers = {k.lower(): v for k, v in response.headers.items()}
        if response.status_code != 200 or "content-length" not in headers:
            LOG.debug("signed GET of %s: HTTP %s; through get_object instead", full_key, response.status_code)
            raw.close()
            return None
        size = content_length(headers)
        if size is None:
            raw.close()
            raise BadContentLength(full_key)
        return headers, Body(raw, size)


class BadContentLength(ValueError):
    """A 200 whose Content-Length is not a whole number of bytes an object can have: the bucket turns it
    into its one-line error naming the object (the value itself, the endpoint's, is not repeated)."""


def content_length(headers: dict[str, str]) -> int | None:
    """The Content-Length as a size, None unless it is plain digits (no sign, no exponent, no spaces) and
    at most :data:`MAX_OBJECT` (S3's largest object): ``int()`` alone took ``+2`` and ``-5``, and raised a
    bare ValueError on ``abc``."""
    value = headers.get("content-length", "")
    if not _DIGITS.fullmatch(value) or int(value) > MAX_OBJECT:
        return None
    return int(value)


@dataclass(frozen=True)
class SigningTarget:
    """What a request signed outside botocore needs from a client, learned once per bucket and shared by
    its signed GET and its signed part PUT: the URL of the bucket's keys (as ``generate_presigned_url``
    builds it, so addressing style and endpoint are the client's), its credentials object (refreshed by
    ``get_frozen_credentials``), its region, its HTTP session and its config."""

    base: str
    credentials: Any
    region: str
    session: Any
    config: Any


def signing_target(client: Any, bucket: str) -> SigningTarget:
    """The :class:`SigningTarget` of ``client`` for ``bucket``.

    Raises ValueError when the client is unusual (no credentials or session, not SigV4, a URL shape not
    known here): the caller then keeps every request on botocore."""
    signer: Any = getattr(client, "_request_signer", None)
    credentials = getattr(signer, "_credentials", None)
    session = getattr(getattr(client, "_endpoint", None), "http_session", None)
    if credentials is None or session is None or not hasattr(session, "send"):
        raise ValueError("no credentials or HTTP session to sign and send requests with")
    version = getattr(signer, "signature_version", None)
    if version not in ("s3v4", "v4"):
        raise ValueError(f"signature version {version!r}")
    url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": _PROBE}, ExpiresIn=60)
    base = str(url).split("?", 1)[0]
    if not base.endswith("/" + _PROBE) or not base.startswith(("http://", "https://")):
        raise ValueError(f"unexpected presigned URL shape {base!r}")
    return SigningTarget(base[: -len(_PROBE)], credentials, str(client.meta.region_name), session, client.meta.config)


class Body:
    """The urllib3 body of one answer, read in pieces; a body that ends short of ``expected`` bytes is
    IncompleteRead, not the end of the object."""

    __slots__ = ("_expected", "_got", "_raw")

    def __init__(self, raw: Any, expected: int) -> None:
        self._raw = raw
        self._expected = expected
        self._got = 0

    def read(self, size: int) -> bytes:
        data: bytes = self._raw.read(size)
        self._got += len(data)
        if not data and size > 0 and self._got < self._expected:
            raise IncompleteRead(self._got, self._expected - self._got)
        return data

    def close(self) -> None:
        """Read to the end, the connection went back to the pool; otherwise it is closed, not reused."""
        self._raw.close()


def info_fields(headers: dict[str, str]) -> dict[str, Any]:
    """What ``get_object`` would have parsed from these headers, as ObjectInfo fields."""
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
    "BadContentLength",
    "Body",
    "SignedGet",
    "SigningTarget",
    "content_length",
    "info_fields",
    "signing_target",
]
