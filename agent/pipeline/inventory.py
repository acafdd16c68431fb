"""Which cameras are reachable now, and what each says about itself (``bodycam-sync devices``)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

from bodycam.drivers import transport as transports
from bodycam.drivers.device.api import CameraDevice
from bodycam.drivers.device.camera import Camera, key_fingerprint
from bodycam.drivers.errors import AuthenticationError, BodycamError, TransportError
from bodycam.drivers.transport.base import Transport

LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CameraSummary:
    """One camera as ``devices``/``status`` show it."""

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
    enrolled: bool | None  # True only once the camera proved (AUTH) it holds the enrolled key
    device_key_fingerprint: str  # of the key the camera presents: compare with the enrolment sheet
    #: "paired" (refuses hosts that are not docks of its force), "unpaired", or "unsupported"
    #: (protocol revision 1: it cannot refuse anyone); "?" when the camera would not say
    pairing: str = "?"

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Problem:
    """A camera that was asked for or found but could not be used, and why (with the fix)."""

    address: str
    error: str
    explicit: bool  # named by the operator (an error), or met by automatic discovery (a warning)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def open_transports(
    usbip: Sequence[str],
    serial: Sequence[str],
    *,
    discover: bool = True,
    problems: list[Problem] | None = None,
) -> list[Transport]:
    """Open every camera at the given addresses (errors propagate: the operator asked for them),
    plus, with ``discover``, those attached to this dock (best effort).

    Addresses given without discovery are the operator's explicit choice (``--usbip``,
    ``--serial-port``): a USB/IP server there that exports no camera is a TransportError naming it,
    not an empty list. Cameras discovery finds but cannot open go to ``problems`` (else a warning).
    """
    found: list[Transport] = []
    try:
        for address in usbip:
            opened = transports.open_usbip(address)
            if not opened and not discover:
                raise TransportError(f"no camera at USB/IP server {address}: it exports no supported camera")
            found.extend(opened)
        for path in serial:
            found.append(transports.open_serial(path))
        if discover:
            known = {t.address for t in found}
            failed: list[tuple[str, str]] = []
            found.extend(t for t in transports.discover_local(failed) if t.address not in known)
            for address, error in failed:
                if problems is None:
                    LOG.warning("%s", error)
                else:
                    problems.append(Problem(address, error, explicit=False))
    except BaseException:
        for t in found:
            t.close()
        raise
    return found


@contextlib.contextmanager
def opened_cameras(
    usbip: Sequence[str],
    serial: Sequence[str],
    *,
    discover: bool = True,
    timeout: float = 5.0,
    problems: list[Problem] | None = None,
) -> Iterator[list[Camera]]:
    cams = [Camera(t, timeout=timeout) for t in open_transports(usbip, serial, discover=discover, problems=problems)]
    try:
        yield cams
    finally:
        for cam in cams:
            cam.close()


def summarize(
    camera: CameraDevice, enrolled: Callable[[str], bytes | None] | None = None, problems: list[Problem] | None = None
) -> CameraSummary:
    """What the camera says about itself; ``enrolled`` only after it proved it holds the enrolled key.

    A camera that presents its enrolled key but fails AUTH (an impostor replaying the public key)
    reads as not enrolled, and the reason goes to ``problems``.
    """
    ident = camera.open()
    status = camera.status()
    clock = camera.clock()
    is_enrolled: bool | None = None
    if enrolled is not None:
        key = enrolled(ident.serial)
        is_enrolled = False
        if key is not None and key == ident.device_key:
            try:
                camera.authenticate(key)
                is_enrolled = True
            except AuthenticationError as err:
                if problems is not None:
                    address = f"{camera.transport.kind}:{camera.transport.address}"
                    problems.append(Problem(address, f"camera at {address}: {err}", explicit=False))
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
        device_key_fingerprint=key_fingerprint(ident.device_key),
        pairing=_pairing(camera),
    )


def _pairing(camera: CameraDevice) -> str:
    """Whether the camera can refuse a host that is not a dock of its force (docs/protocol.md)."""
    if camera.protocol < 2:
        return "unsupported"
    try:
        return "paired" if camera.dock_challenge().paired else "unpaired"
    except BodycamError as err:
        LOG.warning("%s would not say whether it is paired: %s", camera.name, err)
        return "?"


@dataclass
class Survey:
    """The cameras found at the addresses looked at, and the problems met on the way."""

    cameras: list[CameraSummary]
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        """False when an address the operator named gave no camera."""
        return not any(p.explicit for p in self.problems)


def survey(
    usbip: Sequence[str],
    serial: Sequence[str],
    *,
    discover: bool = True,
    enrolled: Callable[[str], bytes | None] | None = None,
) -> Survey:
    """Summaries of every reachable camera, and the problems of those that did not answer.

    A camera at an explicit address (``discover`` off) that fails is an explicit problem (the
    command fails); one found by discovery is a problem shown with its hint.
    """
    result = Survey([], [])
    with opened_cameras(usbip, serial, discover=discover, problems=result.problems) as cams:
        for cam in cams:
            try:
                result.cameras.append(summarize(cam, enrolled, result.problems))
            except BodycamError as err:
                address = f"{cam.transport.kind}:{cam.transport.address}"
                result.problems.append(Problem(address, f"camera at {address}: {err}", explicit=not discover))
    return result
