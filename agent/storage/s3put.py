"""Multipart part uploads for S3Bucket.upload_part without botocore's per-request machinery (issue 14).

``client.upload_part`` costs about 2.3 ms of CPU in botocore per request whatever the part's size
(parameter validation, a dozen event hooks, the request signer, response parsing), and it takes no
memoryview, so every 8 MiB part was copied into a fresh ``bytes`` first: about 0.3 CPU s per GiB, which
was the gap between ``ingest --once`` into S3 and twice the cryptographic floor.

A :class:`SignedPut` sends the same PUT through the bucket's :class:`~bodycam.agent.storage.s3http.S3Http`:
to the URL the client would use, SigV4-signed over the same credentials, on a kept-alive connection, the
part written with one ``sendall`` of the caller's memoryview (no copy). The part's
``x-amz-checksum-crc32c`` (or ``-sha256``) header is signed, so the server checks the body against it
exactly as it did; the body itself is ``UNSIGNED-PAYLOAD``, as the client's own config
(``payload_signing_enabled=False``) had it.

:meth:`SignedPut.put_part` returns the answer's status, headers and body, or None when no answer came
(a connection failure or a timeout); the response body is read up to :data:`MAX_BODY` bytes and
otherwise dropped with its connection. The caller takes a 200 with an ETag and sends anything else again
through ``client.upload_part``, whose retries and error mapping are unchanged, except a checksum refusal
(``BadDigest``...), which botocore does not retry either: the caller raises it at once.
"""

from __future__ import annotations

import logging
from typing import Final

from bodycam.agent.storage.s3http import Request, S3Http, error_of

LOG = logging.getLogger(__name__)

#: the most of an answer's body read back (an UploadPart answer has none; an error's XML is a few hundred
#: bytes): past it the connection is closed instead of drained
MAX_BODY: Final = 64 * 1024


class SignedPut:
    """PUT one part of a multipart upload: ``put_part(...)`` gives ``(status, headers, body)`` or None."""

    def __init__(self, http: S3Http) -> None:
        self._http = http

    def put_part(
        self, full_key: str, upload_id: str, number: int, data: memoryview, algorithm: str, checksum: str
    ) -> tuple[int, dict[str, str], bytes] | None:
        """Send ``data`` (a contiguous byte view, not copied) as part ``number``; the status, headers
        (lower-case names) and body (at most :data:`MAX_BODY` bytes) of the answer, or None when none came."""
        headers = {"x-amz-sdk-checksum-algorithm": algorithm, f"x-amz-checksum-{algorithm.lower()}": checksum}
        query = [("partNumber", str(number)), ("uploadId", upload_id)]
        answer = self._http.send(Request("PUT", full_key, query, headers, data), limit=MAX_BODY)
        if answer is None or not answer.whole:
            LOG.debug("signed PUT of part %d of %s: no answer; through upload_part instead", number, full_key)
            return None
        return answer.status, answer.headers, answer.body


__all__ = ["MAX_BODY", "SignedPut", "error_of"]
