"""Time is evidence across dockings (issue 8, items 1 and 2), against real parts: virtual cameras over
USB/IP and a pty, the real CLI, a local bucket, and the bucket's signed manifest and custody log.

A camera may dock, and have its clock set, several times before its footage leaves; each recording
must be corrected with the clock offset in force when it was stamped, and a recording whose clock
cannot be placed (an epoch this dock never measured, an RTC reset) stays on the camera with the
reason in custody.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest

from bodycam.drivers.protocol.messages import Category
from bodycam.drivers.virtual.camera import VirtualCamera
from bodycam.drivers.virtual.faults import Faults
from bodycam.drivers.virtual.scenario import SyntheticRecording

from .dock import Dock, iso_window, make_dock, window
from .sims import SimProcess, serve

SERIAL = "CAM-CLK1"
SIZE = 64 * 1024 + 17
TRAINING = (1000, 1001, 1002)
OPERATIONAL, UNKNOWN, LATER = 1003, 1004, 1005
AMBIGUOUS_1 = (
    "clock not placeable: clock epoch 1 is ambiguous (the camera's epoch counter restarted, or did not advance when "
    "its clock was set)"
)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


def _ts(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _rec(rid: int, start: float, category: Category, tag: Category) -> SyntheticRecording:
    return SyntheticRecording(rid, f"VID_{rid}.mp4", SIZE, start, start + 120, category, tag, rid * 7919)


def exercise_scenario(drift: float) -> tuple[list[SyntheticRecording], tuple[float, float]]:
    """Three training recordings 20 minutes apart, a registered window with 5 minutes to spare on
    each side, an operational one inside it, and an UNKNOWN-tagged one 10 minutes outside it on the
    side a clock error of ``drift`` would move it in from (after the exercise when the camera runs
    slow, before it when it runs fast)."""
    t0 = time.time() - 3 * 3600
    training = [_rec(rid, t0 + 600 + 1200 * i, Category.TRAINING, Category.TRAINING) for i, rid in enumerate(TRAINING)]
    win = (training[0].true_start - 300, training[-1].true_end + 300)
    unknown_at = win[0] - 600 - 120 if drift > 0 else win[1] + 600
    recs = [
        *training,
        _rec(OPERATIONAL, t0 + 1200, Category.OPERATIONAL, Category.OPERATIONAL),
        _rec(UNKNOWN, unknown_at, Category.OPERATIONAL, Category.UNKNOWN),
    ]
    return recs, win


def manifest_recordings(dock: Dock) -> dict[int, dict[str, Any]]:
    """Every recording of every signed manifest in the bucket, by recording id."""
    out: dict[int, dict[str, Any]] = {}
    for path in sorted((dock.root.parent / "bucket").rglob("manifest.json")):
        for rec in json.loads(path.read_bytes())["recordings"]:
            assert rec["recording_id"] not in out, "a recording in two manifests"
            out[rec["recording_id"]] = rec
    return out


def skipped_reasons(dock: Dock) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for e in dock.custody():
        if e["event"] == "skipped_out_of_scope":
            out.setdefault(e["recording"], []).append(e["reason"])
    return out


@pytest.mark.parametrize(
    ("medium", "drift", "v1"),
    [("usbip", 900.0, False), ("usbip", -900.0, False), ("serial", 900.0, True)],
    ids=["usbip-fast-rev2", "usbip-slow-rev2", "pty-fast-rev1"],
)
def test_footage_stamped_before_an_earlier_clock_set_keeps_its_true_time(
    tmp_path: Path, medium: str, drift: float, v1: bool
) -> None:
    """Issue 8 item 1: dock twice (the first docking sets the clock), register the exercise, dock
    again: every training recording is in scope and placed at its true time, and the UNKNOWN one
    made just outside the exercise stays out. Before the fix the third docking corrected everything
    with the offset measured then (~0): one training recording fell outside the window, the others
    were signed 900 s off, and the UNKNOWN one was shifted into scope."""
    recs, win = exercise_scenario(drift)
    camera = VirtualCamera(SERIAL, recs, clock_offset_s=drift, faults=Faults(v1_only=v1))
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    dock.enroll(SERIAL)
    with serve(medium, camera=camera) as served:
        for _ in range(2):  # nothing registered yet: everything stays; the first docking sets the clock
            rc, report = dock.ingest_json(served.address)
            assert rc == 0 and report["cameras"][0]["in_scope"] == 0, report
        assert camera.clock_offset_s == pytest.approx(0.0, abs=1.0)
        added = dock.cli("exercise", "add", "EX-CLK", "--start", _iso(win[0]), "--end", _iso(win[1]),
                         "--camera", SERIAL)  # fmt: skip
        assert added.returncode == 0, added.stderr
        rc, report = dock.ingest_json(served.address)
    assert rc == 0, report
    assert report["cameras"][0]["in_scope"] == 3 and report["cameras"][0]["verified"] == 3, report
    placed = manifest_recordings(dock)
    assert set(placed) == set(TRAINING)  # not the UNKNOWN one, not the operational one
    truth = {r.id: r for r in recs}
    for rid, entry in placed.items():
        assert _ts(entry["start"]) == pytest.approx(truth[rid].true_start, abs=1.0), entry
        assert _ts(entry["end"]) == pytest.approx(truth[rid].true_end, abs=1.0), entry
        assert entry["clock_offset_s"] == pytest.approx(drift, abs=1.0)
    reasons = skipped_reasons(dock)
    assert "outside every exercise window of this camera" in reasons[UNKNOWN]
    verified = dock.cli("verify", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_an_epoch_this_dock_never_measured_is_not_placed(tmp_path: Path) -> None:
    """Another dock set the clock first (a new epoch) and the camera recorded again: this dock places
    the new footage by the epoch it measures now, and keeps the older footage, whose clock error it
    never measured, on the camera with that reason in custody."""
    recs, win = exercise_scenario(900.0)
    camera = VirtualCamera(SERIAL, recs, clock_offset_s=900.0)
    other = make_dock(tmp_path / "other", (tmp_path / "other-bucket").as_uri())
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    for d in (other, dock):
        d.enroll(SERIAL)
    now = time.time()
    with serve("usbip", camera=camera) as served:
        assert other.ingest_json(served.address)[0] == 0  # sets the clock: epoch 1 -> 2
        camera.clock_offset_s += 40.0  # the new epoch drifts too
        camera.record(_rec(LATER, now - 200, Category.TRAINING, Category.TRAINING))
        dock.exercise("EX-ALL", (win[0] - 86400, now), SERIAL)
        rc, report = dock.ingest_json(served.address)
    assert rc == 0, report
    placed = manifest_recordings(dock)
    assert set(placed) == {LATER}
    assert _ts(placed[LATER]["start"]) == pytest.approx(now - 200, abs=1.0)
    assert placed[LATER]["clock_offset_s"] == pytest.approx(40.0, abs=1.0)
    reasons = skipped_reasons(dock)
    for rid in TRAINING:
        assert reasons[rid] == ["clock not placeable: this dock never measured clock epoch 1 of the camera"]


@pytest.mark.parametrize("v1", [False, True], ids=["rev2", "rev1"])
def test_a_camera_whose_rtc_was_reset_is_docked_repaired_and_its_footage_kept(tmp_path: Path, v1: bool) -> None:
    """Issue 8 item 2: a camera reporting 1970 was refused at CLOCK_GET and never sent CLOCK_SET, so it
    could never be docked again. Now the invalid clock is recorded in custody, the clock is set, and
    the footage stamped under it stays on the camera (default deny) with the reason."""
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    win = window()
    faults = ["--fault", "rtc-reset"] + (["--fault", "v1-only"] if v1 else [])
    with SimProcess("usbip", SERIAL, "--recordings", "3", "--training", "2", "--size", str(SIZE),
                    "--exercise", iso_window(win), *faults, truth_dir=tmp_path) as sim:  # fmt: skip
        dock.enroll(SERIAL)
        dock.exercise("EX-RTC", win, SERIAL)
        rc, report = dock.ingest_json(sim.address)
        assert rc == 0, report
        assert report["cameras"][0]["out_of_scope"] == 3 and report["cameras"][0]["in_scope"] == 0, report
        devices = dock.cli("devices", "--json", "--usbip", sim.address)
        assert devices.returncode == 0, devices.stderr
        (cam,) = json.loads(devices.stdout)["cameras"]
        assert cam["clock_offset_s"] == pytest.approx(0.0, abs=1.0)  # repaired: the dock set it
        rc, report = dock.ingest_json(sim.address)  # and it docks again
        assert rc == 0 and report["cameras"][0]["in_scope"] == 0, report
        ids = {int(str(r["id"])) for r in sim.truth}
        training = set(sim.training())
    assert not [p for p in (tmp_path / "bucket").rglob("*.age") if "recordings" in p.parts]
    log = dock.custody()
    invalid = [e for e in log if e["event"] == "clock_invalid"]
    assert len(invalid) == 1 and invalid[0]["camera"] == SERIAL and invalid[0]["camera_time_s"] < 86400 * 365
    sets = [e for e in log if e["event"] == "clock_set"]
    assert [e["clock_valid"] for e in sets] == [False, True]
    reasons = skipped_reasons(dock)
    assert set(reasons) == ids and len(training) == 2
    for rid in training:  # (the operational one is out for that reason first)
        assert reasons[rid] == ["clock not placeable: stamped under an invalid camera clock (RTC reset, before 2000)"]


def test_an_epoch_counter_that_restarts_makes_its_old_numbers_ambiguous(tmp_path: Path) -> None:
    """A reflashed camera whose epoch counter restarted reuses epoch numbers: footage stamped under the
    old epoch 1 (900 s fast) and under the new epoch 1 (right) cannot be told apart, so neither is
    placed, and custody says the counter went back. Placing by the newest reading of "epoch 1" would
    sign the old footage 900 s off."""
    recs, win = exercise_scenario(900.0)
    camera = VirtualCamera(SERIAL, recs, clock_offset_s=900.0)
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    dock.enroll(SERIAL)
    now = time.time()
    with serve("usbip", camera=camera) as served:
        assert dock.ingest_json(served.address)[0] == 0  # measures epochs 1 (900 s) and 2 (0 s)
        camera.clock_epoch = 1  # reflashed: the counter starts again, the clock keeps its (right) time
        camera.record(_rec(LATER, now - 200, Category.TRAINING, Category.TRAINING))
        dock.exercise("EX-ALL", (win[0] - 86400, now), SERIAL)
        rc, report = dock.ingest_json(served.address)
    assert rc == 0, report
    assert manifest_recordings(dock) == {}
    reasons = skipped_reasons(dock)
    for rid in (*TRAINING, LATER):
        assert reasons[rid][-1] == AMBIGUOUS_1
    (reset,) = [e for e in dock.custody() if e["event"] == "clock_epoch_reset"]
    assert (reset["epoch"], reset["highest_seen"]) == (1, 2)


@pytest.mark.parametrize("v1", [False, True], ids=["rev2", "rev1"])
def test_clock_sync_keeps_the_history_a_later_ingest_needs(tmp_path: Path, v1: bool) -> None:
    """`clock sync` sets the clock too: it must journal the clock it replaces (the epoch's reading, or
    each recording's first-listing offset), or the next ingest places the footage 900 s off."""
    recs, win = exercise_scenario(900.0)
    camera = VirtualCamera(SERIAL, recs, clock_offset_s=900.0, faults=Faults(v1_only=v1))
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    dock.enroll(SERIAL)
    dock.exercise("EX-CLK", win, SERIAL)
    with serve("usbip", camera=camera) as served:
        synced = dock.cli("clock", "sync", "--json", "--usbip", served.address)
        assert synced.returncode == 0, synced.stderr
        assert json.loads(synced.stdout)["cameras"][0]["drift_s"] == pytest.approx(900.0, abs=1.0)
        rc, report = dock.ingest_json(served.address)
    assert rc == 0, report
    placed = manifest_recordings(dock)
    assert set(placed) == set(TRAINING)
    for entry in placed.values():
        assert entry["clock_offset_s"] == pytest.approx(900.0, abs=1.0), entry


def test_a_camera_whose_epoch_stands_still_at_a_clock_set_has_that_epoch_placed_nowhere(tmp_path: Path) -> None:
    """A firmware that sets its clock but keeps its epoch (fault epoch-stuck) names two clocks with one
    number: the one 900 s fast its footage was stamped under, and the right one the dock set. Before the
    fix the next docking placed that footage by the reading nearest its stamp, the one taken just after
    the set (offset 0): the training recordings were signed 900 s off and the UNKNOWN one, made 10
    minutes before the exercise, was carried into its window and left the dock. Now the epoch's
    readings are retired at the set (custody clock_epoch_reset) and its footage stays (default deny)."""
    recs, win = exercise_scenario(900.0)
    camera = VirtualCamera(SERIAL, recs, clock_offset_s=900.0, faults=Faults(epoch_stuck=True))
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    dock.enroll(SERIAL)
    with serve("usbip", camera=camera) as served:
        rc, report = dock.ingest_json(served.address)  # nothing registered yet: it only sets the clock
        assert rc == 0 and report["cameras"][0]["in_scope"] == 0, report
        assert camera.clock_epoch == 1 and camera.clock_offset_s == pytest.approx(0.0, abs=1.0)
        dock.exercise("EX-STUCK", win, SERIAL)
        rc, report = dock.ingest_json(served.address)
    assert rc == 0, report
    assert manifest_recordings(dock) == {}
    reasons = skipped_reasons(dock)
    for rid in (*TRAINING, UNKNOWN):
        assert reasons[rid][-1] == AMBIGUOUS_1
    resets = [e for e in dock.custody() if e["event"] == "clock_epoch_reset"]
    assert [(e["epoch"], e["highest_seen"]) for e in resets] == [(1, 1), (1, 1)]  # one per clock set
