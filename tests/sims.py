"""Virtual cameras served over the real media (USB/IP on loopback, a pty) for tests and benchmarks."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bodycam.drivers import transport as transports
from bodycam.drivers.device.camera import Camera
from bodycam.drivers.transport.base import Transport
from bodycam.drivers.virtual.camera import VirtualCamera, public_bytes, sim_device_key
from bodycam.drivers.virtual.faults import Faults
from bodycam.drivers.virtual.pty_device import PtyCameraServer
from bodycam.drivers.virtual.server import SimSpec, build_camera, usbip_server

MEDIA = ("usbip", "serial")


@dataclass
class ServedCamera:
    medium: str
    camera: VirtualCamera
    address: str  # HOST:PORT for usbip, the stable symlink for serial
    unplug: Callable[[], None]

    def connect(self, timeout: float = 5.0) -> Camera:
        transport: Transport
        if self.medium == "usbip":
            found = transports.open_usbip(self.address)
            assert len(found) == 1, f"expected one camera at {self.address}, found {len(found)}"
            transport = found[0]
        else:
            transport = transports.open_serial(self.address)
        return Camera(transport, timeout=timeout)

    def connect_when_back(self, timeout: float = 5.0, within: float = 10.0) -> Camera:
        """Connect again after an unplug (the camera re-appears after a short delay)."""
        deadline = time.monotonic() + within
        while True:
            try:
                cam = self.connect(timeout)
                cam.open()
                return cam
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    @property
    def enrolled_key(self) -> bytes:
        return public_bytes(sim_device_key(self.camera.serial))


@contextmanager
def serve(medium: str, spec: SimSpec | None = None, camera: VirtualCamera | None = None) -> Iterator[ServedCamera]:
    cam = camera or build_camera(spec or SimSpec("SIM-0001"))
    if medium == "usbip":
        server = usbip_server(cam)
        host, port = server.start()
        try:
            yield ServedCamera(medium, cam, f"{host}:{port}", lambda: server.drop_connections() and None)
        finally:
            server.stop()
    else:
        with tempfile.TemporaryDirectory(prefix="bodycam-pty-") as tmp:
            pty = PtyCameraServer(cam, link_path=Path(tmp) / f"usb-Bodycam_{cam.serial}-if00", replug_delay=0.3)
            pty.start()
            try:
                yield ServedCamera(medium, cam, str(pty.link_path), pty.unplug)
            finally:
                pty.stop()


def spec(serial: str = "SIM-0001", faults: Faults | None = None, **kw: object) -> SimSpec:
    return SimSpec(serial, faults=faults or Faults(), **kw)  # type: ignore[arg-type]


class SimProcess:
    """``bodycam-sync sim serve`` in its own process, as a camera is its own device."""

    def __init__(self, medium: str, serial: str, *args: str, truth_dir: Path) -> None:
        import json
        import subprocess
        import sys

        self.truth_path = truth_dir / f"{serial}.truth.json"
        cli = str(Path(sys.executable).with_name("bodycam-sync"))
        cmd = [cli, "sim", "serve", "--transport", medium, "--serial", serial, "--truth", str(self.truth_path), *args]
        if medium == "serial":
            cmd += ["--link", str(truth_dir / f"{serial}.tty")]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"sim serve {serial} failed: {self.proc.stderr.read() if self.proc.stderr else ''}")
        self.info = json.loads(line)
        self.serial = serial
        self.address = self.info.get("address") or self.info.get("link") or self.info["device"]

    @property
    def truth(self) -> list[dict[str, object]]:
        import json

        return list(json.loads(self.truth_path.read_text()))

    def training(self) -> dict[int, str]:
        return {int(str(r["id"])): str(r["sha256"]) for r in self.truth if r["category"] == "training"}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except Exception:
            self.proc.kill()

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: how long ``bounded`` waits: far above what the fixed dock takes on a loaded machine; the unfixed one never returns
BOUND_S = 90.0


def bounded(fn: Callable[[], Any], what: str = "the read") -> BaseException | None:
    """Run ``fn`` in a thread; the exception it ended with (None if it returned). Fails, saying ``what``
    was still running, if it hangs (a camera holding its bay hostage)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            fn()
        except BaseException as err:
            outcome.append(err)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(BOUND_S)
    assert outcome, f"{what} was still running after {BOUND_S:.0f} s: a camera held its bay hostage"
    return outcome[0]
