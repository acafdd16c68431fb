"""Issue 8 item 9: enrolment is not trust on first use by copy-paste.

Real parts: virtual cameras served over USB/IP by ``sim serve`` (one genuine, one that presents the
genuine key but cannot sign with it), the CLI, stock ``ssh-keygen -l`` for fingerprints.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

from bodycam.drivers.virtual.server import device_key_hex

from .dock import make_dock
from .sims import SimProcess


def ssh_keygen_fingerprint(key_hex: str, tmp_path: Path) -> str:
    raw = bytes.fromhex(key_hex)
    blob = b"".join(len(p).to_bytes(4, "big") + p for p in (b"ssh-ed25519", raw))
    path = tmp_path / "device_key.pub"
    path.write_text(f"ssh-ed25519 {base64.b64encode(blob).decode()} camera\n")
    out = subprocess.run(["ssh-keygen", "-l", "-f", str(path)], capture_output=True, text=True, check=True).stdout
    return out.split()[1]


def test_the_not_enrolled_error_points_to_the_vendor_sheet_not_the_presented_key(tmp_path: Path) -> None:
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    with SimProcess("usbip", "CAM-NEW", truth_dir=tmp_path) as sim:
        presented = sim.info["device_key"]
        proc = dock.cli("ingest", "--once", "--usbip", sim.address)
        assert proc.returncode == 1, proc.stderr
        assert "is not enrolled" in proc.stderr and "vendor's enrolment sheet" in proc.stderr, proc.stderr
        assert presented not in proc.stderr + proc.stdout  # nothing to copy-paste into --key
        assert ssh_keygen_fingerprint(presented, tmp_path) in proc.stderr
        devices = json.loads(dock.cli("devices", "--json", "--usbip", sim.address).stdout)
        (cam,) = devices["cameras"]
        assert cam["device_key_fingerprint"] == ssh_keygen_fingerprint(presented, tmp_path)
        assert cam["enrolled"] is False


def test_devices_reports_enrolled_only_after_auth_succeeds(tmp_path: Path) -> None:
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    dock.enroll("CAM-REAL", "CAM-FAKE")  # the vendor's keys for both serials
    with (
        SimProcess("usbip", "CAM-REAL", truth_dir=tmp_path) as real,
        SimProcess("usbip", "CAM-FAKE", "--fault", "impostor", truth_dir=tmp_path) as fake,
    ):
        proc = dock.cli("devices", "--json", "--usbip", real.address, "--usbip", fake.address)
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        enrolled = {c["serial"]: c["enrolled"] for c in doc["cameras"]}
        assert enrolled == {"CAM-REAL": True, "CAM-FAKE": False}, doc
        assert any("could not prove" in p["error"] for p in doc["problems"]), doc["problems"]
        table = dock.cli("devices", "--usbip", real.address, "--usbip", fake.address)
        fake_row = next(line for line in table.stdout.splitlines() if line.startswith("CAM-FAKE"))
        assert " NO " in fake_row and "SHA256:" in fake_row, table.stdout


def test_re_enrolling_with_another_key_needs_replace_and_leaves_a_custody_entry(tmp_path: Path) -> None:
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    first, second = device_key_hex("CAM-R1"), device_key_hex("CAM-R2")
    assert dock.cli("enroll", "CAM-R1", "--key", first).returncode == 0
    assert dock.cli("enroll", "CAM-R1", "--key", first).returncode == 0  # the same key again: nothing changes
    refused = dock.cli("enroll", "CAM-R1", "--key", second)
    assert refused.returncode == 2 and "--replace" in refused.stderr and len(refused.stderr.splitlines()) == 1
    journal = dock.journal()
    try:
        assert journal.enrolled_key("CAM-R1") == bytes.fromhex(first)
    finally:
        journal.close()
    replaced = dock.cli("enroll", "CAM-R1", "--key", second, "--replace")
    assert replaced.returncode == 0, replaced.stderr
    entries = [e for e in dock.custody() if e["event"] == "enrolled"]
    assert [(e["device_key"], e.get("replaces")) for e in entries] == [(first, None), (second, first)], entries
