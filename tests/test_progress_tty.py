"""Progress an operator sees on a terminal (issue 11 item 4): the CLI run with its stderr on a real pty,
stdout a pipe, as in a shell with ``--json > file``. Virtual cameras over USB/IP and a pty."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

from bodycam.agent.formats.sshsig import public_key_line
from bodycam.agent.pipeline import firmware as fw
from bodycam.drivers.protocol.messages import MAX_FIRMWARE_CHUNK
from bodycam.drivers.virtual.camera import sim_vendor_key

from .dock import CLI, Dock, iso_window, make_dock, window
from .sims import SimProcess, serve, spec


def run_on_a_terminal(dock: Dock, *args: str) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pty (a terminal) and stdout on a pipe; returns (code, stdout, tty text)."""
    master, slave = os.openpty()
    seen: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer of the slave has closed it
                return
            if not data:
                return
            seen.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc = subprocess.run(
            [CLI, "--config", str(dock.config_path), *args], stdout=subprocess.PIPE, stderr=slave, timeout=300
        )
    finally:
        os.close(slave)
        reader.join(10)
        os.close(master)
    return proc.returncode, proc.stdout.decode(), b"".join(seen).decode(errors="replace")


def test_firmware_progress_reads_in_units_not_raw_bytes(tmp_path: Path) -> None:
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    (dock.root / "vendor.pub").write_text(public_key_line(sim_vendor_key().public_key()) + "\n")
    image = tmp_path / "fw.img"
    data = bytes(i & 0xFF for i in range(4 * MAX_FIRMWARE_CHUNK + 12_345))
    fw.make_image(image, data, "1.5.0", ("Sentinel BWC-2",), sim_vendor_key())
    with serve("usbip", spec("CAM-FWP")) as sim:
        dock.enroll("CAM-FWP")
        code, out, tty = run_on_a_terminal(
            dock, "firmware", "push", str(image), "--vendor-key", str(dock.root / "vendor.pub"),
            "--usbip", sim.address, "--camera", "CAM-FWP",
        )  # fmt: skip
    assert code == 0, tty
    assert "CAM-FWP: firmware 1.4.0 -> 1.5.0" in out
    assert re.search(r"CAM-FWP: \[#+-*\] \d+\.\d KiB/1\.0 MiB", tty), tty
    assert not re.search(r"\d+/\d+ bytes", tty), tty


def test_verify_shows_progress_on_a_terminal_only_and_never_in_json(tmp_path: Path) -> None:
    win = window()
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    dock.enroll("CAM-VP")
    dock.exercise("EX-VP", win, "CAM-VP")
    with SimProcess("usbip", "CAM-VP", "--recordings", "3", "--training", "2", "--size", str(2 * 1024 * 1024),
                    "--exercise", iso_window(win), truth_dir=tmp_path) as sim:  # fmt: skip
        code, doc = dock.ingest_json(sim.address)
    assert code == 0, doc
    args = ("verify", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers), "--json")
    code, out, tty = run_on_a_terminal(dock, *args)
    assert code == 0, tty
    assert "verify: listing the bucket" in tty, tty  # at once, before the first object is read
    assert re.search(r"verify: \d+\.\d MiB read, \d+ objects listed", tty), tty
    assert json.loads(out)["verified"] is True and "\x1b" not in out  # stdout is the JSON document alone
    piped = dock.cli(*args)
    assert piped.returncode == 0 and "verify:" not in piped.stderr and "\x1b" not in piped.stderr, piped.stderr


def test_a_resumed_ingest_counts_the_parts_already_uploaded_as_done_not_as_speed(tmp_path: Path) -> None:
    """The second ingest re-reads the parts the first one uploaded (to check them); while it does, the
    terminal shows them done but no speed: before the fix it showed their re-reading as transfer rate."""
    mib = 1024 * 1024
    win = window()
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    with SimProcess("usbip", "CAM-RS", "--recordings", "1", "--training", "1", "--size", str(24 * mib),
                    "--exercise", iso_window(win), "--fault", f"unplug-at={16 * mib}", "--fault", "stall-ms=300",
                    truth_dir=tmp_path) as sim:  # fmt: skip
        dock.enroll("CAM-RS")
        dock.exercise("EX-RS", win, "CAM-RS")
        code, first = dock.ingest_json(sim.address)
        assert code == 1 and first["cameras"][0]["errors"], first  # cut after at least one 5 MiB part
        deadline = time.monotonic() + 20
        while True:  # the camera re-appears
            code, _out, tty = run_on_a_terminal(dock, "ingest", "--once", "--usbip", sim.address)
            if code == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert code == 0, tty
    overall = re.findall(r"overall \[[#-]+\] ([\d.]+) (B|KiB|MiB)/[\d.]+ MiB( [\d.]+ \w+/s)?", tty)
    units = {"B": 1, "KiB": 1024, "MiB": mib}
    rechecking = [o for o in overall if 0 < float(o[0]) * units[o[1]] < 4.5 * mib]  # inside the first part
    assert rechecking, tty
    assert all(speed == "" for _done, _unit, speed in rechecking), rechecking
    assert any(speed for _done, _unit, speed in overall), tty  # the fresh bytes after them do show a speed
