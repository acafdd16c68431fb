"""What one camera may make the dock store (review of the dock side, agent/pipeline/intake.py).

An enrolled camera whose firmware makes up recordings (new ids or hashes at every docking, up to the
65,535 a listing may hold) made the journal grow by a row and a custody entry for each, at every docking,
without end: the state disk filled, and every other bay with it. The dock now journals at most
``cameras.max_new_recordings_per_docking`` recordings new to it at one docking and
``cameras.max_recordings_per_camera`` for one camera in all; what is past either stays on the camera,
untouched, with one error naming the camera and the key. A recording already in flight still finishes.
Real parts: a virtual camera over USB/IP, the shipped ``ingest --once``, a local bucket.
"""

from __future__ import annotations

import time
from pathlib import Path

from bodycam.drivers.protocol.messages import Category
from bodycam.drivers.virtual.camera import VirtualCamera
from bodycam.drivers.virtual.faults import Faults
from bodycam.drivers.virtual.scenario import SyntheticRecording

from .dock import Dock, make_dock
from .sims import serve

SERIAL = "CAM-HOG1"
TRAINING_ID = 1
KiB = 1024


def _made_up(first: int, count: int) -> list[SyntheticRecording]:
    """Operational recordings the firmware invents: new ids at each docking, a few bytes each."""
    t0 = time.time() - 7200
    return [
        SyntheticRecording(
            rid, f"VID_{rid}.mp4", KiB, t0 + i, t0 + i + 1, Category.OPERATIONAL, Category.OPERATIONAL, rid
        )
        for i, rid in enumerate(range(first, first + count))
    ]


def _journal_counts(dock: Dock) -> tuple[int, int, int]:
    """Rows the journal holds of the camera, its first-listing rows, and its stay entries in custody."""
    journal = dock.journal()
    try:
        rows = journal.query("SELECT COUNT(*) FROM recordings WHERE serial=?", (SERIAL,))[0][0]
        clocks = journal.query("SELECT COUNT(*) FROM recording_clocks WHERE serial=?", (SERIAL,))[0][0]
    finally:
        journal.close()
    return int(rows), int(clocks), len(dock.custody("skipped_out_of_scope"))


def _state(dock: Dock, rid: int) -> str:
    journal = dock.journal()
    try:
        return str(journal.query("SELECT state FROM recordings WHERE serial=? AND recording_id=?", (SERIAL, rid))[0][0])
    finally:
        journal.close()


def test_a_camera_making_up_recordings_at_every_docking_is_bounded_and_its_real_footage_still_leaves(
    tmp_path: Path,
) -> None:
    """Each docking the camera lists 30 recordings it made up (and one real training recording). With 20
    a docking and 30 in all: the first docking journals the training recording and 19, the second 10 more,
    the third and fourth none, and the journal's rows and stay entries stop at 30; the training recording,
    cut short by an unplug at the first docking, resumes and is verified at the second. Before the fix
    every docking journaled all 30 (120 rows and stay entries after four)."""
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    with dock.config_path.open("a") as f:
        f.write("[cameras]\nmax_new_recordings_per_docking = 20\nmax_recordings_per_camera = 30\n")
    start = time.time() - 3600
    real = SyntheticRecording(TRAINING_ID, "VID_1.mp4", 512 * KiB, start, start + 60, Category.TRAINING,
                              Category.TRAINING, 7)  # fmt: skip
    camera = VirtualCamera(SERIAL, [real, *_made_up(100, 30)], clock_offset_s=600.0,
                           faults=Faults(unplug_at=256 * KiB))  # fmt: skip
    dock.enroll(SERIAL)
    dock.exercise("EX-HOG", (start - 600, start + 600), SERIAL)
    with serve("usbip", camera=camera) as served:
        rc, report = dock.ingest_json(served.address)
        assert rc == 1, report
        errors = " | ".join(report["cameras"][0]["errors"])
        assert f"camera {SERIAL} listed more recordings new to this dock than one docking takes" in errors, errors
        assert "cameras.max_new_recordings_per_docking = 20" in errors and "11 recordings" in errors, errors
        assert _state(dock, TRAINING_ID) == "uploading"  # in flight: the unplug cut it short
        assert _journal_counts(dock)[0] == 20
        assert abs(camera.clock_offset_s - 600.0) < 1.0  # not set: the held recordings keep their clock
        time.sleep(1.0)  # the camera re-appears

        for docking, first in enumerate((200, 300, 400), start=2):
            camera.recordings = {TRAINING_ID: real, **{r.id: r for r in _made_up(first, 30)}}
            rc, report = dock.ingest_json(served.address)
            assert rc == 1, report
            errors = " | ".join(report["cameras"][0]["errors"])
            assert f"camera {SERIAL}: this dock has journaled 30 recordings" in errors, errors
            assert "cameras.max_recordings_per_camera = 30" in errors, errors
            assert f"{20 if docking == 2 else 30} recordings new to this dock stay on the camera" in errors, errors
            assert _state(dock, TRAINING_ID) == "verified", docking  # already known: never held back
            rows, clocks, stays = _journal_counts(dock)
            assert rows == 30 and clocks <= 30 and stays == 29, (docking, rows, clocks, stays)
    assert len(camera.erased) == 0  # nothing held back was touched
    verified = dock.cli("verify", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_the_limits_are_config_keys_with_bounds(tmp_path: Path) -> None:
    """A value outside its bounds is one line naming the key (exit 2), as every config key."""
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    with dock.config_path.open("a") as f:
        f.write("[cameras]\nmax_new_recordings_per_docking = 70000\n")
    proc = dock.cli("exercise", "list")
    assert proc.returncode == 2, proc.stderr
    assert "cameras.max_new_recordings_per_docking" in proc.stderr and "65535" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
