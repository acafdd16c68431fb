"""C2SP tlog-cosignature ``cosignature/v1`` (Ed25519): a witness's statement about a dock's checkpoint.

Why this format: a cosignature is one more signed-note signature line on the checkpoint, so a cosigned
checkpoint stays a checkpoint any note verifier reads (it ignores signers it does not know), and the
statement is the one witnesses across the transparency ecosystem make: "as of <time>, the largest
consistent tree I have seen for this origin has this root". The signature type byte is 0x04, so a
witness key can never be confused with a log key (type 0x01) even under the same name.

Signed message (C2SP tlog-cosignature): ``cosignature/v1\\n`` + ``time <T>\\n`` + the checkpoint's note
text (its lines, final newline included, no signature lines). Signature line payload: 4-byte key id,
8-byte big-endian timestamp, 64-byte Ed25519 signature. Everything here is bytes in, bytes out.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bodycam.agent.formats import note
from bodycam.drivers.errors import IntegrityError

COSIGNATURE_V1 = 0x04  # signature type byte of an Ed25519 cosigner key (C2SP tlog-cosignature)
HEADER = "cosignature/v1\n"
MAX_TIMESTAMP = (1 << 63) - 1
_SIG = struct.Struct(">4sQ64s")  # key id, timestamp, Ed25519 signature


def _raw(key: Ed25519PublicKey) -> bytes:
    """The key's 32 bytes (``public_bytes_raw``: ``serialization``'s encodings would import every key type's
    module at start-up, issue 14)."""
    return key.public_bytes_raw()


def key_id(name: str, key: Ed25519PublicKey) -> bytes:
    """First four bytes of SHA-256(name || 0x0A || 0x04 || public key)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([COSIGNATURE_V1]) + _raw(key)).digest()[:4]


def verifier_key(name: str, key: Ed25519PublicKey) -> str:
    """``<name>+<hex key id>+<base64(0x04 || public key)>``: the vkey a party pins for a witness."""
    if not note.valid_name(name):
        raise ValueError(f"cosigner name {name!r} is empty or holds a space or '+'")
    return f"{name}+{key_id(name, key).hex()}+{base64.b64encode(bytes([COSIGNATURE_V1]) + _raw(key)).decode()}"


@dataclass(frozen=True, slots=True)
class Cosigner:
    """A witness's public identity: its key name, key id and Ed25519 key."""

    name: str
    key_id: bytes
    key: Ed25519PublicKey = field(compare=False)

    def vkey(self) -> str:
        return verifier_key(self.name, self.key)


def parse_verifier_key(vkey: str) -> Cosigner:
    """A cosigner vkey (type 0x04); IntegrityError naming what is wrong otherwise."""
    parts = vkey.strip().split("+", 2)
    if len(parts) != 3 or not note.valid_name(parts[0]) or len(parts[1]) != 8:
        raise IntegrityError("a witness verifier key must read <name>+<8 hex digits>+<base64 key>")
    name, hex_id, b64 = parts
    try:
        kid = bytes.fromhex(hex_id)
        raw = base64.b64decode(b64, validate=True)
    except ValueError:
        raise IntegrityError(f"witness verifier key {name}: its key id or key is not hex/base64") from None
    if base64.b64encode(raw).decode() != b64:
        raise IntegrityError(f"witness verifier key {name}: the key is not canonical base64")
    if len(raw) != 33 or raw[0] != COSIGNATURE_V1:
        raise IntegrityError(
            f"witness verifier key {name}: only Ed25519 cosignature/v1 keys (type 0x04, 32 bytes) are supported"
        )
    key = Ed25519PublicKey.from_public_bytes(raw[1:])
    if key_id(name, key) != kid:
        raise IntegrityError(f"witness verifier key {name}: the key id does not match the key")
    return Cosigner(name, kid, key)


def message(checkpoint_text: str, timestamp: int) -> bytes:
    """What a cosigner signs: the header line, ``time <T>`` and the checkpoint's note text."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError("a cosignature's timestamp must be within 0 .. 2**63 - 1")
    if not checkpoint_text.endswith("\n"):
        raise ValueError("a checkpoint's note text ends with a newline")
    return f"{HEADER}time {timestamp}\n{checkpoint_text}".encode()


def cosign(checkpoint_text: str, name: str, key: Ed25519PrivateKey, timestamp: int) -> str:
    """One signature line (ending in a newline) cosigning ``checkpoint_text`` at ``timestamp``."""
    if not note.valid_name(name):
        raise ValueError(f"cosigner name {name!r} is empty or holds a space or '+'")
    sig = key.sign(message(checkpoint_text, timestamp))
    payload = _SIG.pack(key_id(name, key.public_key()), timestamp, sig)
    return f"{note.DASH}{name} {base64.b64encode(payload).decode()}\n"


def verify_line(line: str, checkpoint_text: str, cosigners: Sequence[Cosigner]) -> tuple[str, int] | None:
    """``(name, timestamp)`` when ``line`` is a valid cosignature by one of ``cosigners``; None when it
    is by nobody known (other logs' or unknown witnesses' lines are ignored, as the spec says).

    Raises IntegrityError when a known cosigner's line does not verify (someone changed the checkpoint
    or the line).
    """
    name, sig = note.signature_line(line)
    known = {(c.name, c.key_id): c for c in cosigners}
    cosigner = known.get((name, sig[:4]))
    if cosigner is None:
        return None
    if len(sig) != _SIG.size:
        raise IntegrityError(f"cosignature by {name}: {len(sig)} bytes, not {_SIG.size}")
    _, timestamp, raw = _SIG.unpack(sig)
    if timestamp > MAX_TIMESTAMP:
        raise IntegrityError(f"cosignature by {name}: its timestamp is beyond 2**63 - 1")
    try:
        cosigner.key.verify(raw, message(checkpoint_text, timestamp))
    except InvalidSignature:
        raise IntegrityError(f"cosignature by {name} does not verify over this checkpoint") from None
    return name, timestamp


def cosignatures(msg: bytes, cosigners: Sequence[Cosigner]) -> dict[str, int]:
    """The known cosigners whose cosignature on the signed note ``msg`` verifies, with their timestamps.

    The note's own signatures (the log's) are not checked here: open it with :func:`note.open_note` too.
    Raises IntegrityError for a malformed note or a known cosigner's line that fails.
    """
    text, lines = note.split_note(msg)
    found: dict[str, int] = {}
    for line in lines:
        hit = verify_line(line, text, cosigners)
        if hit is not None:
            found[hit[0]] = max(hit[1], found.get(hit[0], 0))
    return found


def add_lines(msg: bytes, lines: Sequence[str]) -> bytes:
    """The signed note ``msg`` with signature ``lines`` appended (duplicates of its own lines dropped),
    within the signed-note bounds. Raises IntegrityError."""
    text, own = note.split_note(msg)
    merged = list(own)
    for line in lines:
        line = line.rstrip("\n")
        note.signature_line(line)
        if line not in merged:
            merged.append(line)
    if len(merged) > note.MAX_SIGNATURES:
        raise IntegrityError(f"a cosigned checkpoint would have more than {note.MAX_SIGNATURES} signatures")
    out = (text + "\n" + "".join(f"{line}\n" for line in merged)).encode()
    if len(out) > note.MAX_NOTE:
        raise IntegrityError(f"a cosigned checkpoint would be larger than {note.MAX_NOTE} bytes")
    return out
