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


def _devices_through_a_trickle(tmp_path: Path, **trickle: int) -> str:
    """``devices --json`` asking a virtual camera behind the fault proxy set to ``trickle``: it must end
    within BOUND_S with exit 1 and one line on stderr, which is returned."""
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    with serve("usbip", spec("SIM-TRKL", recordings=1, training=0, size=1024)) as sim:
        host, port = sim.address.rsplit(":", 1)
        with FaultProxy((host, int(port))) as proxy:
            proxy.set(**trickle)
            started = time.monotonic()
            proc = dock.cli("devices", "--json", "--usbip", f"{proxy.host}:{proxy.port}", timeout=BOUND_S + 30)
            took = time.monotonic() - started
    assert took < BOUND_S, f"devices took {took:.0f} s"
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_a_device_list_sent_a_byte_a_second_is_refused_in_bounded_time(tmp_path: Path) -> None:
    line = _devices_through_a_trickle(tmp_path, trickle_ms=1000)
    assert "did not answer" in line and "in time" in line, line


def test_a_camera_reply_sent_a_byte_a_second_after_the_import_is_refused_in_bounded_time(tmp_path: Path) -> None:
    """Once imported, each URB reply (its 48-byte header, then its payload) was read with a 5 s timeout a
    read: a server trickling a byte a second made one IDENTIFY answer last a minute and a half and a
    1 MiB READ frame twelve days, under every deadline the camera layer sets. A reply now has 5 s as a
    whole once its first byte came: the link is dropped and the camera is said to be gone."""
    line = _devices_through_a_trickle(tmp_path, trickle_ms=1000, trickle_after=700)  # the list and import whole
    assert "stopped" in line or "lost" in line, line
