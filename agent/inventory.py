"""Which cameras are reachable now, and what each says about itself (``bodycam-sync devices``)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bodycam.drivers import transport as transports
from bodycam.drivers.device import Camera
from bodycam.drivers.errors import BodycamError
from bodycam.drivers.transport.base import Transport

LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CameraSummary:
    serial: str
    model: str
    firmware: str
    transport: str
    address: str
    battery_percent: int
    storage_used_bytes: int
    storage_total_bytes: int
    clock_offset_s: float
    recordings: int
    enrolled: bool | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def open_transports(usbip: Sequence[str], serial: Sequence[str], *, discover: bool = True) -> list[Transport]:
    """Open every camera at the given addresses (errors propagate: the operator asked for them),
    plus, with ``discover``, those attached to this dock (best effort)."""
    found: list[Transport] = []
    try:
        for address in usbip:
            found.extend(transports.open_usbip(address))
        for path in serial:
            found.append(transports.open_serial(path))
        if discover:
            known = {t.address for t in found}
            found.extend(t for t in transports.discover_local() if t.address not in known)
    except BaseException:
        for t in found:
            t.close()
        raise
    return found


@contextlib.contextmanager
def opened_cameras(
    usbip: Sequence[str], serial: Sequence[str], *, discover: bool = True, timeout: float = 5.0
) -> Iterator[list[Camera]]:
    cams = [Camera(t, timeout=timeout) for t in open_transports(usbip, serial, discover=discover)]
    try:
        yield cams
    finally:
        for cam in cams:
            cam.close()


def summarize(camera: Camera, enrolled: Callable[[str], bytes | None] | None = None) -> CameraSummary:
    ident = camera.open()
    status = camera.status()
    clock = camera.clock()
    is_enrolled = None if enrolled is None else enrolled(ident.serial) == ident.device_key
    return CameraSummary(
        serial=ident.serial,
        model=ident.model,
        firmware=ident.firmware,
        transport=camera.transport.kind,
        address=camera.transport.address,
        battery_percent=status.battery_percent,
        storage_used_bytes=status.storage_used_bytes,
        storage_total_bytes=status.storage_total_bytes,
        clock_offset_s=round(clock.offset_s, 3),
        recordings=status.recording_count,
        enrolled=is_enrolled,
    )


def survey(
    usbip: Sequence[str],
    serial: Sequence[str],
    *,
    discover: bool = True,
    enrolled: Callable[[str], bytes | None] | None = None,
) -> list[CameraSummary]:
    """Summaries of every reachable camera; a camera that fails to answer is logged and left out."""
    out: list[CameraSummary] = []
    with opened_cameras(usbip, serial, discover=discover) as cams:
        for cam in cams:
            try:
                out.append(summarize(cam, enrolled))
            except BodycamError as err:
                LOG.warning("%s: %s", cam.name, err)
    return out
