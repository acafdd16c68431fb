"""A USB/IP peer that answers a byte at a time cannot hold discovery (review of the camera side).

Each read from a USB/IP server had its own 3 s timeout and the exchange none: a server (or a camera behind
a hub host) that sends its device list a byte every second, each in time, held ``devices``, ``ingest
--once`` and the daemon's scan for the whole list (328 bytes for one camera: five and a half minutes; 64
devices: a day), and the daemon's watchdog, fed by the scan's loop, then had systemd restart it again and
again. Real parts: a virtual camera served over USB/IP, behind the fault proxy, and the CLI.
"""

from __future__ import annotations

import time
from pathlib import Path

from .dock import make_dock
from .faultproxy import FaultProxy
from .sims import serve, spec

BOUND_S = 90.0  # far above what the fixed dock takes on a loaded machine; the unfixed one takes 328 s


def test_a_device_list_sent_a_byte_a_second_is_refused_in_bounded_time(tmp_path: Path) -> None:
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    with serve("usbip", spec("SIM-TRKL", recordings=1, training=0, size=1024)) as sim:
        host, port = sim.address.rsplit(":", 1)
        with FaultProxy((host, int(port))) as proxy:
            proxy.set(trickle_ms=1000)
            started = time.monotonic()
            proc = dock.cli("devices", "--json", "--usbip", f"{proxy.host}:{proxy.port}", timeout=BOUND_S + 30)
            took = time.monotonic() - started
    assert took < BOUND_S, f"devices took {took:.0f} s"
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "did not answer" in lines[0] and "in time" in lines[0], lines[0]
