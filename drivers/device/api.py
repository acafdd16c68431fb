"""The one camera seam: what the pipeline and the service use of a docked camera, whatever carries it.

Two devices implement it, structurally (python-fido2's one ``CtapDevice`` seam per transport):
``camera.Camera`` speaks the wire protocol over USB, USB/IP or serial, and
``massstorage.MassStorageCamera`` reads a mounted volume. Each module checks, at import and under
``mypy --strict``, that its class satisfies :class:`CameraDevice`, so a method added here that one of
them lacks is a type error, not a ``cast`` and an ``AttributeError`` at the first docking.

Only what a docking, an inventory or the daemon calls is here: the wire camera's ``call``, firmware
and vendor commands stay on ``Camera`` (firmware goes over the wire only).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, Self

from bodycam.drivers.protocol import dockauth as da
from bodycam.drivers.protocol import messages as m


@dataclass(frozen=True, slots=True)
class ClockReading:
    """The camera's clock against the dock's, measured at the midpoint of one round trip."""

    camera_time: float  # seconds since the epoch, camera clock
    dock_time: float  # seconds since the epoch, dock clock (the reference)
    round_trip_s: float
    #: the camera's clock epoch while it was read (protocol revision 2); None: a camera without epochs
    epoch: int | None = None
    #: False when the camera's clock cannot be trusted (RTC reset: it reads 1970, or says so)
    valid: bool = True

    @property
    def offset_s(self) -> float:
        """Camera minus dock: subtract it from a camera timestamp to get dock (true) time."""
        return self.camera_time - self.dock_time


class DeviceLink(Protocol):
    """Where a camera is reached, as reports and custody name it (``usbip``, ``serial``, ``mass-storage``...)."""

    @property
    def kind(self) -> str: ...

    @property
    def address(self) -> str: ...


class CameraDevice(Protocol):
    """One docked camera. :meth:`open` first, then :meth:`authenticate`; not thread-safe.

    Every method raises a ``BodycamError`` (drivers/errors.py) on failure: ``DeviceError`` carries the
    camera's status, ``AuthenticationError`` an impostor or an unenrolled camera.
    """

    @property
    def transport(self) -> DeviceLink: ...

    @property
    def name(self) -> str:
        """``camera SERIAL`` once identified, else where it is reached: for one-line errors."""
        ...

    @property
    def identity(self) -> m.Identity:
        """What :meth:`open` identified (ProtocolError before it)."""
        ...

    @property
    def protocol(self) -> int:
        """The negotiated protocol revision; 0 for a mounted volume (it speaks none). Below 2 the camera
        cannot pair nor refuse a rogue host, and the pairing operations below are not offered."""
        ...

    @property
    def authenticated(self) -> bool: ...

    @property
    def auth_nonce(self) -> bytes | None:
        """The dock's challenge in this link's authentication: a paired camera binds the dock's proof to it."""
        ...

    def open(self) -> m.Identity: ...

    def authenticate(self, enrolled_key: bytes | None) -> None: ...

    def status(self) -> m.CameraStatus: ...

    def clock(self) -> ClockReading: ...

    def set_clock(self, now: float | None = None) -> tuple[ClockReading, ClockReading]:
        """Set the camera's clock to the dock's; the readings before and after."""
        ...

    def recordings(self) -> list[m.RecordingInfo]: ...

    def iter_read(
        self, recording: m.RecordingInfo, start: int = ..., span: int = ..., *, lend: int = ...
    ) -> Iterator[bytes | memoryview]:
        """The recording from ``start`` to its end, in chunks of bounded size.

        ``lend=0`` (the default): every chunk is the caller's to keep. ``lend=N``: a chunk may be a view
        of the device's reused receive buffers, intact only while the generator yields its next N
        chunks (the caller holds at most N at once; :meth:`Camera.iter_read`); a device without
        reused buffers yields chunks of their own either way.
        """
        ...

    def erase(self, recording_id: int, sha256: bytes) -> None:
        """Erase one recording; the camera refuses unless ``sha256`` is the one it listed."""
        ...

    # -- pairing to the force's docks (protocol revision 2 only) ---------------------------------
    def dock_challenge(self) -> da.DockChallenge: ...

    def pair(self, authority_key: bytes, proof: da.DockProof) -> None: ...

    def prove(self, proof: da.DockProof) -> None: ...

    def send_revocations(self, revocations: bytes) -> int: ...

    def refuses_unproven_host(self) -> bool: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...
