"""USB/IP hosts that say nothing cannot stall the daemon's scan (review of the daemon).

The daemon asked each configured USB/IP address for its device list one after another, in the loop that
also feeds systemd's watchdog: each silent host (it accepts and never answers: a hung usbipd, a hub host
half gone) cost its whole timeout, so twenty of them held every scan, and every other bay's discovery,
for a minute, well past the watchdog's 30 s (systemd then restarts the daemon, again and again). The
probes now run side by side. Real parts: the daemon, a virtual camera over USB/IP, listening sockets.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from bodycam.agent.config import parse
from bodycam.drivers.errors import ConfigError

from .dock import CLI, iso_window, make_dock, window
from .sims import SimProcess

SILENT = 20
BOUND_S = 45.0  # the scan took 20 x 3 s before the camera was even looked at; side by side, one 3 s


def test_twenty_silent_usbip_hosts_do_not_hold_the_scan(tmp_path: Path) -> None:
    win = window()
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    silent = [socket.create_server(("127.0.0.1", 0)) for _ in range(SILENT)]  # accepted by the kernel, then nothing
    log = tmp_path / "daemon.log"
    args = ("--recordings", "1", "--training", "1", "--size", "4096", "--exercise", iso_window(win))
    try:
        with SimProcess("usbip", "CAM-PRB1", *args, truth_dir=tmp_path) as sim:
            addresses = [f"127.0.0.1:{s.getsockname()[1]}" for s in silent] + [sim.address]
            with dock.config_path.open("a") as f:
                f.write("[cameras]\nusbip = [" + ", ".join(f'"{a}"' for a in addresses) + "]\n")
            dock.enroll("CAM-PRB1")
            dock.exercise("EX-PRB", win, "CAM-PRB1")
            daemon = subprocess.Popen(
                [CLI, "--config", str(dock.config_path), "daemon", "--rescan", "0.3"], stderr=log.open("ab")
            )
            try:
                deadline = time.monotonic() + 60
                while "daemon ready" not in log.read_text() and time.monotonic() < deadline:
                    time.sleep(0.1)
                ready = time.monotonic()
                synced = None
                while synced is None and time.monotonic() - ready < BOUND_S:
                    proc = dock.cli("status", "--json", timeout=30)
                    if proc.returncode == 0:
                        bays = json.loads(proc.stdout)["bays"]
                        if any(b["camera"] == "CAM-PRB1" and b["state"] == "synced" for b in bays):
                            synced = time.monotonic() - ready
                    time.sleep(0.3)
                assert synced is not None, f"not synced {BOUND_S:.0f} s after ready: {log.read_text()[-2000:]}"
            finally:
                daemon.terminate()
                daemon.wait(60)
    finally:
        for s in silent:
            s.close()


def test_a_config_with_more_camera_addresses_than_a_scan_probes_in_two_rounds_is_refused() -> None:
    """The probes run 16 at a time, but cameras.usbip had no bound: a config listing hundreds of silent
    hosts held each scan for a round of timeouts per 16, past the watchdog again. Now more than 32
    addresses (or serial ports) is one line naming the key; 32 are taken."""
    base = {"dock_id": "dock-1", "state_dir": "/tmp/x"}
    many = [f"127.0.0.1:{3240 + i}" for i in range(33)]
    assert len(parse({**base, "cameras": {"usbip": many[:32]}}).usbip) == 32
    for key, value in (("usbip", many), ("serial", [f"/dev/ttyACM{i}" for i in range(33)])):
        with pytest.raises(ConfigError, match=rf"'cameras\.{key}'.* lists 33 entries; a dock takes at most 32"):
            parse({**base, "cameras": {key: value}})
