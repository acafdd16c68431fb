"""Run one virtual camera on a medium: the library behind ``bodycam-sync sim serve``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bodycam.drivers.models import DEFAULT_MODEL, CameraModel
from bodycam.drivers.virtual.camera import VirtualCamera, public_bytes, sim_device_key
from bodycam.drivers.virtual.faults import Faults
from bodycam.drivers.virtual.scenario import iso, make_recordings, parse_window

if TYPE_CHECKING:
    from bodycam.drivers.virtual.usbip_device import UsbipCameraServer


@dataclass(frozen=True, slots=True)
class SimSpec:
    serial: str
    model: CameraModel = DEFAULT_MODEL
    recordings: int = 5
    training: int = 3
    size: int = 4 * 1024 * 1024
    exercise: str | None = None
    clock_drift_s: float = 0.0
    faults: Faults = field(default_factory=Faults)


def build_camera(spec: SimSpec, now: float | None = None) -> VirtualCamera:
    window = parse_window(spec.exercise, now if now is not None else time.time())
    recs = make_recordings(spec.recordings, spec.training, spec.size, window, serial=spec.serial)
    return VirtualCamera(spec.serial, recs, model=spec.model, clock_offset_s=spec.clock_drift_s, faults=spec.faults)


def truth(camera: VirtualCamera) -> list[dict[str, object]]:
    """The ground truth of what the camera holds, whatever its metadata or faults claim."""
    return [
        {
            "id": rec.id,
            "name": rec.name,
            "size": rec.size,
            "sha256": camera.content.sha256(rec).hex(),
            "category": str(rec.category),
            "start": iso(rec.true_start),
            "end": iso(rec.true_end),
        }
        for rec in sorted(camera.recordings.values(), key=lambda r: r.id)
    ]


def usbip_server(camera: VirtualCamera, *, host: str = "127.0.0.1", port: int = 0) -> UsbipCameraServer:
    """A USB/IP server presenting ``camera`` with its model's VID:PID and strings (not started)."""
    from bodycam.drivers.virtual.usbip_device import UsbipCameraServer

    return UsbipCameraServer(
        camera,
        vid=camera.model.vid,
        pid=camera.model.pid,
        manufacturer="Bodycam Project",
        product=camera.model.name,
        serial=camera.serial,
        host=host,
        port=port,
    )


def device_key_hex(serial: str) -> str:
    return public_bytes(sim_device_key(serial)).hex()


def write_truth(camera: VirtualCamera, path: Path) -> None:
    import json

    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(truth(camera), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
