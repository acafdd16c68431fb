"""What the S3 fast paths (agent/storage/s3get.py, s3put.py) are tested against: the requests botocore is
asked to make for a bucket, and the same bucket as it was before them (every call through botocore)."""

from __future__ import annotations

from typing import Any

from bodycam.agent.storage.bucket import S3Bucket

from .s3server import SeaweedFS


def botocore_calls(bucket: S3Bucket, operation: str, param: str) -> list[Any]:
    """The ``param`` of every ``operation`` (``GetObject``, ``UploadPart``...) botocore is asked to make for
    ``bucket`` from now on (a hook on the bucket's own client)."""
    calls: list[Any] = []

    def note(params: Any, **_: Any) -> None:
        calls.append(params.get(param))

    bucket._client.meta.events.register(f"before-parameter-build.s3.{operation}", note)
    return calls


def through_botocore(server: SeaweedFS, name: str) -> S3Bucket:
    """The same bucket read and written the way it was before the fast paths: an injected client, so every
    read is a ``get_object`` and every part an ``upload_part``."""
    return S3Bucket(name, "evidence", endpoint_url=server.endpoint_url, client=server.client())
