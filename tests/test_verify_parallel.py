"""verify reads recording objects in parallel (issue 14 item 6) yet reports exactly what a sequential run
reports, in the same order, on a tampered bucket of several docks: local and in SeaweedFS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bodycam.agent.audit.verify import Verifier
from bodycam.agent.formats.sshsig import parse_allowed_signers
from bodycam.agent.storage.bucket import Bucket, LocalBucket, open_bucket

from .fleet import build_fleet
from .s3server import SeaweedFS


def _recordings(bucket: Bucket) -> list[str]:
    return sorted(o.key for o in bucket.iter_objects() if "/recordings/" in o.key)


def _tamper(bucket: Bucket) -> None:
    """Flip a byte in three objects, truncate one, delete one, add one no manifest lists."""
    keys = _recordings(bucket)
    for key in (keys[1], keys[7], keys[-2]):
        data = bytearray(bucket.get_bytes(key, 1 << 20))
        data[len(data) // 2] ^= 0x40
        bucket.put_object(key, bytes(data), create_only=False)
    bucket.put_object(keys[4], bucket.get_bytes(keys[4], 1 << 20)[:-1], create_only=False)
    bucket.delete(keys[12])
    bucket.put_object(keys[20].replace("/recordings/", "/recordings/extra-"), b"stray")


def _findings(bucket: Bucket, signers: Path, identity: str | None, workers: int) -> dict[str, Any]:
    """The whole report (findings in order, each batch's counts) of one run with ``workers`` readers."""
    verifier = Verifier(
        bucket, parse_allowed_signers(signers.read_text()), [identity] if identity else [], workers=workers
    )
    report = verifier.run().to_json()
    assert report["objects_seen"] > 0
    return report


def _problems(report: dict[str, Any]) -> list[str]:
    return [str(f["problem"]) for f in report["findings"]]


@pytest.mark.parametrize("decrypt", [False, True])
def test_parallel_verify_finds_what_sequential_finds_in_a_local_bucket(tmp_path: Path, decrypt: bool) -> None:
    bucket = LocalBucket(tmp_path / "bucket")
    fleet = build_fleet(tmp_path / "docks", bucket, docks=3, per_dock=30, size=3000)
    _tamper(bucket)
    identity = fleet.identity if decrypt else None
    sequential = _findings(bucket, fleet.allowed_signers, identity, workers=1)
    problems = _problems(sequential)
    assert {"object_altered", "object_size", "object_missing", "unlisted_object"} <= set(problems), problems
    assert problems.count("object_altered") == 3
    for workers in (2, 8):
        assert _findings(bucket, fleet.allowed_signers, identity, workers=workers) == sequential


def test_parallel_verify_finds_what_sequential_finds_in_seaweedfs(
    tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    bucket = open_bucket(f"s3://{s3_bucket}/force", seaweedfs.endpoint_url)
    fleet = build_fleet(tmp_path / "docks", bucket, docks=2, per_dock=25, size=2000)
    _tamper(bucket)
    sequential = _findings(bucket, fleet.allowed_signers, None, workers=1)
    assert _problems(sequential).count("object_altered") == 3
    assert _findings(bucket, fleet.allowed_signers, None, workers=8) == sequential


def test_a_fleet_whose_objects_are_staged_and_put_afterwards_verifies_clean(tmp_path: Path) -> None:
    """bench/verify.py --fleet writes the recording objects to files and puts them in bulk (rclone) after
    the real seal: the bucket is then exactly one whose objects were put one by one, and verifies clean."""
    bucket = LocalBucket(tmp_path / "bucket")
    stage = tmp_path / "stage"
    fleet = build_fleet(tmp_path / "docks", bucket, docks=2, per_dock=12, size=1500, stage=stage)
    staged = sorted(p for p in stage.rglob("*") if p.is_file())
    assert len(staged) == 24 and _recordings(bucket) == []
    for path in staged:
        bucket.put_object(str(path.relative_to(stage)), path.read_bytes())
    report = _findings(bucket, fleet.allowed_signers, fleet.identity, workers=8)
    assert report["findings"] == [] and report["verified"]
    assert sum(b["recordings"] for b in report["batches"]) == 24
