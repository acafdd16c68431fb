"""A camera that gives a recording id to other footage (review of the camera side): after an erase, a
counter that restarts, or firmware that re-encodes a clip. The journal keys a recording by serial, id
and SHA-256, but its object key names only the serial and the id: two recordings under one id in one
batch must never meet at one key. Real parts: a virtual camera over USB/IP, the CLI, a local bucket.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bodycam.drivers.protocol.messages import Category
from bodycam.drivers.virtual.camera import VirtualCamera
from bodycam.drivers.virtual.faults import Faults
from bodycam.drivers.virtual.scenario import SyntheticRecording

from .dock import Dock, make_dock
from .sims import serve

SERIAL = "CAM-IDS1"
MiB = 1024 * 1024


def _rec(rid: int, start: float, size: int, rotation: int) -> SyntheticRecording:
    return SyntheticRecording(rid, f"VID_{rid}.mp4", size, start, start + 60, Category.TRAINING, Category.TRAINING,
                              rotation)  # fmt: skip


def _manifest_shas(dock: Dock) -> list[tuple[int, str]]:
    """(recording id, plaintext SHA-256) of every recording of every signed manifest in the bucket."""
    out = []
    for path in sorted((dock.root.parent / "bucket").rglob("manifest.json")):
        manifest: dict[str, Any] = json.loads(path.read_bytes())
        out += [(int(r["recording_id"]), str(r["plaintext_sha256"])) for r in manifest["recordings"]]
    return sorted(out)


def test_an_id_reused_for_new_footage_while_its_batch_is_open_never_holds_the_batch(tmp_path: Path) -> None:
    """Recording 1 is verified and erased, recording 2 is cut by an unplug (its batch stays open), and
    the camera gives id 1 to a new recording. Before the fix the new one was uploaded under the very key
    of the verified one in the same batch: the create-only completion was refused at every run, the row
    stayed 'completing' and the batch (with recordings 1 and 2, verified) was never sealed, and the new
    footage never reached the bucket. Now it waits for the next batch: the open one is sealed, and the
    next docking takes it."""
    now = time.time()
    first, second = _rec(1, now - 1800, 64 * 1024 + 17, 11), _rec(2, now - 1500, 8 * MiB, 22)
    camera = VirtualCamera(SERIAL, [first, second], faults=Faults(unplug_at=3 * MiB))
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri(), erase=True)
    dock.enroll(SERIAL)
    dock.exercise("EX-IDS", (now - 3600, now + 3600), SERIAL)
    first_sha = camera.content.sha256(first).hex()
    with serve("usbip", camera=camera) as served:
        rc, report = dock.ingest_json(served.address)
        assert rc == 1 and report["cameras"][0]["erased"] == 1, report  # 1 verified and erased, 2 cut
        assert camera.erased == [1]
        reused = _rec(1, now - 600, 64 * 1024 + 99, 33)  # a new recording under the freed id
        camera.record(reused)
        reused_sha = camera.content.sha256(reused).hex()
        assert reused_sha != first_sha
        codes = []
        for _ in range(3):
            time.sleep(0.5)  # the camera re-appears after the unplug
            rc, report = dock.ingest_json(served.address)
            codes.append(rc)
            if rc == 0:
                break
    assert codes[-1] == 0, json.dumps([codes, report])[:3000]
    assert camera.recordings == {}, "every verified recording erased"
    assert _manifest_shas(dock) == sorted([(1, first_sha), (1, reused_sha), (2, camera.content.sha256(second).hex())])
    verified = dock.cli("verify", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _completions_blocked(tmp_path: Path) -> tuple[SyntheticRecording, VirtualCamera, Dock, Path]:
    """One training recording on a camera and a dock enrolled for it; the file that, put where the dock's
    prefix should be a directory of the file bucket, makes each completion fail while listings work."""
    now = time.time()
    rec = _rec(1, now - 1800, 64 * 1024 + 17, 11)
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    dock.enroll(SERIAL)
    dock.exercise("EX-IDS", (now - 3600, now + 3600), SERIAL)
    return rec, VirtualCamera(SERIAL, [rec]), dock, tmp_path / "bucket" / "dock-test"


def test_a_completion_that_fails_while_the_bucket_lists_uploads_keeps_its_upload(tmp_path: Path) -> None:
    """recover() aborted every open upload no ``uploading`` row owned, right after trying to complete the
    ``completing`` ones: an upload whose completion had just failed (here a file where the dock's prefix
    should be a directory; on S3, a CompleteMultipartUpload slower than the read timeout) while the
    listing worked was aborted under its own row. The row stayed ``completing`` with no upload: every
    later run failed on it, the recording never left the camera and its batch was never sealed. Now an
    upload a ``completing`` row holds is never an orphan."""
    rec, camera, dock, blocker = _completions_blocked(tmp_path)
    with serve("usbip", camera=camera) as served:
        blocker.parent.mkdir(parents=True, exist_ok=True)
        blocker.write_text("not a directory\n")
        for _ in range(2):  # the pull, then a run whose recover() meets the failing completion
            rc, report = dock.ingest_json(served.address)
            assert rc == 1, report
        blocker.unlink()
        rc, report = dock.ingest_json(served.address)
    assert rc == 0, json.dumps(report)[:3000]
    assert report["cameras"][0]["already_done"] == 1, report  # completed by recover(), without the camera
    assert _manifest_shas(dock) == [(1, camera.content.sha256(rec).hex())]


def test_a_completing_upload_the_bucket_lost_is_read_from_the_camera_again(tmp_path: Path) -> None:
    """The bucket loses the multipart upload of a recording whose bytes were all sent (a lifecycle rule,
    an abort by hand) before it is completed. Before the fix its row stayed ``completing`` for good: each
    run failed on it ("does not exist ... start again", and nothing started again), the camera kept the
    recording and its batch was never sealed. Now the row leaves its batch and the recording is read
    again at the next docking (custody pull_deferred), verified and signed."""
    from bodycam.agent.storage.bucket import open_bucket

    rec, camera, dock, blocker = _completions_blocked(tmp_path)
    with serve("usbip", camera=camera) as served:
        blocker.parent.mkdir(parents=True, exist_ok=True)
        blocker.write_text("not a directory\n")
        rc, report = dock.ingest_json(served.address)  # pulled, its completion fails: 'completing'
        assert rc == 1, report
        bucket = open_bucket(dock.bucket_url)
        (lost,) = bucket.open_uploads(prefix="dock-test/")
        bucket.abort_upload(lost.key, lost.upload_id)  # as a lifecycle rule would
        blocker.unlink()
        rc, report = dock.ingest_json(served.address)
    assert rc == 0, json.dumps(report)[:3000]
    assert report["cameras"][0]["verified"] == 1, report
    assert _manifest_shas(dock) == [(1, camera.content.sha256(rec).hex())]
    (moved,) = dock.custody("pull_deferred")
    assert moved["recording"] == 1 and moved["key"] == lost.key
    verified = dock.cli("verify", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers))
    assert verified.returncode == 0, verified.stdout + verified.stderr
