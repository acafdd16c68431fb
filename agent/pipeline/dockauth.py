"""The dock's half of mutual authentication, and the force's dock authority.

A camera of protocol revision 2 pairs with the force on its first docking (the dock provisions the
force's dock authority) and from then on releases, erases or changes nothing for a host that has not
proven, on the current connection, that it holds a key the authority certified. ``secure_link`` is the
step every session runs right after the camera authenticated itself; what it finds goes into custody,
including a camera that cannot refuse rogue hosts (revision 1, or one that answers an unproven host).

The authority side (``init_authority``, ``issue``, ``revoke``) runs where the force keeps its authority
key, never on a dock. Formats: docs/protocol.md "Dock proof and pairing"; choices: docs/decisions.md.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bodycam.agent.config import Config
from bodycam.agent.formats.sshsig import generate_key, load_private_key
from bodycam.agent.formats.times import iso_utc
from bodycam.drivers.device.api import CameraDevice
from bodycam.drivers.errors import AuthenticationError, ConfigError, DeviceError, ProtocolError
from bodycam.drivers.files import read_bounded
from bodycam.drivers.protocol import dockauth as da
from bodycam.drivers.protocol.frames import Status

LOG = logging.getLogger(__name__)


class CustodyFn(Protocol):
    """Records a custody event (``CustodyLog.append``): the event's name and its fields."""

    def __call__(self, event: str, **fields: object) -> object: ...


MAX_FILE = 64 * 1024  # a certificate or revocation list file; both are far smaller
UNPROTECTED_MASS_STORAGE = "mass storage: anyone who mounts the camera can read and delete its footage"
UNPROTECTED_V1 = "protocol revision 1: the camera cannot refuse rogue hosts"
UNPROTECTED_UNPAIRED = "not paired (this dock has no dock certificate): the camera cannot refuse rogue hosts"
UNPROTECTED_OPEN = "answered LIST to a host that had not proven itself: the camera cannot refuse rogue hosts"


def _now_us() -> int:
    return int(time.time() * 1e6)


def _read_small(path: Path, what: str, key: str) -> bytes:
    return read_bounded(
        path, MAX_FILE,
        unreadable=lambda err: ConfigError(
            f"cannot read the {what} {path} (config key '{key}'): {err.strerror or err}"
        ),
        too_large=lambda: ConfigError(f"the {what} {path} is larger than {MAX_FILE} bytes; not a {what}"),
    )  # fmt: skip


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as err:
        raise ConfigError(f"cannot write {path}: {err.strerror or err}") from err


def public_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes_raw().hex()


# -- the dock's credentials ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DockCredentials:
    """A dock's certificate, its proof key, the force's authority and (optionally) the revocation list."""

    certificate: da.DockCertificate
    key: Ed25519PrivateKey
    authority: bytes
    revocations: da.RevocationList | None = None

    @property
    def certificate_bytes(self) -> bytes:
        return self.certificate.to_bytes()

    def proof(self, serial: str, camera_challenge: bytes, dock_challenge: bytes) -> da.DockProof:
        return da.make_proof(self.key, self.certificate_bytes, serial, camera_challenge, dock_challenge, _now_us())


def load_credentials(config: Config) -> DockCredentials | None:
    """``[dock_auth]`` loaded and cross-checked; None when the dock has none. ConfigError names the key."""
    auth = config.dock_auth
    if auth is None:
        return None
    authority = bytes.fromhex(auth.authority)
    try:
        cert = da.DockCertificate.from_bytes(_read_small(auth.certificate, "dock certificate", "dock_auth.certificate"))
    except ProtocolError as err:
        raise ConfigError(f"dock_auth.certificate {auth.certificate}: {err}") from err
    if not cert.verifies(authority):
        raise ConfigError(
            f"dock_auth.certificate {auth.certificate} is not signed by the authority in dock_auth.authority"
        )
    key = load_private_key(config.dock_auth_key_path)
    if key.public_key().public_bytes_raw() != cert.dock_key:
        raise ConfigError(
            f"dock_auth.certificate {auth.certificate} certifies another key than {config.dock_auth_key_path}"
        )
    if cert.dock_id != config.dock_id:
        raise ConfigError(f"dock_auth.certificate is issued to dock {cert.dock_id!r}, this dock is {config.dock_id!r}")
    if not cert.valid_at(_now_us()):
        LOG.warning("dock certificate %s is outside its validity: paired cameras will refuse it", auth.certificate)
    revocations = None
    if auth.revocations is not None and auth.revocations.exists():
        try:
            revocations = da.RevocationList.from_bytes(
                _read_small(auth.revocations, "revocation list", "dock_auth.revocations")
            )
        except ProtocolError as err:
            raise ConfigError(f"dock_auth.revocations {auth.revocations}: {err}") from err
        if not revocations.verifies(authority):
            raise ConfigError(f"dock_auth.revocations {auth.revocations} is not signed by dock_auth.authority")
    return DockCredentials(cert, key, authority, revocations)


# -- one docking ---------------------------------------------------------------------------------------
def secure_link(
    camera: CameraDevice, creds: DockCredentials | None, custody: CustodyFn, *, record_unprotected: bool = True
) -> None:
    """Pair the camera if it is fresh, send it newer revocations, and prove this dock to it.

    Runs after ``camera.authenticate``. ``custody(event, **fields)`` records what happened, including a
    camera that cannot refuse rogue hosts (the dock still works with it). Raises AuthenticationError when
    the camera is paired to the force and this dock cannot prove itself (no certificate, expired,
    revoked, another force). ``record_unprotected=False`` leaves an unprotected camera out of custody
    (a firmware push or clock sync is not a docking whose custody must say so).
    """
    serial = camera.identity.serial
    if not record_unprotected:
        inner = custody

        def custody(event: str, **fields: object) -> object:
            return None if event == "camera_unprotected" else inner(event, **fields)

    if camera.protocol < 2:
        reason = UNPROTECTED_MASS_STORAGE if camera.protocol == 0 else UNPROTECTED_V1
        custody("camera_unprotected", camera=serial, reason=reason)
        return
    if camera.auth_nonce is None:
        raise AuthenticationError(f"camera {serial} must authenticate itself before the dock proves itself")
    state = camera.dock_challenge()
    if not state.paired:
        if creds is None:
            custody("camera_unprotected", camera=serial, reason=UNPROTECTED_UNPAIRED)
            return
        _refused(camera, creds, lambda: camera.pair(creds.authority, _proof(camera, creds, state)))
        custody(
            "paired",
            camera=serial,
            authority=creds.authority.hex(),
            certificate=f"{creds.certificate.serial_number:016x}",
        )
        state = camera.dock_challenge()
    if creds is None:
        raise AuthenticationError(
            f"camera {serial} is paired to a force's dock authority ({state.authority_key.hex()[:16]}...) and "
            "refuses a host without a dock certificate: configure [dock_auth] (docs/configuration.md)"
        )
    if state.authority_key != creds.authority:
        raise AuthenticationError(
            f"camera {serial} is paired to another dock authority ({state.authority_key.hex()[:16]}...) than "
            f"this dock's ({creds.authority.hex()[:16]}...): refused; a dock of that force unpairs it, or the "
            "vendor reset (which erases its footage)"
        )
    if creds.revocations is not None and creds.revocations.sequence > state.revocation_sequence:
        sequence = camera.send_revocations(creds.revocations.to_bytes())
        custody("revocations_sent", camera=serial, sequence=sequence, revoked=len(creds.revocations.revoked))
    if not camera.refuses_unproven_host():
        custody("camera_unprotected", camera=serial, reason=UNPROTECTED_OPEN)
    _refused(camera, creds, lambda: camera.prove(_proof(camera, creds, state)))
    custody(
        "dock_proven",
        camera=serial,
        dock_id=creds.certificate.dock_id,
        certificate=f"{creds.certificate.serial_number:016x}",
        revocation_sequence=max(state.revocation_sequence, creds.revocations.sequence if creds.revocations else 0),
    )


def _proof(camera: CameraDevice, creds: DockCredentials, state: da.DockChallenge) -> da.DockProof:
    assert camera.auth_nonce is not None
    return creds.proof(camera.identity.serial, state.challenge, camera.auth_nonce)


def _refused(camera: CameraDevice, creds: DockCredentials, step: Callable[[], None]) -> None:
    """Run PAIR or DOCK_PROVE; turn the camera's refusal into one line that says what to do."""
    try:
        step()
    except DeviceError as err:
        serial = camera.identity.serial
        cert = creds.certificate
        hints = {
            Status.CERT_EXPIRED: f"this dock's certificate (valid {_iso(cert.not_before_us)} to "
            f"{_iso(cert.not_after_us)}) is not valid at the camera's time; issue a new one with "
            "'bodycam-sync authority issue' where the force keeps its authority key",
            Status.DOCK_REVOKED: f"the force has revoked this dock ({cert.dock_id}); it must not take footage",
            Status.DOCK_REJECTED: "the camera rejected this dock's proof or certificate",
            Status.ALREADY_PAIRED: "the camera is already paired",
        }
        hint = hints.get(Status(err.status)) if err.status in Status._value2member_map_ else None
        if hint is None:
            raise
        raise AuthenticationError(f"camera {serial} refused this dock: {hint}", err.status) from err


def _iso(time_us: int) -> str:
    return iso_utc(time_us / 1e6, "seconds")


# -- the force's dock authority --------------------------------------------------------------------------
def init_authority(path: Path) -> str:
    """A new authority key (OpenSSH Ed25519, 0600, never on a dock); returns its public key in hex."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    generate_key(path, "bodycam-dock-authority")
    return public_hex(load_private_key(path))


def init_dock_key(path: Path, dock_id: str) -> str:
    """The dock's proof key (OpenSSH Ed25519, 0600); returns its public key in hex for 'authority issue'."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    generate_key(path, f"{dock_id} dock-auth")
    return public_hex(load_private_key(path))


def issue(
    authority_path: Path, dock_id: str, dock_key_hex: str, days: float, out: Path, *, now: float | None = None
) -> da.DockCertificate:
    """Certify ``dock_key_hex`` for ``dock_id`` from now for ``days``; write the certificate to ``out``."""
    if not da.DOCK_ID_PATTERN.fullmatch(dock_id):
        raise ConfigError(f"dock id {dock_id!r} must be 1-64 ASCII letters, digits, '-', '_' or '.'")
    try:
        dock_key = bytes.fromhex(dock_key_hex)
    except ValueError:
        dock_key = b""
    if len(dock_key) != 32:
        raise ConfigError("--dock-key must be 64 hex digits (printed by 'bodycam-sync keys dock-auth')")
    if not 0 < days <= 3660:
        raise ConfigError("--days must be more than 0 and at most 3660")
    authority = load_private_key(authority_path)
    start = now if now is not None else time.time()
    cert = da.DockCertificate(
        secrets.randbits(63), int((start - 300) * 1e6), int((start + days * 86400) * 1e6), dock_key, dock_id
    ).signed_by(authority)
    _write_atomic(out, cert.to_bytes())
    return cert


def revoke(
    authority_path: Path, list_path: Path, dock_ids: list[str], *, now: float | None = None
) -> da.RevocationList:
    """Add ``dock_ids`` to the signed revocation list at ``list_path`` (created if absent; sequence + 1)."""
    authority = load_private_key(authority_path)
    current: tuple[str, ...] = ()
    sequence = 0
    if list_path.exists():
        try:
            old = da.RevocationList.from_bytes(_read_small(list_path, "revocation list", "--list"))
        except ProtocolError as err:
            raise ConfigError(f"revocation list {list_path}: {err}") from err
        if not old.verifies(authority.public_key().public_bytes_raw()):
            raise ConfigError(f"revocation list {list_path} is not signed by the authority key {authority_path}")
        current, sequence = old.revoked, old.sequence
    for dock_id in dock_ids:
        if not da.DOCK_ID_PATTERN.fullmatch(dock_id):
            raise ConfigError(f"dock id {dock_id!r} must be 1-64 ASCII letters, digits, '-', '_' or '.'")
    revoked = tuple(sorted(set(current) | set(dock_ids)))
    if len(revoked) > da.MAX_REVOKED:
        raise ConfigError(f"a revocation list holds at most {da.MAX_REVOKED} dock ids")
    issued = int((now if now is not None else time.time()) * 1e6)
    signed = da.RevocationList(sequence + 1, issued, revoked).signed_by(authority)
    _write_atomic(list_path, signed.to_bytes())
    return signed
