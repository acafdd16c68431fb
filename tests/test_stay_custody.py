"""Why footage stayed on a camera reaches the bucket without waiting for a docking that uploads something.

A docking with nothing to upload writes no batch (docs/crash-safety.md, "No empty batches"): its custody
entries, the stay reasons among them, wait in the journal's signed chain. The daemon seals them alone in
a custody-only batch once they have waited ``batch.custody_only_interval_s`` (a day by default; 1 s
here), with no further docking, so they are never held back indefinitely (docs/decisions.md).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from .dock import CLI, iso_window, make_dock, window
from .sims import SimProcess


def _stay_entries(bucket: Path) -> list[dict[str, object]]:
    entries = []
    for path in bucket.rglob("custody.jsonl"):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("event") == "skipped_out_of_scope":
                entries.append(entry)
    return entries


def test_the_daemon_publishes_the_stay_reasons_of_a_docking_with_nothing_to_upload(tmp_path: Path) -> None:
    win = window()
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri(), erase=True)
    args = ("--recordings", "3", "--training", "0", "--size", "65536", "--exercise", iso_window(win))
    with SimProcess("usbip", "CAM-S1", *args, truth_dir=tmp_path) as sim:
        with dock.config_path.open("a") as f:
            f.write(f'[cameras]\nusbip = ["{sim.address}"]\n[batch]\ncustody_only_interval_s = 1\n')
        dock.enroll("CAM-S1")
        dock.exercise("EX-S", win, "CAM-S1")
        log = tmp_path / "daemon.log"
        daemon = subprocess.Popen(
            [CLI, "--config", str(dock.config_path), "daemon", "--rescan", "0.3"], stderr=log.open("ab")
        )
        try:
            deadline = time.monotonic() + 180
            while len(_stay_entries(tmp_path / "bucket")) < 3 and time.monotonic() < deadline:
                time.sleep(0.3)
        finally:
            daemon.terminate()
            daemon.wait(60)
        stays = _stay_entries(tmp_path / "bucket")
        assert len(stays) == 3, log.read_text()[-3000:]
        assert {s["code"] for s in stays} == {"operational", "outside_window"} and {s["camera"] for s in stays} == {
            "CAM-S1"
        }
        assert {r["id"] for r in sim.truth} == {s["recording"] for s in stays}  # nothing erased, all still there
    proc = dock.cli("verify", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert all(b["recordings"] == 0 for b in json.loads(proc.stdout)["batches"])
