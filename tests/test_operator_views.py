"""What an armourer sees: true progress, and normal actions (eject, Ctrl-C) that are not errors (issue 11)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from .dock import CLI, Dock, iso_window, make_dock, window
from .sims import SimProcess
from .test_daemon import Camera, status

MiB = 1024 * 1024


def slow_camera(serial: str, win: tuple[float, float], root: Path) -> Camera:
    cam = Camera("usbip", serial, win, root)
    cam.args = ["--recordings", "1", "--training", "1", "--size", str(64 * MiB), "--exercise", iso_window(win),
                "--fault", "stall-ms=400"]  # fmt: skip  # some 10 MiB/s: slow enough to eject and resume mid-way
    return cam


def bay_of(dock: Dock, serial: str) -> dict[str, Any] | None:
    if not (dock.config.state_dir / "run" / "control.sock").exists():
        return None
    found = [b for b in status(dock)["bays"] if b["camera"] == serial]
    return found[0] if found else None


def wait_bay(dock: Dock, serial: str, log: Path, ok: Any, within: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        bay = bay_of(dock, serial)
        if bay is not None and ok(bay):
            return bay
        time.sleep(0.1)
    raise AssertionError(f"bay of {serial} never got there: {bay_of(dock, serial)}\n{log.read_text()[-3000:]}")


def loud_lines(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith(("ERROR", "WARNING", "CRITICAL"))]


def test_eject_resume_and_ctrl_c_show_true_progress_and_log_no_error(tmp_path: Path) -> None:
    win = window()
    first, second = slow_camera("CAM-OP1", win, tmp_path), slow_camera("CAM-OP2", win, tmp_path)
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    with dock.config_path.open("a") as f:
        f.write(f'[cameras]\nusbip = ["{first.address}", "{second.address}"]\n')
    dock.enroll(first.serial, second.serial)
    dock.exercise("EX-OP", win, first.serial, second.serial)
    first.dock()
    log = tmp_path / "daemon.log"
    daemon = subprocess.Popen(
        [CLI, "--config", str(dock.config_path), "daemon", "--rescan", "0.3"], stderr=log.open("ab")
    )
    try:
        wait_bay(dock, first.serial, log, lambda b: b["state"] == "syncing" and b["bytes_done"] >= 30 * MiB)
        assert dock.cli("eject", "--camera", first.serial).returncode == 0
        ejected = wait_bay(dock, first.serial, log, lambda b: b["state"] == "ejected")
        # an ejected bay keeps its bar (how far it got) but no stale speed or ETA, and no error
        assert 0 < ejected["bytes_done"] < ejected["bytes_total"], ejected
        assert ejected["rate_bytes_per_s"] == 0 and ejected["eta_s"] is None, ejected
        assert ejected["last_error"] is None and "eject" in ejected["note"], ejected
        watch = dock.cli("watch", "--count", "1")
        assert watch.returncode == 0 and "ejected" in watch.stdout and "last error" not in watch.stdout, watch.stdout
        assert dock.cli("sync", "--camera", first.serial).returncode == 0
        # the resumed session reads the parts already in the bucket again only to check them:
        # they show as done, but while it is only re-checking them there is no speed to show
        rechecking: list[dict[str, Any]] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            bay = bay_of(dock, first.serial)
            if bay is None:
                continue
            if bay["state"] == "syncing" and bay["bytes_resumed"] > 0 and bay["bytes_done"] <= bay["bytes_resumed"]:
                rechecking.append(bay)
                assert bay["rate_bytes_per_s"] == 0 and bay["eta_s"] is None, bay
            if bay["state"] == "syncing" and bay["bytes_done"] > bay["bytes_resumed"] > 0:
                assert bay["last_error"] is None, bay
            if bay["state"] == "synced":
                break
            time.sleep(0.05)
        assert rechecking, f"never saw the resumed session re-check its parts:\n{log.read_text()[-3000:]}"
        synced = wait_bay(dock, first.serial, log, lambda b: b["state"] == "synced")
        assert synced["bytes_total"] == 0 and synced["rate_bytes_per_s"] == 0 and synced["eta_s"] is None, synced
        assert synced["last_error"] is None and synced["note"] is None, synced
        watch = dock.cli("watch", "--count", "1")
        assert "last error" not in watch.stdout and "0 B/" not in watch.stdout, watch.stdout
        # Ctrl-C on the daemon mid-transfer: a checkpoint, not an error
        second.dock()
        wait_bay(dock, second.serial, log, lambda b: b["state"] == "syncing" and b["bytes_done"] > 0)
        daemon.send_signal(signal.SIGINT)
        assert daemon.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(60)
        first.undock()
        second.undock()
    text = log.read_text()
    assert "stopped by eject" in text and "stopped by shutdown" in text, text[-3000:]
    assert loud_lines(log) == [], "\n".join(loud_lines(log))


def test_ingest_prints_each_error_once(tmp_path: Path) -> None:
    win = window()
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    with SimProcess("usbip", "CAM-NOTENR", "--recordings", "2", "--training", "1", "--size", "4096",
                    "--exercise", iso_window(win), truth_dir=tmp_path) as sim:  # fmt: skip  # never enrolled
        proc = dock.cli("ingest", "--once", "--usbip", sim.address)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "CAM-NOTENR" in line]
    assert len(errors) == 1, proc.stderr
