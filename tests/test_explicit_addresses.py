"""Issue 8 item 10: an address the operator names that yields no camera is an error naming it.

Real parts: an HTTP server where a USB/IP server should be, a virtual camera on a pty whose every
answer is corrupted (``flip-rate=1``), and a serial name in a by-id directory that cannot be opened.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bodycam.drivers.transport import discover_local

from .dock import make_dock
from .sims import SimProcess
from .test_cli import run


@pytest.fixture
def http_address() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def errors(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("bodycam-sync: error:")]


def test_devices_at_an_http_server_is_an_error_naming_it(http_address: str) -> None:
    proc = run("devices", "--usbip", http_address)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    (line,) = errors(proc.stderr)
    assert f"{http_address} is not a USB/IP server" in line, line
    as_json = run("devices", "--json", "--usbip", http_address)
    assert as_json.returncode == 1 and http_address in as_json.stderr


def test_ingest_once_at_an_http_server_is_an_error_naming_it(tmp_path: Path, http_address: str) -> None:
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    proc = dock.cli("ingest", "--once", "--usbip", http_address)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    (line,) = errors(proc.stderr)
    assert f"{http_address} is not a USB/IP server" in line, line


def test_an_explicit_serial_port_whose_camera_fails_is_an_error_naming_it(tmp_path: Path) -> None:
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    with (
        SimProcess("serial", "CAM-BAD", "--fault", "flip-rate=1", truth_dir=tmp_path) as bad,
        SimProcess("usbip", "CAM-OK", truth_dir=tmp_path) as good,
    ):
        port = bad.info["device"]
        proc = dock.cli("devices", "--json", "--serial-port", port, "--usbip", good.address)
        assert proc.returncode == 1, (proc.stdout, proc.stderr)
        doc = json.loads(proc.stdout)
        assert [c["serial"] for c in doc["cameras"]] == ["CAM-OK"]  # the good one is still listed
        (problem,) = doc["problems"]
        assert problem["explicit"] and problem["address"] == f"serial:{port}", problem
        (line,) = errors(proc.stderr)
        assert f"serial:{port}" in line, line
        table = dock.cli("devices", "--serial-port", port)
        assert table.returncode == 1 and "no cameras found" in table.stdout
        assert len(errors(table.stderr)) == 1 and port in table.stderr
        ingest = dock.cli("ingest", "--once", "--serial-port", port)
        assert ingest.returncode == 1 and port in ingest.stderr + ingest.stdout, ingest.stderr


def test_discovery_keeps_a_camera_it_cannot_open_with_the_hint(tmp_path: Path) -> None:
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    (by_id / "usb-Bodycam_CAM-GONE-if00").symlink_to(tmp_path / "ttyACM9")  # udev's name, the device not openable
    problems: list[tuple[str, str]] = []
    assert discover_local(problems, by_id=str(by_id)) == []
    (address, error), *_ = [p for p in problems if "CAM-GONE" in p[0]]
    assert address == f"serial:{by_id}/usb-Bodycam_CAM-GONE-if00"
    assert "'bodycam' (or 'dialout') group" in error, error
