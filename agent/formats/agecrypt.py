"""Streaming age v1 encryption to X25519 or post-quantum hybrid recipients, so footage leaves the dock
readable only by holders of the matching identities and any standard ``age`` tool can open it.

Format: https://age-encryption.org/v1 (c2sp.org/age). A file is a text header that wraps a random 16-byte
file key once per recipient and is authenticated by an HMAC keyed from that file key, followed by a 16-byte
nonce and the payload as ChaCha20-Poly1305 chunks of 64 KiB (STREAM construction: 11-byte big-endian chunk
counter + a flag byte that is 1 only on the final chunk, so truncation and reordering are detected).

Both directions are push-style (``update``/``finalize``) so the agent can pipe camera reads straight into an
upload without holding a whole file in memory. Only ``cryptography`` and ``hashlib`` are used, plus the
small Bech32 codec below (age keys are Bech32 strings).

Streaming caveat: :meth:`Decryptor.update` releases plaintext chunk by chunk, each one authenticated, but
the *file* is only known to be complete and untruncated when :meth:`Decryptor.finalize` returns. Callers
must treat earlier output as provisional (write to a temporary file, rename on success).

What is implemented and what is not:

* X25519 recipients and identities (``age1...`` / ``AGE-SECRET-KEY-1...``), encrypt and decrypt.
* MLKEM768-X25519 hybrid recipients and identities (``age1pq1...`` / ``AGE-SECRET-KEY-PQ-1...``), encrypt
  and decrypt: the ``mlkem768x25519`` stanza is HPKE (RFC 9180) SealBase of the file key with the
  MLKEM768-X25519 KEM of draft-ietf-hpke-pq (X-Wing: ML-KEM-768 and X25519 secrets combined with
  SHA3-256), HKDF-SHA256 and ChaCha20Poly1305, info ``age-encryption.org/mlkem768x25519``. Footage kept
  for years stays secret even if X25519 later falls to a quantum computer. A file is never encrypted to
  both kinds at once (:func:`check_recipients`): its X25519 stanza would undo the hybrid's protection.
* Strict header parsing: exact version line, canonical unpadded base64, 64-column stanza bodies ending in
  a short line, VCHAR-only arguments, exact X25519 stanza shape, all-zero shared secrets refused, header
  MAC verified before any payload is released. Unknown stanza types are skipped (grease); an ``scrypt``
  stanza mixed with others is refused as the spec requires.
* Local limits the spec does not set: a header may be at most :data:`MAX_HEADER_SIZE` bytes and carry at
  most :data:`MAX_STANZAS` stanzas, because every stanza costs public-key work (a scalar multiplication,
  plus an ML-KEM decapsulation for a hybrid one) per identity before the header MAC can be checked;
  hostile input therefore cannot exhaust memory or CPU. Key strings longer than :data:`MAX_KEY_LENGTH` are
  refused before decoding.
* Passphrase (``age -p``) files, decrypt only: ``Decryptor(passphrase=...)`` opens the ``scrypt`` stanza
  (salt of 16 bytes, decimal work factor log2 N, r=8, p=1, salt label ``age-encryption.org/v1/scrypt``),
  which must be the header's only stanza. The work factor is capped at :data:`MAX_SCRYPT_WORK_FACTOR`
  (18, what ``age -p`` writes: 256 MiB), checked before any scrypt work. A wrong passphrase is
  :class:`AgeNoMatchError`. The agent never encrypts with a passphrase.
* ASCII armor (``age -a``, ``-----BEGIN AGE ENCRYPTED FILE-----``), decrypt only, by the streaming strict
  decoder of :mod:`~bodycam.agent.formats.agearmor` (:class:`AgeArmorError`). :class:`Decryptor` tells
  armor from the first bytes (or is told); a binary file's updates never pass through it.
* Not implemented: the tagged (``p256tag``) types, SSH keys, plugins and seeking.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import re
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO, Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from bodycam.agent.formats.agearmor import MAX_WHITESPACE, WHITESPACE, AgeArmorError, ArmorDecoder, is_whitespace
from bodycam.drivers.errors import ConfigError, IntegrityError

__all__ = [
    "CHUNK_SIZE",
    "MAX_HEADER_SIZE",
    "MAX_KEY_LENGTH",
    "MAX_SCRYPT_WORK_FACTOR",
    "MAX_STANZAS",
    "PQ_RECIPIENT_SIZE",
    "AgeArmorError",
    "AgeHeaderError",
    "AgeHmacError",
    "AgeNoMatchError",
    "AgePayloadError",
    "Decryptor",
    "Encryptor",
    "HybridPrivateKey",
    "HybridPublicKey",
    "IdentityKey",
    "RecipientKey",
    "check_recipients",
    "ciphertext_size",
    "decrypt_stream",
    "encrypt_stream",
    "generate_hybrid_identity",
    "generate_identity",
    "is_post_quantum",
    "parse_identity",
    "parse_recipient",
    "read_identities",
    "recipient_of",
]

CHUNK_SIZE: Final = 64 * 1024
"""Plaintext bytes per payload chunk (fixed by the format)."""
TAG_SIZE: Final = 16
ENC_CHUNK_SIZE: Final = CHUNK_SIZE + TAG_SIZE
NONCE_SIZE: Final = 16
FILE_KEY_SIZE: Final = 16
MAX_HEADER_SIZE: Final = 64 * 1024
"""Largest header accepted, MAC line included (ours are ~100 bytes per recipient)."""
MAX_STANZAS: Final = 128
"""Most recipient stanzas accepted; bounds the public-key work done before the MAC can be checked."""
PQ_RECIPIENT_SIZE: Final = 1184 + 32
"""Bytes in an ``age1pq1`` recipient: ML-KEM-768 encapsulation key, then the X25519 point."""
MAX_KEY_LENGTH: Final = 2048
"""Longest key string parsed (an ``age1pq1`` recipient is 1959 characters); longer input is refused unread."""
MAX_SCRYPT_WORK_FACTOR: Final = 18
"""Largest scrypt work factor (log2 N) a passphrase file may ask for: scrypt with r=8 needs 2^(log2 N + 10)
bytes, 256 MiB at 18, which is what stock ``age -p`` writes. age itself stops at 22 (4 GiB), too much for a
dock that also runs eight bays; a higher factor is an :class:`AgeHeaderError` naming this cap."""

_V1_LINE: Final = b"age-encryption.org/v1\n"
_VERSION_PREFIX: Final = b"age-encryption.org/"
_X25519_LABEL: Final = b"age-encryption.org/v1/X25519"
_IDENTITY_HRP: Final = "age-secret-key-"
_RECIPIENT_HRP: Final = "age"
_PQ_IDENTITY_HRP: Final = "age-secret-key-pq-"
_PQ_RECIPIENT_HRP: Final = "age1pq"
_PQ_STANZA: Final = b"mlkem768x25519"
_PQ_LABEL: Final = b"age-encryption.org/mlkem768x25519"
"""HPKE info of the hybrid stanza; also the stanza type's name in the spec."""
_MLKEM_PUBLIC_SIZE: Final = 1184
_MLKEM_CIPHERTEXT_SIZE: Final = 1088
_PQ_ENC_SIZE: Final = _MLKEM_CIPHERTEXT_SIZE + 32
_SCRYPT_LABEL: Final = b"age-encryption.org/v1/scrypt"
_SCRYPT_SALT_SIZE: Final = 16
_WORK_FACTOR: Final = re.compile(rb"0|[1-9][0-9]*")
"""A work factor is decimal without sign or leading zeros (``010``, ``+10``, ``0xa`` are refused)."""
_XWING_LABEL: Final = b"\\.//^\\"
"""The MLKEM768-X25519 (X-Wing) combiner label, the six ASCII bytes backslash . / / ^ backslash."""
_HPKE_SUITE: Final = b"HPKE" + bytes.fromhex("647a00010003")
"""HPKE suite id: KEM MLKEM768-X25519 (0x647a), KDF HKDF-SHA256 (1), AEAD ChaCha20Poly1305 (3)."""
_ZERO_NONCE: Final = bytes(12)
_B64_LINE: Final = re.compile(rb"[A-Za-z0-9+/]*")
_BUFSIZE: Final = 1024 * 1024


class AgeHeaderError(IntegrityError):
    """The age header is malformed, truncated, oversized or not version v1."""


class AgeNoMatchError(IntegrityError):
    """No stanza in the header could be unwrapped by any of the given identities."""


class AgeHmacError(IntegrityError):
    """The file key was recovered but the header MAC does not match: the header was altered."""


class AgePayloadError(IntegrityError):
    """A payload chunk failed authentication, or the payload is truncated or has trailing data."""


# --------------------------------------------------------------------------------------------- Bech32 (BIP173)

_CHARSET: Final = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_CHARSET_REV: Final = {c: i for i, c in enumerate(_CHARSET)}
_GENERATOR: Final = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values: Sequence[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            if (top >> i) & 1:
                chk ^= _GENERATOR[i]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: Sequence[int], from_bits: int, to_bits: int, *, pad: bool) -> list[int] | None:
    acc = bits = 0
    out: list[int] = []
    maxv = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & maxv)
    elif bits >= from_bits or (acc << (to_bits - bits)) & maxv:
        return None  # more than 4 padding bits, or non-zero padding: not canonical
    return out


def _bech32_encode(hrp: str, data: bytes) -> str:
    """Lowercase Bech32 (not Bech32m) of ``data``; no length limit, as age requires."""
    five = _convert_bits(data, 8, 5, pad=True)
    assert five is not None
    values = _hrp_expand(hrp) + five
    mod = _polymod([*values, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(mod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[d] for d in five + checksum)


def _bech32_decode(text: str) -> tuple[str, bytes]:
    """Return (lowercase hrp, data); raise ``ValueError`` naming the defect."""
    if not text.isascii() or not text.isprintable() or " " in text:
        raise ValueError("contains a space or a non-ASCII character")
    if text.lower() != text and text.upper() != text:
        raise ValueError("mixes upper and lower case")
    text = text.lower()
    sep = text.rfind("1")
    if sep < 1 or sep + 7 > len(text):
        raise ValueError("is not Bech32 (no separator, empty prefix or too short)")
    hrp, rest = text[:sep], text[sep + 1 :]
    try:
        values = [_CHARSET_REV[c] for c in rest]
    except KeyError as err:
        raise ValueError(f"has a character outside the Bech32 alphabet: {err.args[0]!r}") from None
    if _polymod(_hrp_expand(hrp) + values) != 1:
        raise ValueError("has a bad Bech32 checksum (typo or truncated)")
    data = _convert_bits(values[:-6], 5, 8, pad=False)
    if data is None:
        raise ValueError("has non-canonical Bech32 padding")
    return hrp, bytes(data)


# ------------------------------------------------------------------------------------------------------- keys


def _describe(text: str) -> str:
    """A short, safe rendering of user input for error messages (never echoes a whole secret key)."""
    return repr(text[:12] + "...") if len(text) > 16 else repr(text)


class HybridPublicKey:
    """An MLKEM768-X25519 (X-Wing) public key: the ML-KEM-768 encapsulation key, then the X25519 point.

    The KEM of draft-ietf-hpke-pq (HPKE KEM id 0x647a): a file key wrapped to it stays secret unless
    *both* ML-KEM-768 and X25519 are broken, so footage kept for years is not exposed to a future
    quantum computer that breaks X25519 alone.
    """

    __slots__ = ("_mlkem", "_raw", "_x25519")

    def __init__(self, raw: bytes) -> None:
        """Raises ``ValueError`` if ``raw`` is not a valid 1216-byte MLKEM768-X25519 public key."""
        if len(raw) != PQ_RECIPIENT_SIZE:
            raise ValueError(f"holds {len(raw)} bytes, expected {PQ_RECIPIENT_SIZE}")
        self._raw = bytes(raw)
        self._mlkem = MLKEM768PublicKey.from_public_bytes(self._raw[:_MLKEM_PUBLIC_SIZE])
        self._x25519 = X25519PublicKey.from_public_bytes(self._raw[_MLKEM_PUBLIC_SIZE:])

    def public_bytes_raw(self) -> bytes:
        return self._raw

    def encapsulate(self) -> tuple[bytes, bytes]:
        """A fresh (shared secret, enc); ``ValueError`` if the X25519 half is a low-order point."""
        ss_pq, ct_pq = self._mlkem.encapsulate()
        ephemeral = X25519PrivateKey.generate()
        ct_x = ephemeral.public_key().public_bytes_raw()
        ss_x = ephemeral.exchange(self._x25519)
        return _xwing_combine(ss_pq, ss_x, ct_x, self._raw[_MLKEM_PUBLIC_SIZE:]), ct_pq + ct_x


class HybridPrivateKey:
    """An MLKEM768-X25519 private key, kept as age keeps it: a 32-byte seed.

    The seed is expanded with SHAKE256 into the 64-byte ML-KEM-768 seed (d || z, FIPS 203) and the
    32-byte X25519 scalar, exactly as filippo.io/hpke-pq does, so the same ``AGE-SECRET-KEY-PQ-1``
    string opens the same files here, in age and in any other implementation.
    """

    __slots__ = ("_mlkem", "_public", "_seed", "_x25519", "_x_public")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError(f"holds {len(seed)} bytes, expected 32")
        expanded = hashlib.shake_256(seed).digest(64 + 32)
        self._seed = bytes(seed)
        self._mlkem = MLKEM768PrivateKey.from_seed_bytes(expanded[:64])
        self._x25519 = X25519PrivateKey.from_private_bytes(expanded[64:])
        self._x_public = self._x25519.public_key().public_bytes_raw()
        self._public = HybridPublicKey(self._mlkem.public_key().public_bytes_raw() + self._x_public)

    def public_key(self) -> HybridPublicKey:
        return self._public

    def private_bytes_raw(self) -> bytes:
        """The 32-byte seed (what the identity string encodes)."""
        return self._seed

    def decapsulate(self, enc: bytes) -> bytes:
        """The shared secret for a 1120-byte ``enc``; ``ValueError`` if its X25519 half is low-order.

        ML-KEM rejects implicitly: a foreign ``enc`` yields an unrelated secret, caught by the AEAD tag.
        """
        ct_pq, ct_x = enc[:_MLKEM_CIPHERTEXT_SIZE], enc[_MLKEM_CIPHERTEXT_SIZE:]
        ss_x = self._x25519.exchange(X25519PublicKey.from_public_bytes(ct_x))
        ss_pq = self._mlkem.decapsulate(ct_pq)
        return _xwing_combine(ss_pq, ss_x, ct_x, self._x_public)


def _xwing_combine(ss_pq: bytes, ss_x: bytes, ct_x: bytes, pk_x: bytes) -> bytes:
    """The QSF combiner of MLKEM768-X25519: SHA3-256(ss_M || ss_X || ct_X || pk_X || label)."""
    return hashlib.sha3_256(ss_pq + ss_x + ct_x + pk_x + _XWING_LABEL).digest()


RecipientKey = X25519PublicKey | HybridPublicKey
"""What :func:`parse_recipient` returns: the key of an ``age1...`` or an ``age1pq1...`` recipient."""
IdentityKey = X25519PrivateKey | HybridPrivateKey
"""What :func:`parse_identity` returns: the key of an ``AGE-SECRET-KEY-1...`` or ``-PQ-1...`` identity."""


def generate_identity() -> tuple[str, str]:
    """Create a fresh X25519 identity; returns (``AGE-SECRET-KEY-1...``, ``age1...`` recipient)."""
    secret = os.urandom(32)
    public = X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()
    return _bech32_encode(_IDENTITY_HRP, secret).upper(), _bech32_encode(_RECIPIENT_HRP, public)


def generate_hybrid_identity() -> tuple[str, str]:
    """Create a fresh MLKEM768-X25519 identity; returns (``AGE-SECRET-KEY-PQ-1...``, ``age1pq1...``)."""
    secret = os.urandom(32)
    public = HybridPrivateKey(secret).public_key().public_bytes_raw()
    return _bech32_encode(_PQ_IDENTITY_HRP, secret).upper(), _bech32_encode(_PQ_RECIPIENT_HRP, public)


def _decode_key(text: object, what: str) -> tuple[str, str, bytes]:
    """(stripped text, hrp, data) of a Bech32 age key, length-bounded before any decoding work."""
    if not isinstance(text, str):
        raise ConfigError(f"age {what} must be a string, not {type(text).__name__}")
    stripped = text.strip()
    if len(stripped) > MAX_KEY_LENGTH:
        raise ConfigError(f"age {what} {_describe(stripped)} is {len(stripped)} characters, longer than any age key")
    try:
        hrp, data = _bech32_decode(stripped)
    except ValueError as err:
        raise ConfigError(f"age {what} {_describe(stripped)} {err}") from None
    return stripped, hrp, data


def parse_recipient(text: str) -> RecipientKey:
    """Parse an ``age1...`` (X25519) or ``age1pq1...`` (ML-KEM hybrid) recipient.

    Raises :class:`ConfigError` saying what is wrong with it. Valid keys are remembered (a handful per
    agreement), because decoding a 1959-character ``age1pq1`` string in Python costs milliseconds and
    every recording is encrypted to the same few.
    """
    if not isinstance(text, str):
        raise ConfigError(f"age recipient must be a string, not {type(text).__name__}")
    return _parse_recipient(text)


@functools.lru_cache(maxsize=64)
def _parse_recipient(text: str) -> RecipientKey:
    stripped, hrp, data = _decode_key(text, "recipient")
    if hrp == _PQ_RECIPIENT_HRP:
        try:
            return HybridPublicKey(data)
        except ValueError as err:
            raise ConfigError(f"age post-quantum recipient {_describe(stripped)} {err}") from None
    if hrp != _RECIPIENT_HRP:
        kind = "an age secret key, not a recipient" if hrp.startswith("age-secret-key") else f"prefix {hrp!r}"
        raise ConfigError(f"age recipient {_describe(stripped)} has {kind}; expected 'age1...' or 'age1pq1...'")
    if len(data) != 32:
        raise ConfigError(f"age recipient {_describe(stripped)} holds {len(data)} bytes, expected 32")
    return X25519PublicKey.from_public_bytes(data)


def parse_identity(text: str) -> IdentityKey:
    """Parse an ``AGE-SECRET-KEY-1...`` (X25519) or ``AGE-SECRET-KEY-PQ-1...`` (ML-KEM hybrid) identity.

    Raises :class:`ConfigError` saying what is wrong with it (never echoing the whole secret).
    """
    stripped, hrp, data = _decode_key(text, "identity")
    if hrp not in (_IDENTITY_HRP, _PQ_IDENTITY_HRP):
        raise ConfigError(
            f"age identity {_describe(stripped)} has prefix {hrp!r}; expected 'AGE-SECRET-KEY-1' or "
            "'AGE-SECRET-KEY-PQ-1'"
        )
    if len(data) != 32:
        raise ConfigError(f"age identity {_describe(stripped)} holds {len(data)} bytes, expected 32")
    if hrp == _PQ_IDENTITY_HRP:
        return HybridPrivateKey(data)
    return X25519PrivateKey.from_private_bytes(data)


def is_post_quantum(recipient: str) -> bool:
    """Whether a recipient string is an ``age1pq1...`` hybrid one (by its prefix; not validated)."""
    return recipient.strip().lower().startswith(_PQ_RECIPIENT_HRP + "1")


def check_recipients(recipients: Sequence[str], names: Sequence[str] | None = None) -> list[RecipientKey]:
    """Validate a file's recipient list: every key parses, and post-quantum keys are not mixed with X25519.

    A file encrypted to an ``age1pq1`` and an ``age1`` recipient is only as safe as X25519: a quantum
    computer unwraps the file key from the X25519 stanza. The spec says SHOULD NOT and age refuses it, so
    do we. ``names`` (the parties, in the same order) make the messages name who must change a key.
    Returns the parsed keys; raises :class:`ConfigError`.
    """
    if isinstance(recipients, str):
        raise ConfigError("recipients must be a list of 'age1...' strings, not one string")
    labels = list(names) if names is not None else [f"#{i + 1}" for i in range(len(recipients))]
    keys = []
    for label, text in zip(labels, recipients, strict=True):
        try:
            keys.append(parse_recipient(text))
        except ConfigError as err:
            raise ConfigError(f"recipient {label}: {err}") from None
    hybrid = [label for label, key in zip(labels, keys, strict=True) if isinstance(key, HybridPublicKey)]
    classic = [label for label, key in zip(labels, keys, strict=True) if not isinstance(key, HybridPublicKey)]
    if hybrid and classic:
        raise ConfigError(
            f"age recipients mix {len(hybrid)} post-quantum (age1pq1...: {', '.join(hybrid[:3])}) and "
            f"{len(classic)} X25519 (age1...: {', '.join(classic[:3])}) keys: the X25519 stanza would expose the "
            "footage to a quantum computer; give every party an age1pq1 key (age-keygen -pq) or none"
        )
    return keys


def recipient_of(identity: str) -> str:
    """The ``age1...``/``age1pq1...`` recipient matching an identity, to check that a key pair belongs together."""
    key = parse_identity(identity)
    hrp = _PQ_RECIPIENT_HRP if isinstance(key, HybridPrivateKey) else _RECIPIENT_HRP
    return _bech32_encode(hrp, key.public_key().public_bytes_raw())


def read_identities(text: str) -> list[str]:
    """Identities from an age identity file (``age-keygen`` output): blank and ``#`` lines are skipped."""
    found = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            parse_identity(line)
        except ConfigError as err:
            raise ConfigError(f"identity file line {number}: {err}") from None
        found.append(line)
    if not found:
        raise ConfigError("identity file holds no AGE-SECRET-KEY-1... or AGE-SECRET-KEY-PQ-1... line")
    return found


# -------------------------------------------------------------------------------------------------- helpers


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=SHA256(), length=32, salt=salt, info=info).derive(ikm)


def _hpke_labeled_extract(salt: bytes, label: bytes, ikm: bytes) -> bytes:
    """RFC 9180 LabeledExtract with HKDF-SHA256 (an empty salt is HMAC's all-zero key, as in RFC 5869)."""
    return hmac.new(salt, b"HPKE-v1" + _HPKE_SUITE + label + ikm, hashlib.sha256).digest()


def _hpke_labeled_expand(prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    """RFC 9180 LabeledExpand with HKDF-SHA256, for outputs of one hash block (all HPKE needs here)."""
    assert length <= 32
    labeled = length.to_bytes(2, "big") + b"HPKE-v1" + _HPKE_SUITE + label + info
    return hmac.new(prk, labeled + b"\x01", hashlib.sha256).digest()[:length]


def _hpke_base_context(shared_secret: bytes) -> tuple[ChaCha20Poly1305, bytes]:
    """RFC 9180 KeySchedule in mode_base with age's info string: (AEAD, base nonce) for one message."""
    context = (
        b"\x00" + _hpke_labeled_extract(b"", b"psk_id_hash", b"") + _hpke_labeled_extract(b"", b"info_hash", _PQ_LABEL)
    )
    secret = _hpke_labeled_extract(shared_secret, b"secret", b"")
    key = _hpke_labeled_expand(secret, b"key", context, 32)
    nonce = _hpke_labeled_expand(secret, b"base_nonce", context, 12)
    return ChaCha20Poly1305(key), nonce


def _wrap_hybrid(key: HybridPublicKey, file_key: bytes) -> tuple[bytes, bytes]:
    """HPKE SealBase of the file key to ``key``: (enc, body) of an ``mlkem768x25519`` stanza."""
    shared, enc = key.encapsulate()
    aead, nonce = _hpke_base_context(shared)
    return enc, aead.encrypt(nonce, file_key, b"")


def _b64encode(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def _b64decode(text: bytes) -> bytes | None:
    """Canonical unpadded standard base64, or ``None``; no whitespace, ``=`` or stray low bits allowed."""
    if _B64_LINE.fullmatch(text) is None or len(text) % 4 == 1:
        return None
    try:
        data = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        return None
    return data if _b64encode(data) == text else None


_AEAD_NONCE_SIZE: Final = 12  # ChaCha20-Poly1305's nonce: age's 11-byte chunk counter and last-chunk flag


def _chunk_nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def _as_bytes_view(data: bytes | bytearray | memoryview) -> memoryview:
    view = memoryview(data)
    if view.ndim != 1 or view.format not in ("B", "b", "c"):
        view = view.cast("B")
    return view


def ciphertext_size(plaintext_size: int, header_len: int) -> int:
    """Exact size of an age file holding ``plaintext_size`` bytes, so uploads can declare their length.

    ``header_len`` is ``len(Encryptor.header)`` (MAC line and payload nonce included). Every chunk adds a
    16-byte tag; an empty payload is still one (empty, tagged) chunk.
    """
    if plaintext_size < 0 or header_len < 0:
        raise ConfigError("ciphertext_size needs non-negative sizes")
    chunks = max(1, -(-plaintext_size // CHUNK_SIZE))
    return header_len + plaintext_size + chunks * TAG_SIZE


# ------------------------------------------------------------------------------------------------- encrypt


def _stanza_for(recipient: str, key: RecipientKey, file_key: bytes) -> bytes:
    """One recipient stanza (type line and body line) wrapping ``file_key`` to ``key``."""
    try:
        if isinstance(key, HybridPublicKey):
            enc, body = _wrap_hybrid(key, file_key)
            return b"-> " + _PQ_STANZA + b" " + _b64encode(enc) + b"\n" + _b64encode(body) + b"\n"
        ephemeral = X25519PrivateKey.generate()
        share = ephemeral.public_key().public_bytes_raw()
        shared = ephemeral.exchange(key)
    except ValueError:
        raise ConfigError(f"age recipient {_describe(recipient.strip())} is a low-order point") from None
    wrap_key = _hkdf(shared, share + key.public_bytes_raw(), _X25519_LABEL)
    body = ChaCha20Poly1305(wrap_key).encrypt(_ZERO_NONCE, file_key, None)
    return b"-> X25519 " + _b64encode(share) + b"\n" + _b64encode(body) + b"\n"


class SealSink(Protocol):
    """Where :meth:`Encryptor.update_into` puts sealed chunks (the pull's ring of part buffers)."""

    def reserve(self, size: int) -> memoryview | None:
        """A writable view of exactly ``size`` bytes at the current position, or None if they would not
        fit in one buffer (the sealer then calls :meth:`write`)."""
        ...

    def reserve_run(self, unit: int, count: int) -> memoryview | None:
        """A writable view of ``k * unit`` bytes at the current position for the largest ``k <= count`` that
        fits in the current buffer, or None if not even one ``unit`` fits (the sealer then straddles the
        boundary through :meth:`write`). Lets a run of chunks be sealed with one reservation (issue 14)."""
        ...

    def write(self, data: bytes) -> None:
        """Append ``data`` (it may span buffers)."""
        ...


class _WriteSink:
    """A :class:`SealSink` without buffers of its own: each sealed chunk is handed to ``write`` as bytes
    (:meth:`Encryptor.update`'s join, :func:`encrypt_stream`'s file), so both share ``update_into``'s
    chunking."""

    __slots__ = ("_write",)

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write

    def reserve(self, size: int) -> memoryview | None:
        return None

    def reserve_run(self, unit: int, count: int) -> memoryview | None:
        return None

    def write(self, data: bytes) -> None:
        self._write(data)


class Encryptor:
    """Push-style encryption of one file to one or more recipients, all X25519 or all ML-KEM hybrid.

    Write :attr:`header`, then whatever :meth:`update` returns, then :meth:`finalize`. A full 64 KiB chunk
    is held back until a further byte arrives, because only then is it known not to be the final chunk.
    """

    def __init__(self, recipients: Sequence[str], *, file_key: bytes | None = None) -> None:
        if isinstance(recipients, str):
            raise ConfigError("recipients must be a list of 'age1...' strings, not one string")
        if not recipients:
            raise ConfigError("age encryption needs at least one recipient")
        if len(recipients) > MAX_STANZAS:
            raise ConfigError(f"at most {MAX_STANZAS} age recipients are supported, got {len(recipients)}")
        keys = check_recipients(recipients)
        if file_key is None:
            file_key = os.urandom(FILE_KEY_SIZE)
        elif len(file_key) != FILE_KEY_SIZE:
            raise ConfigError(f"age file key must be {FILE_KEY_SIZE} bytes, got {len(file_key)}")
        file_key = bytes(file_key)

        lines = [_V1_LINE]
        for recipient, key in zip(recipients, keys, strict=True):
            lines.append(_stanza_for(recipient, key, file_key))
        lines.append(b"---")
        if sum(map(len, lines)) + 48 + NONCE_SIZE > MAX_HEADER_SIZE:
            raise ConfigError(
                f"{len(recipients)} age recipients make a header larger than {MAX_HEADER_SIZE} bytes, which age "
                "readers refuse; post-quantum recipients take about 1.6 KB each: use fewer"
            )
        head = b"".join(lines)
        mac = hmac.new(_hkdf(file_key, b"", b"header"), head, hashlib.sha256).digest()
        nonce = os.urandom(NONCE_SIZE)
        self.header: bytes = head + b" " + _b64encode(mac) + b"\n" + nonce
        """Header, MAC line and payload nonce: the first bytes of the file."""
        self._aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        self._pending = bytearray()
        self._counter = 0
        self._finished = False

    @classmethod
    def resume(cls, header: bytes, file_key: bytes) -> Encryptor:
        """An encryptor that reproduces an earlier one byte for byte (same header, file key and nonce).

        Used to resume an interrupted upload: re-encrypting the same plaintext yields the same
        ciphertext, so parts already in the bucket can be checked and skipped rather than re-sent.
        """
        if len(file_key) != FILE_KEY_SIZE or len(header) <= NONCE_SIZE or len(header) > MAX_HEADER_SIZE:
            raise ConfigError("cannot resume age encryption: journaled header or file key is malformed")
        head, sep, _rest = header.rpartition(b"\n--- ")
        if not sep:
            raise ConfigError("cannot resume age encryption: journaled header has no MAC line")
        mac_line_end = header.index(b"\n", len(head) + 1)
        mac = _b64decode(header[len(head) + len(sep) : mac_line_end])
        expected = hmac.new(_hkdf(file_key, b"", b"header"), head + b"\n---", hashlib.sha256).digest()
        if mac is None or not hmac.compare_digest(mac, expected):
            raise ConfigError("cannot resume age encryption: the file key does not match the journaled header")
        nonce = header[mac_line_end + 1 :]
        if len(nonce) != NONCE_SIZE:
            raise ConfigError("cannot resume age encryption: journaled header has a bad payload nonce")
        self = cls.__new__(cls)
        self.header = bytes(header)
        self._aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        self._pending = bytearray()
        self._counter = 0
        self._finished = False
        return self

    def encrypted_size(self, plaintext_size: int) -> int:
        """Total file size (header included) for a plaintext of ``plaintext_size`` bytes."""
        return ciphertext_size(plaintext_size, len(self.header))

    def _seal(self, chunk: bytes | bytearray | memoryview, last: bool) -> bytes:
        sealed = self._aead.encrypt(_chunk_nonce(self._counter, last), chunk, None)
        self._counter += 1
        return sealed

    def _seal_to(self, chunk: bytes | bytearray | memoryview, last: bool, sink: SealSink) -> None:
        """Seal straight into the sink's buffer when it has room in one piece, else via a small copy."""
        out = sink.reserve(len(chunk) + TAG_SIZE)
        if out is None:
            sink.write(self._seal(chunk, last))
            return
        self._aead.encrypt_into(_chunk_nonce(self._counter, last), chunk, None, out)
        self._counter += 1

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """Encrypt more plaintext; returns every chunk that is now known not to be the last one."""
        sealed: list[bytes] = []
        self.update_into(data, _WriteSink(sealed.append))
        return b"".join(sealed)

    def update_into(self, data: bytes | bytearray | memoryview, sink: SealSink) -> None:
        """As :meth:`update`, but each sealed chunk goes into ``sink``'s preallocated buffers
        (``ChaCha20Poly1305.encrypt_into``): no per-call bytes object, no join (issue 14).

        The whole chunks of ``data`` are sealed in runs, one reservation per run straight from the
        caller's buffer (:meth:`_seal_run`); only the held-back tail is copied."""
        if self._finished:
            raise ConfigError("Encryptor.update called after finalize")
        with _as_bytes_view(data) as view:
            size = len(view)
            pending = self._pending
            if len(pending) + size <= CHUNK_SIZE:
                pending += view
                return
            pos = 0
            if pending:  # top up the held-back chunk; more data follows it, so it is not the last
                pos = CHUNK_SIZE - len(pending)
                pending += view[:pos]
                self._seal_to(pending, False, sink)
                pending.clear()
            whole = (size - pos - 1) // CHUNK_SIZE  # chunks followed by at least one more byte
            if whole:
                self._seal_run(view, pos, whole, sink)
                pos += whole * CHUNK_SIZE
            pending += view[pos:]  # 1..CHUNK_SIZE bytes: may turn out to be the final chunk

    def _seal_run(self, view: memoryview, pos: int, count: int, sink: SealSink) -> None:
        """Seal ``count`` whole chunks of ``view`` from ``pos`` (none of them the last), as many at a time
        as fit in the sink's current buffer: per chunk only the two slices and the nonce are made,
        about 30 ms of CPU per GiB less than a reservation each (16,384 chunks a GiB; docs/decisions.md)."""
        seal = self._aead.encrypt_into
        while count:
            out = sink.reserve_run(ENC_CHUNK_SIZE, count)
            if out is None:  # the next chunk straddles two buffers
                self._seal_to(view[pos : pos + CHUNK_SIZE], False, sink)
                pos += CHUNK_SIZE
                count -= 1
                continue
            counter = self._counter
            run = len(out) // ENC_CHUNK_SIZE
            for at in range(0, run * ENC_CHUNK_SIZE, ENC_CHUNK_SIZE):
                # age's nonce (_chunk_nonce): the 11-byte big-endian counter, then 0x00 (not the last chunk)
                nonce = (counter << 8).to_bytes(_AEAD_NONCE_SIZE, "big")
                seal(nonce, view[pos : pos + CHUNK_SIZE], None, out[at : at + ENC_CHUNK_SIZE])
                counter += 1
                pos += CHUNK_SIZE
            self._counter = counter
            count -= run

    def finalize(self) -> bytes:
        """Seal the held-back bytes as the final chunk (empty only when the whole plaintext is empty)."""
        if self._finished:
            raise ConfigError("Encryptor.finalize called twice")
        self._finished = True
        sealed = self._seal(self._pending, True)
        self._pending = bytearray()
        return sealed

    def finalize_into(self, sink: SealSink) -> None:
        """As :meth:`finalize`, into ``sink``."""
        if self._finished:
            raise ConfigError("Encryptor.finalize called twice")
        self._finished = True
        self._seal_to(self._pending, True, sink)
        self._pending = bytearray()


def encrypt_stream(src: BinaryIO, dst: BinaryIO, recipients: Sequence[str]) -> None:
    """Encrypt everything readable from ``src`` into ``dst`` with bounded memory."""
    enc = Encryptor(recipients)
    dst.write(enc.header)
    sink = _WriteSink(dst.write)
    while block := src.read(_BUFSIZE):
        enc.update_into(block, sink)
    dst.write(enc.finalize())


# ------------------------------------------------------------------------------------------------- decrypt


class _Stanza:
    __slots__ = ("args", "body")

    def __init__(self, args: list[bytes], body: bytes) -> None:
        self.args = args
        self.body = body


def _parse_header(header: bytes) -> tuple[list[_Stanza], bytes]:
    """Parse a complete header (through the MAC line's LF) strictly; returns (stanzas, MAC)."""
    lines = header.split(b"\n")
    if lines[-1] != b"":
        raise AgeHeaderError("age header does not end with a line feed")
    lines.pop()
    if lines[0] + b"\n" != _V1_LINE:
        raise AgeHeaderError(_bad_version(lines[0]))
    stanzas: list[_Stanza] = []
    i = 1
    while i < len(lines):
        line = lines[i]
        if line.startswith(b"---"):
            if i != len(lines) - 1:
                raise AgeHeaderError("age header has lines after the MAC line")
            if not stanzas:
                raise AgeHeaderError("age header has no recipient stanza")
            if not line.startswith(b"--- ") or len(line) != 4 + 43:
                raise AgeHeaderError("age header MAC line is malformed (expected '--- ' and 43 base64 chars)")
            mac = _b64decode(line[4:])
            if mac is None or len(mac) != 32:
                raise AgeHeaderError("age header MAC is not canonical base64 of 32 bytes")
            return stanzas, mac
        if not line.startswith(b"-> "):
            raise AgeHeaderError(f"age header line {i + 1} is neither a stanza ('-> ') nor the MAC ('--- ')")
        if len(stanzas) == MAX_STANZAS:
            raise AgeHeaderError(f"age header has more than {MAX_STANZAS} stanzas")
        args = line[3:].split(b" ")
        for arg in args:
            if not arg or any(c < 0x21 or c > 0x7E for c in arg):
                raise AgeHeaderError(f"age header line {i + 1}: stanza argument is empty or not printable ASCII")
        body = bytearray()
        while True:
            i += 1
            if i >= len(lines) or lines[i].startswith((b"---", b"-> ")):
                raise AgeHeaderError("age stanza body does not end with a short line")
            part = lines[i]
            if len(part) > 64:
                raise AgeHeaderError(f"age header line {i + 1} is longer than 64 columns")
            decoded = _b64decode(part)
            if decoded is None:
                raise AgeHeaderError(f"age header line {i + 1} is not canonical unpadded base64")
            body += decoded
            if len(part) < 64:
                break
        stanzas.append(_Stanza(args, bytes(body)))
        i += 1
    raise AgeHeaderError("age header has no MAC line")


def _bad_version(line: bytes) -> str:
    if line.startswith(_VERSION_PREFIX):
        shown = line[len(_VERSION_PREFIX) :][:32].decode("ascii", "backslashreplace")
        return f"unsupported age version {shown!r} (only v1)"
    return "not an age file (missing 'age-encryption.org/v1' line, and not '-----BEGIN AGE' armor either)"


class _Identity:
    __slots__ = ("private", "public")

    def __init__(self, text: str) -> None:
        self.private = parse_identity(text)
        self.public = self.private.public_key().public_bytes_raw()


def _x25519_share(stanza: _Stanza) -> bytes:
    """Validate an X25519 stanza's shape (no crypto); returns its ephemeral share."""
    if len(stanza.args) != 2:
        raise AgeHeaderError(f"X25519 stanza has {len(stanza.args)} arguments, expected 2")
    share = _b64decode(stanza.args[1])
    if share is None or len(share) != 32:
        raise AgeHeaderError("X25519 stanza share is not canonical base64 of 32 bytes")
    if len(stanza.body) != FILE_KEY_SIZE + TAG_SIZE:
        raise AgeHeaderError(f"X25519 stanza body is {len(stanza.body)} bytes, expected 32")
    return share


def _hybrid_enc(stanza: _Stanza) -> bytes:
    """Validate an mlkem768x25519 stanza's shape (no crypto); returns its encapsulated key."""
    if len(stanza.args) != 2:
        raise AgeHeaderError(f"mlkem768x25519 stanza has {len(stanza.args)} arguments, expected 2")
    enc = _b64decode(stanza.args[1])
    if enc is None or len(enc) != _PQ_ENC_SIZE:
        raise AgeHeaderError(f"mlkem768x25519 stanza enc is not canonical base64 of {_PQ_ENC_SIZE} bytes")
    if len(stanza.body) != FILE_KEY_SIZE + TAG_SIZE:  # checked before decrypting: partitioning oracles
        raise AgeHeaderError(f"mlkem768x25519 stanza body is {len(stanza.body)} bytes, expected 32")
    return enc


def _try_x25519(stanza: _Stanza, share: bytes, ident: _Identity) -> bytes | None:
    assert isinstance(ident.private, X25519PrivateKey)
    try:
        shared = ident.private.exchange(X25519PublicKey.from_public_bytes(share))
    except ValueError:
        raise AgeHeaderError("X25519 stanza share is a low-order point (all-zero secret)") from None
    wrap_key = _hkdf(shared, share + ident.public, _X25519_LABEL)
    try:
        return ChaCha20Poly1305(wrap_key).decrypt(_ZERO_NONCE, stanza.body, None)
    except InvalidTag:
        return None


def _try_hybrid(stanza: _Stanza, enc: bytes, ident: _Identity) -> bytes | None:
    """HPKE OpenBase of the stanza body; ``None`` when it is for someone else (the tag does not match)."""
    assert isinstance(ident.private, HybridPrivateKey)
    try:
        shared = ident.private.decapsulate(enc)
    except ValueError:
        raise AgeHeaderError("mlkem768x25519 stanza's X25519 share is a low-order point (all-zero secret)") from None
    aead, nonce = _hpke_base_context(shared)
    try:
        return aead.decrypt(nonce, stanza.body, b"")
    except InvalidTag:
        return None


def _scrypt_params(stanza: _Stanza) -> tuple[bytes, int]:
    """Validate an scrypt stanza's shape and work factor (no crypto); returns (salt, log2 N).

    The work factor is checked against :data:`MAX_SCRYPT_WORK_FACTOR` before any scrypt work, so a
    hostile header cannot make the reader allocate gigabytes.
    """
    if len(stanza.args) != 3:
        raise AgeHeaderError(f"scrypt stanza has {len(stanza.args) - 1} arguments, expected 2 (salt, work factor)")
    salt = _b64decode(stanza.args[1])
    if salt is None or len(salt) != _SCRYPT_SALT_SIZE:
        raise AgeHeaderError(f"scrypt stanza salt is not canonical base64 of {_SCRYPT_SALT_SIZE} bytes")
    text = stanza.args[2]
    shown = text[:24].decode("ascii", "backslashreplace")
    if _WORK_FACTOR.fullmatch(text) is None:
        raise AgeHeaderError(f"scrypt work factor {shown!r} is not a decimal number without sign or leading zeros")
    if len(text) > 2 or int(text) > MAX_SCRYPT_WORK_FACTOR:
        raise AgeHeaderError(
            f"scrypt work factor {shown} is above this reader's cap of {MAX_SCRYPT_WORK_FACTOR} (2^"
            f"{MAX_SCRYPT_WORK_FACTOR} needs {1 << (MAX_SCRYPT_WORK_FACTOR - 10)} MiB, what 'age -p' writes); "
            "re-encrypt the file with stock 'age -p'"
        )
    if text == b"0":
        raise AgeHeaderError("scrypt work factor is 0 (it must be at least 1)")
    if len(stanza.body) != FILE_KEY_SIZE + TAG_SIZE:  # checked before decrypting: partitioning oracles
        raise AgeHeaderError(f"scrypt stanza body is {len(stanza.body)} bytes, expected 32")
    return salt, int(text)


def _try_scrypt(stanza: _Stanza, salt: bytes, log_n: int, passphrase: bytes) -> bytes | None:
    """The file key, or ``None`` if the passphrase (or the stanza's work factor) is not the one used."""
    kdf = Scrypt(salt=_SCRYPT_LABEL + salt, length=32, n=1 << log_n, r=8, p=1)
    try:
        return ChaCha20Poly1305(kdf.derive(passphrase)).decrypt(_ZERO_NONCE, stanza.body, None)
    except InvalidTag:
        return None


def _unwrap_scrypt(stanza: _Stanza, passphrase: bytes | None) -> bytes:
    salt, log_n = _scrypt_params(stanza)
    if passphrase is None:
        raise AgeNoMatchError("age file is passphrase (scrypt) encrypted and no passphrase was given, only identities")
    found = _try_scrypt(stanza, salt, log_n, passphrase)
    if found is None:
        raise AgeNoMatchError("the passphrase does not open this age file (wrong passphrase?)")
    return found


def _unwrap(stanzas: list[_Stanza], identities: list[_Identity], passphrase: bytes | None = None) -> bytes:
    if any(s.args[0] == b"scrypt" for s in stanzas):
        if len(stanzas) > 1:
            raise AgeHeaderError("an scrypt stanza must be the only stanza in an age header")
        return _unwrap_scrypt(stanzas[0], passphrase)
    # Every stanza of a type we know is checked for shape before any public-key work.
    candidates = [(s, _x25519_share(s), False) for s in stanzas if s.args[0] == b"X25519"]
    candidates += [(s, _hybrid_enc(s), True) for s in stanzas if s.args[0] == _PQ_STANZA]
    for stanza, argument, hybrid in candidates:
        for ident in identities:
            if isinstance(ident.private, HybridPrivateKey) != hybrid:
                continue
            found = _try_hybrid(stanza, argument, ident) if hybrid else _try_x25519(stanza, argument, ident)
            if found is not None:
                return found
    if not identities:
        raise AgeNoMatchError(
            f"age file is not passphrase encrypted (its {len(stanzas)} stanza(s) are for identities) and only a "
            "passphrase was given"
        )
    raise AgeNoMatchError(
        f"none of the {len(identities)} identities matches the {len(candidates)} X25519 or mlkem768x25519 "
        f"stanza(s) of this age file ({len(stanzas)} stanza(s) in all)"
    )


def _passphrase_bytes(passphrase: str | bytes | None) -> bytes | None:
    """The passphrase as scrypt takes it (UTF-8, as age does); an empty one is refused, as age does."""
    if passphrase is None:
        return None
    if isinstance(passphrase, str):
        passphrase = passphrase.encode("utf-8")
    if not isinstance(passphrase, bytes):
        raise ConfigError(f"age passphrase must be str or bytes, not {type(passphrase).__name__}")
    if not passphrase:
        raise ConfigError("age passphrase is empty")
    return passphrase


class Decryptor:
    """Push-style decryption and verification of one age file.

    :meth:`update` buffers the header (bounded by :data:`MAX_HEADER_SIZE`), verifies it, then returns the
    plaintext of each authenticated chunk once a following byte shows it is not the final one.
    :meth:`finalize` authenticates the final chunk; only then is the file known to be whole. Every failure is
    an :class:`IntegrityError` subclass, and the object refuses further use after one.
    """

    def __init__(
        self, identities: Sequence[str] = (), *, passphrase: str | bytes | None = None, armor: bool | None = None
    ) -> None:
        """``identities`` open X25519 and hybrid files, ``passphrase`` opens an ``age -p`` (scrypt) file.

        ``armor``: ``None`` (the default) tells an ASCII-armored file (``age -a``) from a binary one by its
        first bytes, as ``age -d`` does (after at most 1 KiB of whitespace, a ``-`` starts armor; a binary
        file starts with ``age-encryption.org/``); ``True`` requires armor, ``False`` refuses it.
        Raises :class:`ConfigError` if neither identities nor a passphrase is given or one is malformed.
        """
        if isinstance(identities, str):
            raise ConfigError("identities must be a list of 'AGE-SECRET-KEY-...' strings, not one string")
        if not identities and passphrase is None:
            raise ConfigError("age decryption needs at least one identity or a passphrase")
        self._identities = [_Identity(text) for text in identities]
        self._passphrase = _passphrase_bytes(passphrase)
        if armor not in (None, True, False):
            raise ConfigError(f"armor must be None, True or False, not {armor!r}")
        self._armor = ArmorDecoder() if armor else None
        self._sniffing = armor is None  # first bytes not seen yet: armored or binary is still open
        self._sniffed = bytearray()  # whitespace held while sniffing (at most MAX_WHITESPACE bytes)
        self._direct = False  # binary file with a verified header: update() goes straight to the chunks
        self._buf = bytearray()
        self._scanned = 0  # bytes of the header buffer already searched
        self._mark = -1  # offset of the LF that precedes the '---' MAC line, once seen
        self._header_end = 0  # offset just past the MAC line's LF, once found and verified
        self._aead: ChaCha20Poly1305 | None = None
        self._file_key = b""
        self._counter = 0
        self._failure: IntegrityError | None = None
        self._finished = False

    # ----------------------------------------------------------------------------------------- header

    def _feed_header(self) -> None:
        buf = self._buf
        if not self._header_end:
            check = min(len(buf), len(_V1_LINE))
            if buf[:check] != _V1_LINE[:check]:
                line = bytes(buf[: buf.find(b"\n")]) if b"\n" in buf[:check] else bytes(buf[:check])
                raise AgeHeaderError(_bad_version(line))
            mark = self._mark
            if mark < 0:  # resume the scan where the previous call stopped, so tiny feeds stay linear
                mark = self._mark = buf.find(b"\n---", max(self._scanned - 3, 0), MAX_HEADER_SIZE)
            end = -1 if mark < 0 else buf.find(b"\n", max(self._scanned, mark + 1), MAX_HEADER_SIZE)
            if end < 0:
                if len(buf) >= MAX_HEADER_SIZE:
                    raise AgeHeaderError(f"age header is not complete within {MAX_HEADER_SIZE} bytes")
                self._scanned = len(buf)
                return
            header = bytes(buf[: end + 1])
            stanzas, mac = _parse_header(header)
            file_key = _unwrap(stanzas, self._identities, self._passphrase)
            self._passphrase = None
            if len(file_key) != FILE_KEY_SIZE:  # cannot happen: the body length was checked
                raise AgeHeaderError("unwrapped age file key has the wrong length")
            expected = hmac.new(_hkdf(file_key, b"", b"header"), header[: mark + 4], hashlib.sha256).digest()
            if not hmac.compare_digest(expected, mac):
                raise AgeHmacError("age header MAC does not match: the header was modified or corrupted")
            self._header_end = end + 1
            self._file_key = file_key
        if len(buf) >= self._header_end + NONCE_SIZE:
            nonce = bytes(buf[self._header_end : self._header_end + NONCE_SIZE])
            self._aead = ChaCha20Poly1305(_hkdf(self._file_key, nonce, b"payload"))
            self._file_key = b""
            del buf[: self._header_end + NONCE_SIZE]

    # ---------------------------------------------------------------------------------------- payload

    def _open(self, chunk: bytes | bytearray | memoryview, last: bool) -> bytes:
        assert self._aead is not None
        try:
            plain = self._aead.decrypt(_chunk_nonce(self._counter, last), chunk, None)
        except InvalidTag:
            raise AgePayloadError(self._explain(chunk, last)) from None
        if last and not plain and self._counter:
            raise AgePayloadError("age payload ends with an empty final chunk after data (not allowed)")
        self._counter += 1
        return plain

    def _explain(self, chunk: bytes | bytearray | memoryview, last: bool) -> str:
        """Say why chunk ``self._counter`` failed; the spare trial decryption only runs on failure."""
        assert self._aead is not None
        where = f"age payload chunk {self._counter}"
        if len(chunk) == ENC_CHUNK_SIZE:
            try:
                self._aead.decrypt(_chunk_nonce(self._counter, not last), chunk, None)
            except InvalidTag:
                pass
            else:
                if last:
                    return f"{where} is not marked final and the file ends there: the file is truncated"
                return f"{where} is the final chunk but more data follows it (trailing data or splice)"
        if last:
            return f"{where} (final) failed authentication: truncated or corrupted"
        return f"{where} failed authentication: corrupted, reordered or from another file"

    def _payload(self, view: memoryview) -> Iterator[bytes]:
        size = len(view)
        buf = self._buf
        if len(buf) + size <= ENC_CHUNK_SIZE:
            buf += view
            return
        pos = 0
        if buf:
            pos = ENC_CHUNK_SIZE - len(buf)
            buf += view[:pos]
            yield self._open(buf, False)
            buf.clear()
        while size - pos > ENC_CHUNK_SIZE:
            yield self._open(view[pos : pos + ENC_CHUNK_SIZE], False)
            pos += ENC_CHUNK_SIZE
        buf += view[pos:]

    def _chunks(self, data: bytes | bytearray | memoryview) -> Iterator[bytes]:
        if self._failure is not None:
            raise self._failure
        if self._finished:
            raise ConfigError("Decryptor.update called after finalize")
        try:
            with _as_bytes_view(data) as view:
                if self._direct:  # the hot path: binary payload, no armor or header work per call
                    yield from self._payload(view)
                else:
                    yield from self._before_direct(view)
        except IntegrityError as err:
            self._failure = err
            raise

    def _before_direct(self, view: memoryview) -> Iterator[bytes]:
        """The first bytes (armor or not), the header, and every call of an armored file."""
        if self._sniffing:
            first = self._sniff(view)
            if first is None:
                return
            view = memoryview(first)
        if self._armor is not None:
            view = memoryview(self._armor.update(view))
        yield from self._binary(view)

    def _sniff(self, view: memoryview) -> bytes | memoryview | None:
        """Decide armored or binary from the first non-whitespace byte; ``None`` while only whitespace came."""
        first: bytes | memoryview
        start = view[:1].tobytes()[0] if view else -1  # an int whatever the view's format ('c' gives bytes)
        if not self._sniffed and start >= 0 and not is_whitespace(start):
            first = view  # the usual case: decided on the first byte, nothing copied
        else:
            self._sniffed += view
            rest = self._sniffed.lstrip(WHITESPACE)
            if not rest and len(self._sniffed) <= MAX_WHITESPACE:
                return None
            first, start, self._sniffed = bytes(self._sniffed), rest[0] if rest else -1, bytearray()
        self._sniffing = False
        if start == ord("-"):  # a binary age file starts with 'a'; armor (or what claims to be) with '-'
            self._armor = ArmorDecoder()
        return first

    def _binary(self, view: memoryview | bytes) -> Iterator[bytes]:
        """The binary age file (decoded from the armor, if any): header, then payload chunks."""
        if self._aead is not None:
            yield from self._payload(memoryview(view))
            return
        self._buf += view
        self._feed_header()
        if self._aead is None:
            return
        carried, self._buf = self._buf, bytearray()
        with memoryview(carried) as rest:
            yield from self._payload(rest)
        self._direct = self._armor is None

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """Feed ciphertext; returns plaintext of the chunks verified so far (provisional until finalize)."""
        return b"".join(self._chunks(data))

    def finalize(self) -> bytes:
        """Verify the final chunk and return its plaintext; raises if the file is truncated or extended.

        An armored file must also end with its END line (and only whitespace after it).
        """
        if self._failure is not None:
            raise self._failure
        if self._finished:
            raise ConfigError("Decryptor.finalize called twice")
        self._finished = True
        try:
            head = b""
            if self._sniffing:  # empty or whitespace-only input: a binary reader says why it is no age file
                self._sniffing = False
                head = b"".join(self._binary(bytes(self._sniffed)))
            if self._armor is not None:
                head = b"".join(self._binary(self._armor.finalize()))
            if self._aead is None:
                if self._header_end:
                    raise AgeHeaderError("age file ends inside the 16-byte payload nonce")
                self._feed_header()  # surfaces a bad version line on very short input
                raise AgeHeaderError("age file ends inside its header" if self._buf else "age file is empty")
            if not self._buf:
                raise AgePayloadError("age payload has no chunks (the final chunk is missing)")
            if len(self._buf) < TAG_SIZE:
                raise AgePayloadError(f"age payload chunk {self._counter} is shorter than its 16-byte tag")
            plain = self._open(self._buf, True)
            self._buf = bytearray()
            return head + plain
        except IntegrityError as err:
            self._failure = err
            raise


def decrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    identities: Sequence[str] = (),
    *,
    passphrase: str | bytes | None = None,
    armor: bool | None = None,
) -> None:
    """Decrypt ``src`` (binary or armored) into ``dst``; on error ``dst`` holds a partial, untrustworthy
    prefix: discard it."""
    dec = Decryptor(identities, passphrase=passphrase, armor=armor)
    while block := src.read(_BUFSIZE):
        for plain in dec._chunks(block):
            dst.write(plain)
    dst.write(dec.finalize())
