"""Multipart part uploads for S3Bucket.upload_part without botocore's per-request machinery (issue 14).

``client.upload_part`` costs about 2.3 ms of CPU in botocore per request whatever the part's size
(parameter validation, a dozen event hooks, the request signer, response parsing), and it takes no
memoryview, so every 8 MiB part was copied into a fresh ``bytes`` first: about 0.3 CPU s per GiB, which
was the gap between ``ingest --once`` into S3 and twice the cryptographic floor.

A :class:`SignedPut` sends the same PUT: to the URL the client would use (its :class:`s3get.SigningTarget`,
so addressing style, endpoint and region stay the client's), signed with botocore's own ``S3SigV4Auth``
over the client's own credentials (refreshed when they expire), through the client's own HTTP session
(its urllib3 connection pool, timeouts, TLS and proxy settings), from the caller's memoryview without a
copy. The part's ``x-amz-checksum-crc32c`` (or ``-sha256``) header is signed, so the server checks the
body against it exactly as it did; the body itself is ``UNSIGNED-PAYLOAD``, as the client's own config
(``payload_signing_enabled=False``) had it.

:meth:`SignedPut.put_part` returns the answer's status and headers, or None when no answer came (a
connection failure or a timeout); the response body is read up to :data:`MAX_BODY` bytes and otherwise
dropped with its connection. The caller takes a 200 with an ETag and sends anything else again through
``client.upload_part``, whose retries and error mapping are unchanged, except a checksum refusal
(``BadDigest``...), which botocore does not retry either: the caller raises it at once.
"""

from __future__ import annotations

import html
import logging
import re
from typing import Final
from urllib.parse import quote

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import BotoCoreError
from urllib3.exceptions import HTTPError

from bodycam.agent.storage.s3get import SigningTarget

LOG = logging.getLogger(__name__)

#: the most of an answer's body read back (an UploadPart answer has none; an error's XML is a few hundred
#: bytes): past it the connection is closed instead of drained
MAX_BODY: Final = 64 * 1024


class SignedPut:
    """PUT one part of a multipart upload: ``put_part(...)`` gives ``(status, headers)`` or None."""

    def __init__(self, target: SigningTarget) -> None:
        """Raises ValueError when the client signs payloads (it would hash every part again)."""
        self._target = target
        if (getattr(target.config, "s3", None) or {}).get("payload_signing_enabled") is not False:
            raise ValueError("the client signs payloads: its parts would be hashed once more to be signed")

    def put_part(
        self, full_key: str, upload_id: str, number: int, data: memoryview, algorithm: str, checksum: str
    ) -> tuple[int, dict[str, str], bytes] | None:
        """Send ``data`` (a contiguous byte view, not copied) as part ``number``; the status, headers
        (lower-case names) and body (at most :data:`MAX_BODY` bytes) of the answer, or None when none came."""
        target = self._target
        url = f"{target.base}{quote(full_key, safe='/~')}?partNumber={number}&uploadId={quote(upload_id, safe='')}"
        headers = {
            "Content-Length": str(data.nbytes),
            "x-amz-sdk-checksum-algorithm": algorithm,
            f"x-amz-checksum-{algorithm.lower()}": checksum,
        }
        request = AWSRequest("PUT", url, headers=headers, data=data, stream_output=True)
        request.context["client_config"] = target.config  # payload_signing_enabled=False: not hashed again
        try:
            S3SigV4Auth(target.credentials.get_frozen_credentials(), "s3", target.region).add_auth(request)
            response = target.session.send(request.prepare())
        except (BotoCoreError, OSError, ValueError, HTTPError) as err:
            LOG.debug("signed PUT of part %d of %s: %s; through upload_part instead", number, full_key, err)
            return None
        raw = response.raw
        try:
            body = raw.read(MAX_BODY + 1)
        except (OSError, HTTPError) as err:
            LOG.debug("signed PUT of part %d of %s: %s reading the answer", number, full_key, err)
            raw.close()
            return None
        if len(body) > MAX_BODY:
            raw.close()  # not drained: the connection is dropped, not reused
        else:
            raw.release_conn()
        return response.status_code, {k.lower(): v for k, v in response.headers.items()}, body[:MAX_BODY]


def error_of(body: bytes) -> tuple[str, str]:
    """The ``Code`` and ``Message`` of an S3 error document (bounded: the body is at most MAX_BODY)."""
    text = body.decode("utf-8", "replace")
    code = _CODE.search(text)
    message = _MESSAGE.search(text)
    return (code.group(1) if code else ""), (html.unescape(message.group(1)) if message else "")


_CODE: Final = re.compile(r"<Code>([A-Za-z0-9.]{1,64})</Code>")
_MESSAGE: Final = re.compile(r"<Message>([^<]{0,512})</Message>")

__all__ = ["MAX_BODY", "SignedPut", "error_of"]
