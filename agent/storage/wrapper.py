"""A bucket that is another bucket, changed in one or two methods (restic's ``limiter`` backend).

The daemon's shared upload pool (agent/storage/throttle.py) and verify's progress counter
(agent/audit/verify.py) each wrap the bucket they are given. They used to forward through
``__getattr__ -> Any``, so mypy could not see that the wrapper is a bucket, and a method the
wrapper forgot (``close``) or got wrong went unnoticed. :class:`BucketWrapper` implements every
method of :class:`~bodycam.agent.storage.bucket.Bucket` by delegating it, so a wrapper overrides only
what it changes and is a ``Bucket`` where one is expected.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from bodycam.agent.storage.bucket import (
    MAX_VERSIONS,
    Bucket,
    ObjectInfo,
    ObjectReader,
    Part,
    PartBuffer,
    PartData,
    PendingUpload,
)


class BucketWrapper(Bucket):
    """Every method delegates to ``inner``; subclasses override the ones they change."""

    def __init__(self, inner: Bucket) -> None:
        self.inner = inner
        self.url = inner.url
        self.min_part_size = inner.min_part_size

    def start_upload(self, key: str, *, retain_until: float | None = None) -> str:
        return self.inner.start_upload(key, retain_until=retain_until)

    def upload_part(
        self, key: str, upload_id: str, part_number: int, data: PartData, *, checksum: str | None = None
    ) -> Part:
        return self.inner.upload_part(key, upload_id, part_number, data, checksum=checksum)

    def list_parts(self, key: str, upload_id: str) -> list[Part]:
        return self.inner.list_parts(key, upload_id)

    def complete_upload(self, key: str, upload_id: str, parts: Sequence[Part]) -> ObjectInfo:
        return self.inner.complete_upload(key, upload_id, parts)

    def abort_upload(self, key: str, upload_id: str) -> None:
        self.inner.abort_upload(key, upload_id)

    def open_uploads(self, prefix: str = "", *, page_size: int = 1000) -> list[PendingUpload]:
        return self.inner.open_uploads(prefix, page_size=page_size)

    def put_object(
        self, key: str, data: bytes, *, create_only: bool = True, sha256_b64: str | None = None, retain: bool = True
    ) -> ObjectInfo:
        return self.inner.put_object(key, data, create_only=create_only, sha256_b64=sha256_b64, retain=retain)

    def head(self, key: str, *, version_id: str | None = None) -> ObjectInfo | None:
        return self.inner.head(key, version_id=version_id)

    def iter_objects(self, prefix: str = "", *, page_size: int = 1000) -> Iterator[ObjectInfo]:
        return self.inner.iter_objects(prefix, page_size=page_size)

    def open_read(self, key: str, *, version_id: str | None = None) -> ObjectReader:
        return self.inner.open_read(key, version_id=version_id)

    def delete(self, key: str, *, version_id: str | None = None) -> None:
        self.inner.delete(key, version_id=version_id)

    def erase_every_version(self, key: str, *, max_versions: int = MAX_VERSIONS) -> None:
        self.inner.erase_every_version(key, max_versions=max_versions)  # S3 lists the versions: its own

    def get_bytes(self, key: str, max_size: int) -> bytes:
        return self.inner.get_bytes(key, max_size)

    def part_buffer(self, size: int) -> PartBuffer:
        return self.inner.part_buffer(size)

    def close(self) -> None:
        self.inner.close()
