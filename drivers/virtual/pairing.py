"""The camera side of mutual authentication (protocol revision 2): pairing, the dock proof, revocation,
the vendor reset. What a camera keeps across connections (its force's dock authority, the newest
revocation list, the latest time it knows has passed) and what it keeps for one connection (the AUTH
nonce, its own challenge, whether this host has proven it is a dock of the force).

The virtual camera keeps all of it in memory: a restarted ``sim serve`` is a camera fresh from the
factory (docs/decisions.md).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bodycam.drivers.errors import ProtocolError
from bodycam.drivers.protocol import dockauth as da
from bodycam.drivers.protocol.frames import NEEDS_DOCK, Command, Status

COMMANDS = frozenset(
    {
        Command.DOCK_CHALLENGE,
        Command.DOCK_PROVE,
        Command.PAIR,
        Command.UNPAIR,
        Command.REVOCATIONS,
        Command.VENDOR_RESET,
    }
)


@dataclass
class Pairing:
    """One camera's pairing state; ``handle`` answers the revision-2 commands."""

    serial: str
    vendor_key: Ed25519PublicKey
    erase_all: Callable[[], int]
    accept_any_host: bool = False  # the fault: pairs, but never refuses an unproven host
    authority: bytes | None = None
    revocations: da.RevocationList | None = None
    high_water_us: int = 0  # the latest time (µs) the camera has evidence of; 0 = none yet
    high_water_at: float = 0.0  # the camera's monotonic clock when high_water_us was recorded
    # -- this connection --
    auth_nonce: bytes | None = None
    challenge: bytes | None = None
    proven_dock: str | None = None

    @property
    def paired(self) -> bool:
        return self.authority is not None

    def new_connection(self) -> None:
        self.auth_nonce = self.challenge = self.proven_dock = None

    def on_auth(self, nonce: bytes) -> None:
        """AUTH answered: its nonce is the dock's challenge on this link; any earlier proof is void."""
        self.auth_nonce, self.proven_dock = nonce, None

    def refuses(self, command: Command) -> bool:
        return self.paired and self.proven_dock is None and command in NEEDS_DOCK and not self.accept_any_host

    def floor_us(self) -> int:
        """The latest time the camera knows has passed: the high-water mark plus its monotonic time since."""
        if not self.high_water_us:
            return 0
        return self.high_water_us + int((time.monotonic() - self.high_water_at) * 1e6)

    def _advance(self, time_us: int) -> None:
        if time_us > self.floor_us():
            self.high_water_us, self.high_water_at = time_us, time.monotonic()

    def _forget_force(self) -> None:
        """Unpaired: the authority, its revocations and the time its docks vouched for all go.

        The high-water mark goes too: time evidence is only as good as the authority whose docks gave
        it, and a stranger who paired a fresh camera with a far-future time must not lock the force's
        docks out after a vendor reset.
        """
        self.authority = self.revocations = self.proven_dock = None
        self.high_water_us, self.high_water_at = 0, 0.0

    def _revoked(self) -> frozenset[str]:
        return frozenset(self.revocations.revoked) if self.revocations else frozenset()

    def _take_challenge(self) -> bytes | None:
        challenge, self.challenge = self.challenge, None  # one proof per challenge, accepted or not
        return challenge

    # -- commands ---------------------------------------------------------------------------------
    def handle(self, command: Command, payload: bytes, authenticated: bool) -> tuple[int, bytes]:
        """Answer one revision-2 command; a malformed payload raises ProtocolError (BAD_REQUEST)."""
        if command == Command.DOCK_CHALLENGE:
            self.challenge, self.proven_dock = os.urandom(da.CHALLENGE_SIZE), None
            sequence = self.revocations.sequence if self.revocations else 0
            answer = da.DockChallenge(self.paired, self.authority or bytes(32), self.challenge, sequence)
            return Status.OK, answer.to_bytes()
        if command == Command.REVOCATIONS:
            return self._revocations(payload)
        if command == Command.VENDOR_RESET:
            return self._vendor_reset(payload)
        if not authenticated or self.auth_nonce is None:
            return Status.NOT_AUTHENTICATED, b""
        if command == Command.PAIR:
            return self._pair(da.PairRequest.from_bytes(payload))
        if command == Command.DOCK_PROVE:
            return self._prove(da.DockProof.from_bytes(payload))
        # UNPAIR (the caller has already refused it to an unproven host of a paired camera)
        if not self.paired:
            return Status.NOT_PAIRED, b""
        self._forget_force()
        return Status.OK, b""

    def _check(self, proof: da.DockProof, authority: bytes) -> da.Verdict:
        challenge = self._take_challenge()
        if challenge is None or self.auth_nonce is None:
            return da.Verdict(Status.DOCK_REJECTED)
        return da.check_proof(
            proof,
            authority_key=authority,
            serial=self.serial,
            camera_challenge=challenge,
            dock_challenge=self.auth_nonce,
            not_before_floor_us=self.floor_us(),
            revoked=self._revoked(),
        )

    def _pair(self, req: da.PairRequest) -> tuple[int, bytes]:
        if self.paired:
            self._take_challenge()
            return Status.ALREADY_PAIRED, b""
        verdict = self._check(req.proof, req.authority_key)
        if verdict.status != Status.OK:
            return verdict.status, b""
        self.authority, self.revocations = req.authority_key, None
        self._advance(req.proof.time_us)
        return Status.OK, b""  # paired; this host still proves itself with DOCK_PROVE like any dock

    def _prove(self, proof: da.DockProof) -> tuple[int, bytes]:
        if self.authority is None:
            self._take_challenge()
            return Status.NOT_PAIRED, b""
        verdict = self._check(proof, self.authority)
        if verdict.status != Status.OK or verdict.certificate is None:
            return verdict.status, b""
        self.proven_dock = verdict.certificate.dock_id
        self._advance(proof.time_us)
        return Status.OK, b""

    def _revocations(self, payload: bytes) -> tuple[int, bytes]:
        if self.authority is None:
            return Status.NOT_PAIRED, b""
        incoming = da.RevocationList.from_bytes(payload)
        if not incoming.verifies(self.authority):
            return Status.DOCK_REJECTED, b""
        current = self.revocations.sequence if self.revocations else 0
        if incoming.sequence > current:
            self.revocations = incoming
            self._advance(incoming.issued_us)
            if self.proven_dock in incoming.revoked:
                self.proven_dock = None
        return Status.OK, (self.revocations.sequence if self.revocations else 0).to_bytes(4, "little")

    def _vendor_reset(self, payload: bytes) -> tuple[int, bytes]:
        if len(payload) != 64:
            raise ProtocolError("VENDOR_RESET request: wrong payload size")
        challenge = self._take_challenge()
        if challenge is None or not da.verify_signature(
            _raw(self.vendor_key), payload, da.vendor_reset_message(self.serial, challenge)
        ):
            return Status.DOCK_REJECTED, b""
        erased = self.erase_all()  # the footage goes first, so a stranger never pairs a camera that holds any
        self._forget_force()
        return Status.OK, erased.to_bytes(4, "little")


def _raw(key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)
