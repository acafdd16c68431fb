"""C2SP signed notes (Ed25519) and tlog-checkpoints: how the dock signs the head of its log.

Why this format: a checkpoint is three short text lines any party can read, verify with Go's
``golang.org/x/mod/sumdb/note`` or our :func:`open_note`, and hand to a witness (C2SP tlog-witness)
unchanged. The verifier key string ``<name>+<hex key id>+<base64(0x01 || public key)>`` is what
``note.NewVerifier`` reads, so an auditor can pin the dock's log key in one line.

Parsing is strict and bounded (a note from a bucket is hostile input): UTF-8 without control
characters other than newline, canonical base64, at most :data:`MAX_SIGNATURES` signature lines and
:data:`MAX_NOTE` bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bodycam.drivers.errors import IntegrityError

ED25519 = 0x01  # signature type byte (C2SP signed-note)
DASH = "\u2014 "  # em dash and space open a signature line
MAX_NOTE = 64 * 1024
MAX_SIGNATURES = 100  # what Go's note.Open accepts; the spec asks for at least 16
MAX_ORIGIN = 255
MAX_TREE_SIZE = (1 << 63) - 1


def _raw(key: Ed25519PublicKey) -> bytes:
    """The key's 32 bytes (``public_bytes_raw``: ``serialization``'s encodings would import every key type's
    module at start-up, issue 14)."""
    return key.public_bytes_raw()


def valid_name(name: str) -> bool:
    """A key name: non-empty, no Unicode space, no '+'."""
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def key_id(name: str, key: Ed25519PublicKey) -> bytes:
    """First four bytes of SHA-256(name || 0x0A || 0x01 || public key)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + _raw(key)).digest()[:4]


def verifier_key(name: str, key: Ed25519PublicKey) -> str:
    """``<name>+<hex key id>+<base64(0x01 || public key)>``, what Go's ``note.NewVerifier`` reads."""
    if not valid_name(name):
        raise ValueError(f"note key name {name!r} is empty or holds a space or '+'")
    return f"{name}+{key_id(name, key).hex()}+{base64.b64encode(bytes([ED25519]) + _raw(key)).decode()}"


@dataclass(frozen=True, slots=True)
class Verifier:
    """A signed note's verifier key: its name and key id (what a signature line names) and the key itself."""

    name: str
    key_id: bytes
    key: Ed25519PublicKey = field(compare=False)


def parse_verifier_key(vkey: str) -> Verifier:
    """A verifier key string; IntegrityError (one line saying which part is wrong) otherwise."""
    parts = vkey.strip().split("+", 2)
    if len(parts) != 3 or not valid_name(parts[0]) or len(parts[1]) != 8:
        raise IntegrityError("a log verifier key must read <name>+<8 hex digits>+<base64 key>")
    name, hex_id, b64 = parts
    try:
        kid = bytes.fromhex(hex_id)
        raw = _b64decode(b64)
    except ValueError:
        raise IntegrityError(f"log verifier key {name}: its key id or key is not hex/base64") from None
    if len(raw) != 33 or raw[0] != ED25519:
        raise IntegrityError(f"log verifier key {name}: only Ed25519 keys (type 0x01, 32 bytes) are supported")
    key = Ed25519PublicKey.from_public_bytes(raw[1:])
    if key_id(name, key) != kid:
        raise IntegrityError(f"log verifier key {name}: the key id does not match the key")
    return Verifier(name, kid, key)


def _b64decode(text: str) -> bytes:
    """Strict standard base64: the round trip must give the same text (no stray padding bits)."""
    try:
        data = base64.b64decode(text, validate=True)
    except binascii.Error as err:
        raise ValueError(str(err)) from None
    if base64.b64encode(data).decode() != text:
        raise ValueError("non-canonical base64")
    return data


def sign(text: str, name: str, key: Ed25519PrivateKey) -> bytes:
    """The signed note: ``text`` (ending in a newline), a blank line, one Ed25519 signature line."""
    if not text.endswith("\n") or not valid_name(name):
        raise ValueError("a note's text must end with a newline and its key name hold no space or '+'")
    _check_text(text.encode())
    sig = key_id(name, key.public_key()) + key.sign(text.encode())
    return f"{text}\n{DASH}{name} {base64.b64encode(sig).decode()}\n".encode()


def _check_text(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise IntegrityError("signed note is not valid UTF-8") from None
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise IntegrityError("signed note holds a control character")
    return text


def split_note(msg: bytes) -> tuple[str, list[str]]:
    """A signed note's text (final newline included) and its signature lines (without newlines),
    unverified but bounded: at most :data:`MAX_NOTE` bytes and :data:`MAX_SIGNATURES` lines. Raises
    IntegrityError."""
    if len(msg) > MAX_NOTE:
        raise IntegrityError(f"signed note is larger than {MAX_NOTE} bytes")
    whole = _check_text(msg)
    split = whole.rfind("\n\n")
    if split < 0:
        raise IntegrityError("signed note has no blank line before its signatures")
    text, sigs = whole[: split + 1], whole[split + 2 :]
    if not sigs.endswith("\n"):
        raise IntegrityError("signed note's signatures do not end with a newline")
    lines = sigs[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise IntegrityError(f"signed note has more than {MAX_SIGNATURES} signatures")
    return text, lines


def open_note(msg: bytes, verifiers: Sequence[Verifier]) -> tuple[str, list[str]]:
    """The note's text and the names of the known keys whose signatures verified.

    Unknown signers are ignored; a known signer whose signature fails rejects the whole note, and so
    does a note that no known signer signed (C2SP signed-note). Raises IntegrityError.
    """
    text, lines = split_note(msg)
    known = {(v.name, v.key_id): v for v in verifiers}
    verified: list[str] = []
    for line in lines:
        name, sig = signature_line(line)
        v = known.get((name, sig[:4]))
        if v is None:
            continue
        try:
            v.key.verify(sig[4:], text.encode())
        except InvalidSignature:
            raise IntegrityError(f"signed note: the signature by {name} does not verify") from None
        if name not in verified:
            verified.append(name)
    if not verified:
        raise IntegrityError("signed note carries no signature by a trusted key")
    return text, verified


def signature_line(line: str) -> tuple[str, bytes]:
    """The key name and decoded payload (key id first) of one signature line. Raises IntegrityError."""
    if not line.startswith(DASH):
        raise IntegrityError("signed note: a signature line does not start with an em dash and a space")
    name, _, b64 = line[len(DASH) :].partition(" ")
    try:
        sig = _b64decode(b64)
    except ValueError:
        raise IntegrityError(f"signed note: the signature by {name!r} is not canonical base64") from None
    if not valid_name(name) or len(sig) < 5:
        raise IntegrityError("signed note: malformed signature line")
    return name, sig


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """C2SP tlog-checkpoint body: origin, tree size, root hash (no extension lines)."""

    origin: str
    size: int
    root: bytes

    def text(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"


def parse_checkpoint(text: str, *, origin: str | None = None) -> Checkpoint:
    """Checkpoint lines, strictly (decimal size without leading zeros, canonical base64 32-byte hash).

    Extension lines are refused: the dock writes none, and they are not auditable. ``origin``, when
    given, must match. Raises IntegrityError.
    """
    lines = text.split("\n")
    if len(lines) != 4 or lines[3] != "":
        raise IntegrityError("checkpoint must be exactly three lines: origin, tree size, root hash")
    name, size_text, root_text = lines[:3]
    if not name or len(name) > MAX_ORIGIN:
        raise IntegrityError("checkpoint origin is empty or too long")
    if origin is not None and name != origin:
        raise IntegrityError(f"checkpoint is for log {name!r}, not {origin!r}")
    if not size_text.isascii() or not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise IntegrityError(f"checkpoint tree size {size_text[:32]!r} is not a decimal number")
    size = int(size_text) if len(size_text) <= 19 else MAX_TREE_SIZE + 1
    if size > MAX_TREE_SIZE:
        raise IntegrityError("checkpoint tree size is beyond 2**63 - 1")
    try:
        root = _b64decode(root_text)
    except ValueError:
        root = b""
    if len(root) != 32:
        raise IntegrityError("checkpoint root hash is not the base64 of 32 bytes")
    return Checkpoint(name, size, root)


def sign_checkpoint(cp: Checkpoint, name: str, key: Ed25519PrivateKey) -> bytes:
    return sign(cp.text(), name, key)


def open_checkpoint(msg: bytes, verifiers: Sequence[Verifier], *, origin: str | None = None) -> Checkpoint:
    """A verified checkpoint from its signed-note bytes. Raises IntegrityError."""
    text, _ = open_note(msg, verifiers)
    return parse_checkpoint(text, origin=origin)
