"""Why footage stayed (issue 11 item 1): per camera and reason through ingest, sync and status; what each
exercise caught; amending and removing exercises with custody entries. Real cameras over USB/IP and a pty."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from .dock import CLI, iso_window, make_dock, window
from .sims import SimProcess
from .test_daemon import Camera, status

SIZE = 64 * 1024
HOUR = 3600.0
#: what a skipped_out_of_scope custody entry may carry: ids, a size, the reason and its code; never a window.
#: Version 2 entries (issue 12 item 6) add v, the actor (the dock itself for a docking) and the s.62 operation.
SKIPPED_FIELDS = {"seq", "ts", "dock", "event", "prev", "camera", "recording", "size", "reason", "code"} | {
    "v",
    "actor",
    "operation",
}


def sim(medium: str, serial: str, tmp: Path, win: tuple[float, float], n: int, training: int, *extra: str) -> Any:
    args = ["--recordings", str(n), "--training", str(training), "--size", str(SIZE), "--exercise", iso_window(win)]
    return SimProcess(medium, serial, *args, *extra, truth_dir=tmp)


def test_ingest_says_why_footage_stayed_and_exercises_are_amended_and_removed_with_custody(tmp_path: Path) -> None:
    win = window()
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    dock.enroll("CAM-W1", "CAM-W2", "CAM-W3")
    added = dock.cli("exercise", "add", "EX-W", "--start", iso_window(win).split("/")[0],
                     "--end", iso_window(win).split("/")[1], "--camera", "CAM-W1", "--camera", "CAM-W3")  # fmt: skip
    assert added.returncode == 0, added.stderr
    with (
        sim("usbip", "CAM-W1", tmp_path, win, 5, 2) as inside,  # 2 training, 2 tagged operational, 1 tagged
        # training but recorded 4 h before the window
        sim("serial", "CAM-W2", tmp_path, win, 3, 1) as unallocated,  # enrolled, in no exercise
        sim("usbip", "CAM-W3", tmp_path, win, 3, 1, "--fault", "rtc-reset") as reset,  # stamped on a 1970 clock
    ):
        addresses = (inside.address, unallocated.address, reset.address)
        code, doc = dock.ingest_json(*addresses)
        assert code == 0, doc
        cams = {c["serial"]: c for c in doc["cameras"]}
        assert cams["CAM-W1"]["out_of_scope_reasons"] == {
            "operational": 2, "no_exercise": 0, "outside_window": 1, "clock_unplaceable": 0, "no_agreement": 0
        }  # fmt: skip
        nearest = cams["CAM-W1"]["nearest_window"]
        assert nearest["exercise"] == "EX-W" and nearest["side"] == "before"
        assert abs(nearest["off_by_s"] - 4 * HOUR) < 5, nearest  # recorded 4 h before the window opens
        assert cams["CAM-W2"]["out_of_scope_reasons"] == {
            "operational": 1, "no_exercise": 2, "outside_window": 0, "clock_unplaceable": 0, "no_agreement": 0
        }  # fmt: skip
        assert cams["CAM-W2"]["nearest_window"] is None
        assert cams["CAM-W3"]["out_of_scope_reasons"] == {
            "operational": 1, "no_exercise": 0, "outside_window": 0, "clock_unplaceable": 2, "no_agreement": 0
        }  # fmt: skip
        for cam in cams.values():  # the fields ingest --json always had are still there
            assert cam["out_of_scope"] == sum(cam["out_of_scope_reasons"].values())
            assert cam["in_scope"] + cam["out_of_scope"] == cam["recordings"]
        # custody says why with a code and ids only: the nearest window stays on the dock
        skipped = dock.custody("skipped_out_of_scope")
        assert len(skipped) == 9 and all(set(e) == SKIPPED_FIELDS for e in skipped), skipped
        assert {e["code"] for e in skipped} == {"operational", "no_exercise", "outside_window", "clock_unplaceable"}
        assert not any("EX-W" in json.dumps(e) for e in skipped)
        assert {(e["v"], e["actor"], e["operation"]) for e in skipped} == {
            (2, e["dock"], "consultation") for e in skipped
        }
        # the text says the same on the dock's terminal
        text = dock.cli("ingest", "--once", "--usbip", inside.address)
        assert text.returncode == 0, text.stderr
        assert (
            "stayed on the camera: 2 tagged operational, 1 outside every window (nearest EX-W: starts 4.0 h before it opens)"
            in text.stdout
        ), text.stdout
        # exercise list shows what each exercise caught
        listed = dock.cli("exercise", "list", "--json")
        caught = {e["id"]: e["caught"] for e in json.loads(listed.stdout)["exercises"]}
        assert caught["EX-W"] == {"recordings": 2, "bytes": 2 * SIZE, "verified": 2, "in_progress": 0}
        assert "caught 2 recordings" in dock.cli("exercise", "list").stdout
        # footage left under EX-W: it cannot be removed, only amended
        refused = dock.cli("exercise", "remove", "EX-W")
        assert refused.returncode == 2 and "2 recording(s) already left the dock" in refused.stderr, refused.stderr
        assert dock.custody("exercise_removed") == []
        earlier = iso_window((win[0] - 5 * HOUR, win[1])).split("/")[0]
        amended = dock.cli("exercise", "amend", "EX-W", "--start", earlier)
        assert amended.returncode == 0, amended.stderr
        entry = dock.custody("exercise_amended")[-1]
        assert entry["exercise"] == "EX-W" and entry["cameras"] == ["CAM-W1", "CAM-W3"] and "site" not in entry
        # the next docking places the recording the old window missed
        code, doc = dock.ingest_json(inside.address)
        again = doc["cameras"][0]
        assert code == 0 and again["verified"] == 1 and again["out_of_scope_reasons"]["outside_window"] == 0, doc
        assert again["nearest_window"] is None
    # an exercise nothing left under is removed, with its custody entry
    assert dock.cli("exercise", "add", "EX-SPARE", "--start", iso_window(win).split("/")[0],
                    "--end", iso_window(win).split("/")[1], "--camera", "CAM-W2").returncode == 0  # fmt: skip
    removed = dock.cli("exercise", "remove", "EX-SPARE")
    assert removed.returncode == 0, removed.stderr
    assert [e["exercise"] for e in dock.custody("exercise_removed")] == ["EX-SPARE"]
    assert "EX-SPARE" not in dock.cli("exercise", "list").stdout
    missing = dock.cli("exercise", "amend", "EX-NONE", "--end", iso_window(win).split("/")[1])
    assert missing.returncode == 2 and "no exercise 'EX-NONE'" in missing.stderr


def test_status_and_sync_wait_say_why_footage_stayed(tmp_path: Path) -> None:
    win = window()
    cam = Camera("usbip", "CAM-WD", win, tmp_path)
    cam.args = ["--recordings", "5", "--training", "2", "--size", str(SIZE), "--exercise", iso_window(win)]
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    with dock.config_path.open("a") as f:
        f.write(f'[cameras]\nusbip = ["{cam.address}"]\n')
    dock.enroll(cam.serial)
    dock.exercise("EX-WD", win, cam.serial)
    cam.dock()
    log = tmp_path / "daemon.log"
    daemon = subprocess.Popen(
        [CLI, "--config", str(dock.config_path), "daemon", "--rescan", "0.3"], stderr=log.open("ab")
    )
    try:
        deadline = time.monotonic() + 60
        bays: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            if (dock.config.state_dir / "run" / "control.sock").exists():
                bays = status(dock)["bays"]
                if bays and bays[0]["state"] == "synced":
                    break
            time.sleep(0.2)
        assert bays and bays[0]["state"] == "synced", log.read_text()[-3000:]
        reasons = {"operational": 2, "no_exercise": 0, "outside_window": 1, "clock_unplaceable": 0, "no_agreement": 0}
        assert bays[0]["out_of_scope_reasons"] == reasons, bays[0]
        assert bays[0]["nearest_window"]["exercise"] == "EX-WD"
        for view in ("status", "watch"):
            text = dock.cli(view, *(["--count", "1"] if view == "watch" else []))
            assert "stayed on the camera: 2 tagged operational, 1 outside every window (nearest EX-WD" in text.stdout
            # and what moved: the bay's line said nothing of the 2 recordings that left
            assert "2 recordings verified in the bucket since docked" in text.stdout, text.stdout
        waited = dock.cli("sync", "--camera", cam.serial, "--wait", "--json", timeout=120)
        assert waited.returncode == 0, waited.stderr
        bay = json.loads(waited.stdout)
        assert bay["state"] == "synced" and bay["sessions"] == 2 and bay["out_of_scope_reasons"] == reasons, bay
        shown = dock.cli("sync", "--camera", cam.serial, "--wait", timeout=120)
        assert shown.returncode == 0 and "stayed on the camera: 2 tagged operational" in shown.stdout, shown.stdout
        assert "2 recordings verified in the bucket since docked" in shown.stdout, shown.stdout
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
        cam.undock()
