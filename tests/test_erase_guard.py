"""Nothing is erased from a camera that the bucket does not hold now (review of the camera side).

A recording verified at one docking may be erased at a later one (``policy.erase_after_upload`` turned on,
or an erase the camera refused before). Before the fix that later erase trusted the journal's old
``verified``: an object deleted from the bucket meanwhile (by hand, a lifecycle rule, a restore gone
wrong) was erased from the camera too, and the footage existed nowhere. Real parts: a virtual camera over
USB/IP, the CLI, a local bucket.
"""

from __future__ import annotations

import time
from pathlib import Path

from bodycam.drivers.protocol.messages import Category
from bodycam.drivers.virtual.camera import VirtualCamera
from bodycam.drivers.virtual.scenario import SyntheticRecording

from .dock import make_dock
from .sims import serve

SERIAL = "CAM-ERS1"


def test_a_recording_whose_object_left_the_bucket_is_not_erased_later(tmp_path: Path) -> None:
    now = time.time()
    recs = [
        SyntheticRecording(
            rid,
            f"VID_{rid}.mp4",
            64 * 1024 + rid,
            now - 1800 + rid,
            now - 1700 + rid,
            Category.TRAINING,
            Category.TRAINING,
            rid * 7,
        )
        for rid in (1, 2)
    ]
    camera = VirtualCamera(SERIAL, recs)
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri(), erase=False)
    dock.enroll(SERIAL)
    dock.exercise("EX-ERS", (now - 3600, now + 3600), SERIAL)
    with serve("usbip", camera=camera) as served:
        rc, report = dock.ingest_json(served.address)
        assert rc == 0 and report["cameras"][0]["verified"] == 2, report
        (gone,) = (tmp_path / "bucket").rglob("recordings/CAM-ERS1/1.age")
        gone.unlink()  # the bucket no longer holds recording 1
        dock.config_path.write_text(
            dock.config_path.read_text().replace("erase_after_upload = false", "erase_after_upload = true")
        )
        rc, report = dock.ingest_json(served.address)
    assert camera.erased == [2], "only the recording the bucket still holds is erased"
    assert 1 in camera.recordings
    assert rc == 1, report
    (error,) = report["cameras"][0]["errors"]
    assert "recording 1" in error and "not erased" in error, error


def test_a_recording_verified_before_a_move_to_another_bucket_is_still_erased(tmp_path: Path) -> None:
    """The old bucket keeps what was verified in it before ``dock handover --bucket``: the check before an
    erase looks in the bucket the recording was verified in, so the new bucket's not holding it does not
    keep the footage on the camera for ever (one error a docking)."""
    now = time.time()
    recs = [
        SyntheticRecording(1, "VID_1.mp4", 64 * 1024 + 1, now - 1800, now - 1700, Category.TRAINING,
                           Category.TRAINING, 7)
    ]  # fmt: skip
    camera = VirtualCamera(SERIAL, recs)
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri(), erase=False)
    dock.enroll(SERIAL)
    dock.exercise("EX-ERS", (now - 3600, now + 3600), SERIAL)
    new_url = (tmp_path / "bucket-2").as_uri()
    with serve("usbip", camera=camera) as served:
        rc, report = dock.ingest_json(served.address)
        assert rc == 0 and report["cameras"][0]["verified"] == 1, report
        text = dock.config_path.read_text().replace(dock.bucket_url, new_url)
        dock.config_path.write_text(text.replace("erase_after_upload = false", "erase_after_upload = true"))
        moved = dock.cli("dock", "handover", "--bucket", new_url)
        assert moved.returncode == 0, moved.stderr
        rc, report = dock.ingest_json(served.address)
    assert rc == 0, report
    assert camera.erased == [1]
