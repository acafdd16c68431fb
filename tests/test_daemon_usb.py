"""The daemon's scan of the dock's own USB ports, and one bay (one link) per camera serial.

This machine has no vhci_hcd, so libusb cannot see a virtual camera; the scan takes pyusb's backend as a
seam (``Daemon.usb_backend``, ``discover_local(usb_backend=...)``) and a ``UsbipBackend`` gives it a virtual
camera served over USB/IP through the same ``usb.core.find`` libusb answers on a real dock.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from bodycam.agent.service.daemon import Bay, Daemon
from bodycam.drivers.models import by_name
from bodycam.drivers.transport import discover_local
from bodycam.drivers.transport.usbip_backend import UsbipBackend
from bodycam.drivers.virtual.camera import VirtualCamera
from bodycam.drivers.virtual.pty_device import PtyCameraServer
from bodycam.drivers.virtual.server import SimSpec, build_camera, usbip_server

from .dock import Dock, iso_window, make_dock, window
from .faultproxy import FaultProxy

KiB = 1024


@dataclass
class Twin:
    """One camera reachable two ways, as a Sentinel is on a dock: its vendor USB interface (here served over
    USB/IP) and its CDC-ACM tty (here a pty, linked as udev's ``/dev/bodycam/<serial>-tty``). Each side is
    its own VirtualCamera with the same serial and recordings, so the test sees which one was used."""

    usb: VirtualCamera
    tty: VirtualCamera
    usbip_address: str
    link: Path


def _spec(serial: str, model: str, win: tuple[float, float]) -> SimSpec:
    return SimSpec(serial, model=by_name(model), recordings=3, training=2, size=96 * KiB, exercise=iso_window(win))


@contextmanager
def usb_camera(serial: str, model: str, win: tuple[float, float]) -> Iterator[tuple[VirtualCamera, str]]:
    cam = build_camera(_spec(serial, model, win))
    server = usbip_server(cam)
    host, port = server.start()
    try:
        yield cam, f"{host}:{port}"
    finally:
        server.stop()


@contextmanager
def twin(serial: str, win: tuple[float, float], links: Path) -> Iterator[Twin]:
    with usb_camera(serial, "Sentinel BWC-2", win) as (usb_side, address):
        tty_side = build_camera(_spec(serial, "Sentinel BWC-2", win))
        pty = PtyCameraServer(tty_side, link_path=links.parent / f"usb-Bodycam_{serial}-if00")
        pty.start()
        try:
            link = links / f"{serial}-tty"
            link.symlink_to(pty.link_path or pty.device)
            yield Twin(usb_side, tty_side, address, link)
        finally:
            pty.stop()


def _dock(tmp_path: Path, *serials: str, win: tuple[float, float]) -> Dock:
    dock = make_dock(tmp_path / "dock", (tmp_path / "bucket").as_uri())
    with dock.config_path.open("a") as f:
        f.write("[daemon]\nbay_processes = false\n")  # the backend seam lives in this process
    dock.enroll(*serials)
    dock.exercise("EX-USB", win, *serials)
    return dock


def _daemon(dock: Dock, backend: UsbipBackend, links: Path) -> Daemon:
    daemon = Daemon(dock.config_path)
    daemon.usb_backend = backend
    daemon.udev_links = links
    return daemon


def _sync(daemon: Daemon, serial: str, within: float = 120.0) -> Bay:
    """Scan until the camera's bay has synced (polling: the machine is shared)."""
    deadline = time.monotonic() + within
    while True:
        daemon._scan()
        bays = [b for b in daemon.bays.values() if b.serial == serial or b.address == serial]
        if bays and bays[0].state in ("synced", "error"):
            return bays[0]
        assert time.monotonic() < deadline, [b.to_json() for b in daemon.bays.values()]
        time.sleep(0.2)


def _signed(bucket: Path, serial: str) -> set[int]:
    return {
        r["recording_id"]
        for p in bucket.rglob("manifest.json")
        for r in json.loads(p.read_text())["recordings"]
        if r["camera_serial"] == serial
    }


def test_the_daemon_finds_a_usb_only_camera_through_pyusb_and_ingests_it(tmp_path: Path) -> None:
    """docs/deployment.md said the service does not enumerate USB itself, so a Warden W9 (USB only) on the
    dock's own ports was found by devices and ingest --once but never by the daemon. The scan now asks
    pyusb's usb.core.find for the registry's VID:PIDs: the camera is one bay, keyed by its serial, and its
    in-scope footage is signed."""
    win = window()
    links = tmp_path / "dev-bodycam"
    links.mkdir()
    dock = _dock(tmp_path, "CAM-W9", win=win)
    with usb_camera("CAM-W9", "Warden W9", win) as (cam, address):
        backend = UsbipBackend(address)
        daemon = _daemon(dock, backend, links)
        try:
            assert daemon._present() == {"CAM-W9": "usb"}
            bay = _sync(daemon, "CAM-W9")
            assert (bay.kind, bay.state, bay.serial) == ("usb", "synced", "CAM-W9"), bay.to_json()
            assert len(daemon.bays) == 1
            daemon._publish()
        finally:
            daemon.agent.close()
            backend.close()
    assert _signed(tmp_path / "bucket", "CAM-W9") == {
        r.id for r in cam.recordings.values() if str(r.category) == "training"
    }


def test_a_camera_on_usb_and_on_its_tty_link_is_docked_once_over_usb(tmp_path: Path) -> None:
    """A Sentinel is a USB device and a CDC-ACM tty (udev links /dev/bodycam/<serial>-tty): one scan must
    not make two bays and open the camera twice. One bay per serial, over USB (docs/decisions.md), and the
    tty is never opened; a link already in a bay keeps it (no second session beside a running one)."""
    win = window()
    links = tmp_path / "dev-bodycam"
    links.mkdir()
    dock = _dock(tmp_path, "CAM-SEN", win=win)
    with twin("CAM-SEN", win, links) as cam:
        backend = UsbipBackend(cam.usbip_address)
        daemon = _daemon(dock, backend, links)
        try:
            assert daemon._present() == {"CAM-SEN": "usb"}
            bay = _sync(daemon, "CAM-SEN")
            assert (bay.kind, bay.state) == ("usb", "synced"), bay.to_json()
            daemon._scan()
            assert list(daemon.bays) == ["CAM-SEN"]
            daemon._publish()
            assert cam.tty._read_bytes == 0 and cam.usb._read_bytes > 0  # footage came over USB only

            del daemon.bays["CAM-SEN"]  # a bay that came up on the tty first keeps it
            daemon.bays[str(cam.link)] = Bay(str(cam.link), "serial", state="synced")
            assert daemon._present() == {str(cam.link): "serial"}
        finally:
            daemon.agent.close()
            backend.close()
    expected = {r.id for r in cam.usb.recordings.values() if str(r.category) == "training"}
    assert _signed(tmp_path / "bucket", "CAM-SEN") == expected


def test_ingest_once_discovery_opens_a_camera_on_usb_and_tty_once(tmp_path: Path) -> None:
    """ingest --once's discovery opened a Sentinel twice, by its USB interface and by its tty
    (/dev/serial/by-id/usb-..._<serial>-if00), and pulled it in two sessions. The tty of a camera already
    opened over USB (same USB serial number) is now left alone; another camera's tty is still opened."""
    win = window()
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    (tmp_path / "unused").mkdir()
    with twin("CAM-DUO", win, by_id) as cam, twin("CAM-SOLO", win, tmp_path / "unused") as solo:
        (by_id / "usb-Bodycam_CAM-DUO-if00").symlink_to(cam.link.readlink())  # udev's by-id name for its tty
        cam.link.unlink()  # by-id holds only udev's name
        (by_id / "usb-Bodycam_CAM-SOLO-if00").symlink_to(solo.link.readlink())  # a tty-only camera
        backend = UsbipBackend(cam.usbip_address)
        problems: list[tuple[str, str]] = []
        found = discover_local(problems, by_id=str(by_id), usb_backend=backend)
        try:
            opened = [(t.kind, Path(t.address).name) for t in found]
            assert [kind for kind, _ in opened] == ["usbip", "serial"], opened
            assert opened[1][1] == "usb-Bodycam_CAM-SOLO-if00", opened
            assert problems == []
        finally:
            for t in found:
                t.close()
            backend.close()
    assert cam.tty._read_bytes == 0


def test_a_usb_scan_failure_is_one_log_line_and_the_scan_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A camera gone while its serial number is read (its connection reset mid-enumeration) is one warning,
    not one every scan and never an exception out of the scan loop the watchdog depends on; the tty link of
    another camera is still docked."""
    win = window()
    links = tmp_path / "dev-bodycam"
    links.mkdir()
    dock = _dock(tmp_path, "CAM-GONE", win=win)
    with usb_camera("CAM-GONE", "Warden W9", win) as (_cam, address), twin("CAM-TTY", win, links) as other:
        host, port = address.rsplit(":", 1)
        with FaultProxy((host, int(port))) as proxy:
            proxy.set(cut_after=200)  # the import and its descriptors pass; the serial number read is cut
            backend = UsbipBackend(f"{proxy.host}:{proxy.port}")
            daemon = _daemon(dock, backend, links)
            try:
                with caplog.at_level(logging.WARNING, logger="bodycam.agent.service.daemon"):
                    for _ in range(3):
                        assert daemon._present() == {str(other.link): "serial"}
            finally:
                daemon.agent.close()
                backend.close()
    lines = [r.getMessage() for r in caplog.records if "serial number" in r.getMessage()]
    assert len(lines) == 1, lines
