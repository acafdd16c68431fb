"""The one-pass pull into a real local bucket: parts cut in a ring of reused buffers, and its failures.

The camera here is the plaintext in memory (the pull only needs ``iter_read``); the bucket, the age
encryption and the stock ``age -d`` that reads the result back are the real ones.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bodycam.agent.formats.agecrypt import Encryptor, generate_identity
from bodycam.agent.pipeline.pull import PullResult, pull
from bodycam.agent.storage.bucket import LocalBucket, UploadNotFoundError
from bodycam.drivers.protocol.messages import Category, RecordingInfo

MiB = 1024 * 1024
KEY = "dock-01/b1/recordings/CAM1/r1.age"


class MemoryCamera:
    """Serves one recording's bytes in 1 MiB frames, as the camera answers READ."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def iter_read(self, recording: RecordingInfo, start: int = 0, span: int = 0) -> Iterator[bytes]:
        for pos in range(start, len(self.data), MiB):
            yield self.data[pos : pos + MiB]


def _recording(data: bytes) -> RecordingInfo:
    return RecordingInfo(1, len(data), 0, 1, Category.TRAINING, hashlib.sha256(data).digest(), "r1.mp4")


def _pull(bucket: LocalBucket, data: bytes, upload_id: str, recipient: str, part_size: int) -> PullResult:
    """Run the pull in a thread with a generous deadline: a hang fails the test instead of blocking it."""
    out: list[PullResult | BaseException] = []

    def run() -> None:
        try:
            camera, rec, enc = MemoryCamera(data), _recording(data), Encryptor([recipient])
            out.append(pull(camera, rec, enc, bucket, KEY, upload_id, part_size=part_size, parts_in_flight=2))
        except BaseException as err:
            out.append(err)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "the pull hung"
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


@pytest.mark.parametrize("size", [0, 5 * MiB - 100, 17 * MiB + 12345])
def test_parts_from_reused_buffers_make_the_exact_age_file(tmp_path: Path, size: int) -> None:
    """Many parts through the ring of part buffers (chunks straddling part boundaries, buffers reused
    while earlier parts upload): the object is the age file of the plaintext, stock age reads it back,
    and the digests the manifest records are those of its bytes."""
    identity, recipient = generate_identity()
    data = random.Random(size).randbytes(size)
    bucket = LocalBucket(tmp_path / "bucket")
    upload_id = bucket.start_upload(KEY)
    result = _pull(bucket, data, upload_id, recipient, 5 * MiB)
    info = bucket.complete_upload(KEY, upload_id, result.parts)
    stored = (tmp_path / "bucket" / KEY).read_bytes()
    assert info.size == len(stored) == result.ciphertext_size
    assert [p.size for p in result.parts[:-1]] == [5 * MiB] * (len(result.parts) - 1)
    assert result.ciphertext_sha256 == hashlib.sha256(stored).hexdigest()
    assert result.plaintext_sha256 == hashlib.sha256(data).hexdigest()
    age = shutil.which("age")
    if age is not None:
        keyfile = tmp_path / "party.key"
        keyfile.write_text(identity + "\n")
        plain = subprocess.run([age, "-d", "-i", str(keyfile)], input=stored, capture_output=True, check=True).stdout
        assert plain == data


def test_a_failed_last_upload_ends_the_pull_with_its_error(tmp_path: Path) -> None:
    """The upload fails after the end of the recording was queued (here: the upload was aborted under
    it): the pull raises that error. It used to wait forever for a second end marker."""
    _, recipient = generate_identity()
    bucket = LocalBucket(tmp_path / "bucket")
    upload_id = bucket.start_upload(KEY)
    bucket.abort_upload(KEY, upload_id)
    with pytest.raises(UploadNotFoundError):
        _pull(bucket, b"a short clip" * 1000, upload_id, recipient, 5 * MiB)
