"""A mass-storage camera whose disk hangs in the kernel costs only its own bay (review of the dock side).

The daemon's scan looked at each entry of ``cameras.mass_storage_dir`` with ``lstat`` in its own loop, the
loop that discovers and starts every bay, seals batches on schedule and feeds the watchdog: a volume whose
reads never return held all of it for as long as it hung. The scan now looks through probe threads it
leaves behind (agent/service/mounts.py). Real parts: a FUSE mount that never answers (tests/hungfs.py),
a virtual camera over USB/IP and a mass-storage volume beside the hung one, the shipped daemon.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

from bodycam.agent.service.mounts import MountWatch
from bodycam.drivers.virtual.massstorage_writer import write_volume
from bodycam.drivers.virtual.scenario import make_recordings

from .dock import make_dock, window
from .hungfs import hung_mount
from .test_daemon import Camera, Notifications, start_daemon, status

MiB = 1024 * 1024


def _signed(bucket: Path) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for path in bucket.rglob("manifest.json"):
        for rec in json.loads(path.read_text())["recordings"]:
            out.setdefault(rec["camera_serial"], set()).add(rec["recording_id"])
    return out


def test_a_hung_volume_is_left_to_its_probe_and_the_scan_goes_on(tmp_path: Path) -> None:
    """The scan returns within its wait with the answering volume, whatever the hung one does."""
    media = tmp_path / "media"
    (media / "CAM-HUNG").mkdir(parents=True)
    write_volume(media / "CAM-OK", "CAM-OK", make_recordings(1, 1, 1024, window(), serial="CAM-OK"))
    with hung_mount(media / "CAM-HUNG"):
        watch = MountWatch(media)
        returned = threading.Event()
        result: list[tuple[list[Path], list[Path]]] = []
        scanner = threading.Thread(target=lambda: (result.append(watch.scan()), returned.set()), daemon=True)
        scanner.start()
        assert returned.wait(60), "the scan waited on the hung volume"
        assert result[0] == ([media / "CAM-OK"], [])  # never seen answering: not a bay, not a hung one


def test_a_hung_mass_storage_camera_holds_no_other_bay_and_no_seal(tmp_path: Path) -> None:
    """A hung volume in the watched directory, a good volume beside it and a good USB/IP camera: both good
    cameras' training footage is signed, the watchdog is fed, status answers and SIGTERM stops the daemon.
    Before the fix the scan waited in lstat on the hung volume: no bay ever started, nothing was signed,
    the watchdog starved and SIGTERM was not heard."""
    win = window()
    media = tmp_path / "media"
    (media / "CAM-HUNG").mkdir(parents=True)
    good = Camera("usbip", "CAM-NET", win, tmp_path)
    recs = make_recordings(3, 2, 2 * MiB, win, serial="CAM-DISK")
    bucket = tmp_path / "bucket"
    dock = make_dock(tmp_path / "dock", bucket.as_uri())
    with dock.config_path.open("a") as f:
        f.write(f'[cameras]\nusbip = ["{good.address}"]\nmass_storage_dir = "{media}"\n[batch]\nmax_age_s = 1\n')
    dock.enroll(good.serial, "CAM-DISK")
    dock.exercise("EX-HUNG", win, good.serial, "CAM-DISK")
    notify = Notifications(tmp_path / "notify.sock")
    log = tmp_path / "daemon.log"
    with hung_mount(media / "CAM-HUNG"):
        good.dock()
        staging = tmp_path / "staging" / "CAM-DISK"
        write_volume(staging, "CAM-DISK", recs)
        staging.rename(media / "CAM-DISK")
        daemon = start_daemon(dock, tmp_path / "notify.sock", log)
        try:
            want = {good.serial: set(good.training), "CAM-DISK": {r.id for r in recs if str(r.category) == "training"}}
            deadline = time.monotonic() + 180
            while _signed(bucket) != want and time.monotonic() < deadline:
                time.sleep(0.5)
            assert _signed(bucket) == want, f"{_signed(bucket)}\n{log.read_text()[-3000:]}"
            assert {b["camera"] for b in status(dock)["bays"]} == {good.serial, "CAM-DISK"}
            fed = time.monotonic()
            while notify.count("WATCHDOG=1", since=fed) < 3 and time.monotonic() < fed + 60:
                time.sleep(0.2)
            assert notify.count("WATCHDOG=1", since=fed) >= 3
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                code = daemon.wait(60)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(10)
                raise AssertionError("the daemon did not stop:\n" + log.read_text()[-3000:]) from None
            finally:
                notify.close()
                good.undock()
    assert code == 0, log.read_text()[-2000:]
