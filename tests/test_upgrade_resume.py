"""An agent upgraded across a half-done upload (docs/decisions.md, issue 14 item 2): an older agent began
its multipart uploads with ``ChecksumAlgorithm=SHA256``; S3 and SeaweedFS refuse the CRC-32C parts
today's agent sends into such an upload, so resuming it would hold the recording on the camera for good.
Today's agent restarts it (abort, a new upload in the same batch, custody ``pull_started`` with
``restart``), never mixing the older agent's SHA-256 parts with its own, and erases only once verified.

Real parts: SeaweedFS, a camera over USB/IP, ``bodycam-sync ingest`` and ``verify`` as users run them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from bodycam.agent.formats.agecrypt import Encryptor
from bodycam.agent.storage.bucket import b64_sha256
from bodycam.drivers import transport as transports
from bodycam.drivers.errors import BodycamError
from bodycam.drivers.virtual.scenario import ContentSource, make_recordings

from .dock import Dock, iso_window, make_dock, window
from .s3server import SeaweedFS
from .sims import SimProcess

MiB = 1024 * 1024
PART = 5 * MiB  # make_dock's upload.part_size
SERIAL = "CAM-V1"
SIZE = 12 * MiB + 99  # three parts


def _wait_for_camera(address: str, within: float = 60.0) -> None:
    """The virtual camera re-appears a moment after its unplug: poll its USB/IP server for it."""
    deadline = time.monotonic() + within
    while True:
        try:
            found = transports.open_usbip(address)
        except BodycamError:
            found = []
        for t in found:
            t.close()
        if found:
            return
        assert time.monotonic() < deadline, f"the camera at {address} did not come back"
        time.sleep(0.2)


def _plaintext(win: tuple[float, float]) -> bytes:
    """The recording's bytes, as the virtual camera serves them (a function of its serial and id)."""
    (rec,) = make_recordings(1, 1, SIZE, win, serial=SERIAL)
    return bytes(ContentSource(SERIAL).read(rec, 0, SIZE))


def _begin_as_an_older_agent(dock: Dock, client: Any, bucket: str, plaintext: bytes, parts: str) -> str:
    """Turn the upload today's agent journaled into the one an older agent left: the same journal row,
    its multipart upload begun with ChecksumAlgorithm=SHA256, holding no part or part 1 with its SHA-256
    (journaled, or not yet when the agent stopped). Returns the older upload's id."""
    db = sqlite3.connect(dock.config.journal_path)
    try:
        (row,) = db.execute(
            "SELECT serial, recording_id, camera_sha256, object_key, upload_id, file_key, age_header "
            "FROM recordings WHERE state='uploading'"
        ).fetchall()
        serial, rid, camera_sha256, object_key, upload_id, file_key, header = row
        full = f"training/{object_key}"
        client.abort_multipart_upload(Bucket=bucket, Key=full, UploadId=upload_id)
        old = str(client.create_multipart_upload(Bucket=bucket, Key=full, ChecksumAlgorithm="SHA256")["UploadId"])
        with db:
            db.execute("UPDATE recordings SET upload_id=? WHERE recording_id=?", (old, rid))
            db.execute("DELETE FROM parts")
        if parts != "none":
            enc = Encryptor.resume(bytes(header), bytes(file_key))
            body = (enc.header + enc.update(plaintext) + enc.finalize())[:PART]
            sha = b64_sha256(body)
            r = client.upload_part(Bucket=bucket, Key=full, UploadId=old, PartNumber=1, Body=body,
                                   ChecksumAlgorithm="SHA256", ChecksumSHA256=sha)  # fmt: skip
            if parts == "journaled":
                with db:
                    db.execute("INSERT INTO parts VALUES(?,?,?,?,?,?,?)",
                               (serial, rid, camera_sha256, 1, len(body), sha, r["ETag"]))  # fmt: skip
        return old
    finally:
        db.close()


def _custody(dock: Dock) -> list[dict[str, Any]]:
    db = sqlite3.connect(dock.config.journal_path)
    try:
        return [json.loads(line) for (line,) in db.execute("SELECT line FROM custody ORDER BY seq")]
    finally:
        db.close()


@pytest.mark.skipif(shutil.which("age") is None, reason="stock age CLI not installed")
@pytest.mark.parametrize("parts", ["none", "journaled", "unjournaled"])
def test_an_upload_an_older_agent_began_with_sha256_parts_is_restarted_and_the_recording_finishes(
    tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str, parts: str
) -> None:
    win = window()
    with SimProcess("usbip", SERIAL, "--recordings", "1", "--training", "1", "--size", str(SIZE),
                    "--exercise", iso_window(win), "--fault", f"unplug-at={2 * MiB}", truth_dir=tmp_path) as sim:  # fmt: skip
        dock = make_dock(tmp_path / "dock", f"s3://{s3_bucket}/training", seaweedfs.endpoint_url, erase=True)
        dock.enroll(SERIAL)
        dock.exercise("EX-V", win, SERIAL)
        rc, report = dock.ingest_json(sim.address)  # unplugged 2 MiB in: its upload journaled, no part yet
        assert rc == 1, report
        client = seaweedfs.client()  # its own session and credentials (boto3's default session caches them per process)
        plaintext = _plaintext(win)
        (truth,) = sim.truth
        assert hashlib.sha256(plaintext).hexdigest() == truth["sha256"]
        old = _begin_as_an_older_agent(dock, client, s3_bucket, plaintext, parts)
        _wait_for_camera(sim.address)

        rc, report = dock.ingest_json(sim.address)
        assert rc == 0, [c["errors"] for c in report["cameras"]]
        assert sum(c["verified"] for c in report["cameras"]) == 1, report
        assert sum(c["erased"] for c in report["cameras"]) == 1, report
        assert [u["UploadId"] for u in client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])] == []
        entries = [e for e in _custody(dock) if e.get("recording") == truth["id"]]
        events = [e["event"] for e in entries]
        assert events.index("verified") < events.index("erased")  # erased from the camera only once verified
        restarts = [e for e in entries if e["event"] == "pull_started" and e.get("restart")]
        assert len(restarts) == 1, entries  # the older upload was given up once, and said so
        db = sqlite3.connect(dock.config.journal_path)
        try:
            journaled = [c for (c,) in db.execute("SELECT sha256_b64 FROM parts")]
            assert db.execute("SELECT upload_id FROM recordings").fetchone()[0] != old
        finally:
            db.close()
        assert len(journaled) == 3 and all(len(c) == 8 for c in journaled)  # CRC-32C only, none of SHA-256
        verified = dock.cli("verify", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers),
                            "--endpoint-url", seaweedfs.endpoint_url, "--identity", str(dock.identity_path),
                            "--json")  # fmt: skip
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert json.loads(verified.stdout)["verified"] is True
