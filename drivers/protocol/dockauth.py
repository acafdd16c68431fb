"""Mutual authentication (protocol revision 2): the dock proves to a paired camera that it is a dock of
the camera's force. Pure codecs and checks on bytes, shared by the dock (``device``) and the camera
(``virtual``), specified byte by byte in docs/protocol.md "Dock proof and pairing".

Three signed statements, each with its own domain-separation prefix so no signature can be taken
for another kind: the **dock certificate** (the force's dock authority binds a dock id to a dock
key for a validity period), the **revocation list** (the authority names revoked dock ids, with a
sequence number that only grows) and the **proof** (the dock's key signs the camera's fresh
challenge, the dock's own challenge, the camera's serial, the dock's time and the certificate, so
it is good for one link and one camera only). A fourth, the **vendor reset**, is signed by the
camera vendor's key and unpairs a camera after erasing its footage.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bodycam.drivers.errors import ProtocolError
from bodycam.drivers.protocol.frames import Status
from bodycam.drivers.protocol.messages import MAX_SHORT_TEXT, _check_time, _Reader, _text, unpack_exact

CERT_CONTEXT = b"bodycam-dock-cert-v1\x00"
REVOCATION_CONTEXT = b"bodycam-dock-revocations-v1\x00"
PROOF_CONTEXT = b"bodycam-dock-proof-v1\x00"
VENDOR_RESET_CONTEXT = b"bodycam-vendor-reset-v1\x00"
CERT_FORMAT = 1
REVOCATION_FORMAT = 1
MAX_DOCK_ID = 64  # bytes of a dock id (ASCII letters, digits, '-', '_', '.')
MAX_REVOKED = 256  # dock ids in one revocation list
#: the longest certificate: format, serial number, validity, key, dock id, signature
MAX_CERT = 1 + 8 + 8 + 8 + 32 + 1 + MAX_DOCK_ID + 64
DOCK_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
CHALLENGE_SIZE = 32


def _dock_id(value: str, what: str) -> str:
    if not DOCK_ID_PATTERN.fullmatch(value):
        raise ProtocolError(f"{what}: dock id {value!r} is not 1-64 ASCII letters, digits, '-', '_' or '.'")
    return value


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Pure Ed25519 (RFC 8032) verification; False for a bad key or signature, never an exception."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


# -- the dock certificate -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DockCertificate:
    """``dock_id`` may hold ``dock_key`` from ``not_before_us`` to ``not_after_us`` (both inclusive)."""

    serial_number: int
    not_before_us: int
    not_after_us: int
    dock_key: bytes
    dock_id: str
    signature: bytes = b""
    _S: ClassVar[struct.Struct] = struct.Struct("<BQqq32s")

    def tbs(self) -> bytes:
        """The certificate body: what the authority signs after CERT_CONTEXT."""
        head = self._S.pack(CERT_FORMAT, self.serial_number, self.not_before_us, self.not_after_us, self.dock_key)
        return head + _text(self.dock_id, MAX_DOCK_ID, "dock_id")

    def to_bytes(self) -> bytes:
        return self.tbs() + self.signature

    def signed_by(self, authority: Ed25519PrivateKey) -> DockCertificate:
        sig = authority.sign(CERT_CONTEXT + self.tbs())
        return DockCertificate(
            self.serial_number, self.not_before_us, self.not_after_us, self.dock_key, self.dock_id, sig
        )

    def verifies(self, authority_key: bytes) -> bool:
        return verify_signature(authority_key, self.signature, CERT_CONTEXT + self.tbs())

    def valid_at(self, time_us: int) -> bool:
        return self.not_before_us <= time_us <= self.not_after_us

    @property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.to_bytes()).digest()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        what = "dock certificate"
        if len(data) > MAX_CERT:
            raise ProtocolError(f"{what}: {len(data)} bytes, the limit is {MAX_CERT}")
        r = _Reader(data, what)
        fmt, serial_number, not_before, not_after, key = r.unpack("<BQqq32s", "header")
        if fmt != CERT_FORMAT:
            raise ProtocolError(f"{what}: format {fmt}, this code reads {CERT_FORMAT}")
        _check_time(not_before, what, "not_before")
        _check_time(not_after, what, "not_after")
        dock_id = _dock_id(r.text("dock_id", MAX_DOCK_ID), what)
        signature = r.take(64, "signature")
        r.end()
        return cls(serial_number, not_before, not_after, key, dock_id, signature)


# -- the revocation list --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RevocationList:
    """Dock ids the force has revoked; a camera keeps the list with the highest ``sequence``."""

    sequence: int
    issued_us: int
    revoked: tuple[str, ...]
    signature: bytes = b""
    _S: ClassVar[struct.Struct] = struct.Struct("<BIqH")

    def tbs(self) -> bytes:
        ids = sorted(set(self.revoked))
        if len(ids) > MAX_REVOKED:
            raise ValueError(f"{len(ids)} revoked dock ids, the limit is {MAX_REVOKED}")
        head = self._S.pack(REVOCATION_FORMAT, self.sequence, self.issued_us, len(ids))
        return head + b"".join(_text(i, MAX_DOCK_ID, "dock_id") for i in ids)

    def to_bytes(self) -> bytes:
        return self.tbs() + self.signature

    def signed_by(self, authority: Ed25519PrivateKey) -> RevocationList:
        ids = tuple(sorted(set(self.revoked)))
        unsigned = RevocationList(self.sequence, self.issued_us, ids)
        return RevocationList(self.sequence, self.issued_us, ids, authority.sign(REVOCATION_CONTEXT + unsigned.tbs()))

    def verifies(self, authority_key: bytes) -> bool:
        return verify_signature(authority_key, self.signature, REVOCATION_CONTEXT + self.tbs())

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        what = "revocation list"
        r = _Reader(data, what)
        fmt, sequence, issued, count = r.unpack("<BIqH", "header")
        if fmt != REVOCATION_FORMAT:
            raise ProtocolError(f"{what}: format {fmt}, this code reads {REVOCATION_FORMAT}")
        _check_time(issued, what, "issued")
        if count > MAX_REVOKED:
            raise ProtocolError(f"{what}: {count} dock ids, the limit is {MAX_REVOKED}")
        ids = tuple(_dock_id(r.text("dock_id", MAX_DOCK_ID), what) for _ in range(count))
        if list(ids) != sorted(set(ids)):
            raise ProtocolError(f"{what}: dock ids are not in strictly ascending byte order")
        signature = r.take(64, "signature")
        r.end()
        return cls(sequence, issued, ids, signature)


# -- the proof ------------------------------------------------------------------------------------
def proof_message(serial: str, camera_challenge: bytes, dock_challenge: bytes, time_us: int, cert: bytes) -> bytes:
    """What the dock key signs: good for this camera, this link (both challenges) and this certificate."""
    if len(camera_challenge) != CHALLENGE_SIZE or len(dock_challenge) != CHALLENGE_SIZE:
        raise ValueError("challenges are 32 bytes")
    return (
        PROOF_CONTEXT
        + _text(serial, MAX_SHORT_TEXT, "serial")
        + camera_challenge
        + dock_challenge
        + struct.pack("<q", time_us)
        + hashlib.sha256(cert).digest()
    )


def vendor_reset_message(serial: str, camera_challenge: bytes) -> bytes:
    return VENDOR_RESET_CONTEXT + _text(serial, MAX_SHORT_TEXT, "serial") + camera_challenge


@dataclass(frozen=True, slots=True)
class DockChallenge:
    """DOCK_CHALLENGE answer: the camera's pairing state and a fresh challenge for this link."""

    paired: bool
    authority_key: bytes  # 32 zero bytes while unpaired
    challenge: bytes
    revocation_sequence: int
    _S: ClassVar[struct.Struct] = struct.Struct("<B32s32sI")

    def to_bytes(self) -> bytes:
        return self._S.pack(int(self.paired), self.authority_key, self.challenge, self.revocation_sequence)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        state, authority, challenge, sequence = unpack_exact(cls._S, data, "DOCK_CHALLENGE response")
        if state not in (0, 1):
            raise ProtocolError(f"DOCK_CHALLENGE response: 'paired' is {state}, not 0 or 1")
        return cls(bool(state), authority, challenge, sequence)


@dataclass(frozen=True, slots=True)
class DockProof:
    """DOCK_PROVE request (and the tail of PAIR): the dock's time, its signature, its certificate."""

    time_us: int
    signature: bytes
    certificate: bytes
    _S: ClassVar[struct.Struct] = struct.Struct("<q64s")

    def to_bytes(self) -> bytes:
        return self._S.pack(self.time_us, self.signature) + self.certificate

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        what = "dock proof"
        if len(data) < cls._S.size or len(data) > cls._S.size + MAX_CERT:
            raise ProtocolError(f"{what}: {len(data)} bytes, expected {cls._S.size}..{cls._S.size + MAX_CERT}")
        time_us, signature = cls._S.unpack_from(data)
        _check_time(time_us, what, "time")
        return cls(time_us, signature, bytes(data[cls._S.size :]))


@dataclass(frozen=True, slots=True)
class PairRequest:
    """PAIR request: the force's dock authority (raw Ed25519 public key), then a DockProof under it."""

    authority_key: bytes
    proof: DockProof

    def to_bytes(self) -> bytes:
        return self.authority_key + self.proof.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        if len(data) < 32:
            raise ProtocolError("PAIR request: payload ends inside field 'authority_key'")
        return cls(bytes(data[:32]), DockProof.from_bytes(data[32:]))


def make_proof(
    key: Ed25519PrivateKey,
    certificate: bytes,
    serial: str,
    camera_challenge: bytes,
    dock_challenge: bytes,
    time_us: int,
) -> DockProof:
    """The dock's proof for one camera on one link."""
    message = proof_message(serial, camera_challenge, dock_challenge, time_us, certificate)
    return DockProof(time_us, key.sign(message), certificate)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a camera concludes from a proof: ``status`` is a protocol Status code (0 = accepted)."""

    status: int
    certificate: DockCertificate | None = None


def check_proof(
    proof: DockProof,
    *,
    authority_key: bytes,
    serial: str,
    camera_challenge: bytes,
    dock_challenge: bytes,
    not_before_floor_us: int,
    revoked: frozenset[str] = frozenset(),
) -> Verdict:
    """The camera's checks, in the order docs/protocol.md gives them (status codes from protocol.Status).

    ``not_before_floor_us`` is the latest time the camera knows has passed (its high-water mark);
    the certificate must be valid at max(that, the proof's time).
    """
    try:
        cert = DockCertificate.from_bytes(proof.certificate)
    except ProtocolError:
        return Verdict(Status.BAD_REQUEST)
    if not cert.verifies(authority_key):
        return Verdict(Status.DOCK_REJECTED)
    if cert.dock_id in revoked:
        return Verdict(Status.DOCK_REVOKED, cert)
    message = proof_message(serial, camera_challenge, dock_challenge, proof.time_us, proof.certificate)
    if not verify_signature(cert.dock_key, proof.signature, message):
        return Verdict(Status.DOCK_REJECTED, cert)
    if not cert.valid_at(max(proof.time_us, not_before_floor_us)):
        return Verdict(Status.CERT_EXPIRED, cert)
    return Verdict(Status.OK, cert)
