"""No camera can hold evidence hostage (issue 8, item 3): hostile cameras served over USB/IP and a pty.

Each hostile behaviour is a virtual-camera fault (docs/protocol.md, "Virtual camera faults"). A read
that never ends runs in a thread with a generous bound: before the fixes these reads never returned.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bodycam.agent.storage.bucket import open_bucket
from bodycam.drivers.errors import LinkTimeoutError, ProtocolError
from bodycam.drivers.virtual.faults import Faults, parse_faults

from .dock import iso_window, make_dock, window
from .sims import MEDIA, SimProcess, bounded, serve, spec

KiB = 1024
MiB = 1024 * KiB


def test_new_faults_parse() -> None:
    faults = parse_faults(["empty-more-follows", "trickle-bps=100", "hang-read-at=1048576"])
    assert faults == Faults(empty_more_follows=True, trickle_bps=100, hang_read_at=MiB)
    assert faults.names == ["empty-more-follows", "trickle-bps", "hang-read-at"]


@pytest.mark.parametrize("medium", MEDIA)
def test_empty_more_follows_frames_are_a_protocol_error(medium: str) -> None:
    with serve(medium, spec("SIM-EMPTY", Faults(empty_more_follows=True), recordings=1, training=1, size=MiB)) as sim:
        with sim.connect(timeout=2.0) as cam:
            cam.open()
            cam.authenticate(sim.enrolled_key)
            rec = cam.recordings()[0]
            cam.retries = 0  # the first error names the fault; retries meet the same endless answer
            err = bounded(lambda: b"".join(cam.iter_read(rec)))
            assert isinstance(err, ProtocolError), err
            assert "empty MORE_FOLLOWS" in str(err)
            cam.retries = 2
            err = bounded(lambda: cam.read(rec, 0, 64 * KiB))
            assert isinstance(err, ProtocolError), err


@pytest.mark.parametrize("medium", MEDIA)
def test_a_trickling_camera_fails_the_whole_answer_deadline(medium: str) -> None:
    """Every frame arrives well inside the per-frame deadline; the answer as a whole never would."""
    with serve(medium, spec("SIM-TRICKLE", Faults(trickle_bps=100), recordings=1, training=1, size=MiB)) as sim:
        with sim.connect(timeout=1.0) as cam:
            cam.open()
            cam.authenticate(sim.enrolled_key)
            rec = cam.recordings()[0]
            cam.retries = 0  # the first error names the cause; a retry waits behind the trickle still queued
            err = bounded(lambda: cam.read(rec, 0, 64 * KiB))  # 64 KiB at 100 B/s: 11 minutes
            assert isinstance(err, LinkTimeoutError), err
            assert "slower than 512 KiB/s" in str(err)
            cam.retries = 2
            err = bounded(lambda: b"".join(cam.iter_read(rec, 0, span=64 * KiB)))
            assert isinstance(err, LinkTimeoutError), err


def test_a_camera_that_hangs_mid_recording_times_out() -> None:
    with serve("usbip", spec("SIM-HANG", Faults(hang_read_at=MiB), recordings=1, training=1, size=4 * MiB)) as sim:
        with sim.connect(timeout=1.0) as cam:
            cam.open()
            cam.authenticate(sim.enrolled_key)
            rec = cam.recordings()[0]
            got = bytearray()

            def read_all() -> None:
                for chunk in cam.iter_read(rec):
                    got.extend(chunk)

            err = bounded(read_all)
            assert isinstance(err, LinkTimeoutError), err
            assert 0 < len(got) <= MiB


def test_a_hanging_camera_does_not_keep_the_other_cameras_footage_unsigned(tmp_path: Path) -> None:
    """ingest --once with one good and one hanging camera: the batch seals on schedule with the good
    camera's recordings, the hanging one's upload is moved out (aborted, none left open) and verify passes."""
    bucket = tmp_path / "bucket"
    dock = make_dock(tmp_path / "dock", bucket.as_uri())
    with dock.config_path.open("a") as f:
        f.write("[batch]\nmax_age_s = 0\n")  # every seal is due: what matters is what it leaves out
    win = window()
    dock.enroll("CAM-GOOD", "CAM-HANG")
    dock.exercise("EX-HANG", win, "CAM-GOOD", "CAM-HANG")
    args = ("--recordings", "2", "--training", "2", "--size", str(3 * MiB), "--exercise", iso_window(win))
    with (
        SimProcess("usbip", "CAM-GOOD", *args, truth_dir=tmp_path) as good,
        SimProcess("serial", "CAM-HANG", *args, "--fault", f"hang-read-at={MiB}", truth_dir=tmp_path) as bad,
    ):
        rc, report = dock.ingest_json(good.address, bad.address)
        assert rc == 1, report  # the hanging camera's footage is not in the bucket yet
        cams = {c["serial"]: c for c in report["cameras"]}
        assert cams["CAM-GOOD"]["verified"] == 2 and not cams["CAM-GOOD"]["errors"], report
        assert cams["CAM-HANG"]["errors"], report
        training = good.training()
    # every seal is due at once, so the good camera's second recording waits for the first one's seal and
    # goes into the next batch (Agent._await_due_seal): the good footage is signed, in one batch or two
    docs = [json.loads(p.read_text()) for p in bucket.rglob("manifest.json")]
    assert docs, "the open batch waited for the hanging camera's upload"
    assert {(r["camera_serial"], r["recording_id"]) for d in docs for r in d["recordings"]} == {
        ("CAM-GOOD", rid) for rid in training
    }
    custody = "".join((bucket / d["custody"]["key"]).read_text() for d in docs)
    assert '"event":"pull_deferred"' in custody
    assert [p for p in bucket.rglob("*.age") if "CAM-HANG" in str(p)] == []
    assert open_bucket(dock.bucket_url).open_uploads(prefix="") == [], "the moved upload was left open"
    proc = dock.cli("verify", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers))
    assert proc.returncode == 0, proc.stdout + proc.stderr
