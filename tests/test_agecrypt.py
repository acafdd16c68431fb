"""Tests for bodycam.agent.formats.agecrypt: CCTV age vectors, round trips, stock-CLI interop, tampering."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import random
import shutil
import subprocess
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bodycam.agent.formats import agecrypt
from bodycam.agent.formats.agecrypt import (
    CHUNK_SIZE,
    MAX_HEADER_SIZE,
    MAX_STANZAS,
    AgeArmorError,
    AgeHeaderError,
    AgeHmacError,
    AgeNoMatchError,
    AgePayloadError,
    Decryptor,
    Encryptor,
    ciphertext_size,
    decrypt_stream,
    encrypt_stream,
    generate_hybrid_identity,
    generate_identity,
    parse_identity,
    parse_recipient,
    read_identities,
    recipient_of,
)
from bodycam.drivers.errors import ConfigError, IntegrityError

ENC_CHUNK = CHUNK_SIZE + 16
VECTOR_DIR = Path(__file__).resolve().parent / "vectors" / "age"
"""The CCTV age vectors, vendored (README.md there says from where, and under which licence)."""
SHARED_VECTOR_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "testvectors" / "age"
VECTOR_FILES = sorted(p.name for p in VECTOR_DIR.iterdir() if p.is_file() and "." not in p.name)
EXPECTED_ERROR: dict[str, type[IntegrityError]] = {
    "armor failure": AgeArmorError,
    "no match": AgeNoMatchError,
    "HMAC failure": AgeHmacError,
    "header failure": AgeHeaderError,
    "payload failure": AgePayloadError,
}
AGE = shutil.which("age")
AGE_KEYGEN = shutil.which("age-keygen")
needs_age = pytest.mark.skipif(AGE is None or AGE_KEYGEN is None, reason="stock age CLI not installed")

SPEC_IDENTITY = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"
SPEC_RECIPIENT = "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"

# Two fixed key pairs keep the module fast; generate_identity() has its own tests.
ID1, RCPT1 = generate_identity()
ID2, RCPT2 = generate_identity()
ID3, RCPT3 = generate_identity()


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=SHA256(), length=32, salt=salt, info=info).derive(ikm)


def _feed(obj: Encryptor | Decryptor, data: bytes, pieces: Sequence[int]) -> bytes:
    """Push ``data`` through ``obj.update`` in the given piece sizes (cycled), then finalize."""
    out = bytearray()
    pos = 0
    i = 0
    sizes = list(pieces) if any(pieces) else [len(data)]  # zero sizes feed b"" but cannot stall the loop
    while pos < len(data):
        size = sizes[i % len(sizes)]
        out += obj.update(data[pos : pos + size])
        pos += size
        i += 1
    out += obj.finalize()
    return bytes(out)


def _encrypt(plain: bytes, recipients: Sequence[str] = (RCPT1,), file_key: bytes | None = None) -> bytes:
    enc = Encryptor(recipients, file_key=file_key)
    return enc.header + enc.update(plain) + enc.finalize()


def _decrypt(ct: bytes, identities: Sequence[str] = (ID1,), piece: int = 0) -> bytes:
    return _feed(Decryptor(identities), ct, [piece] if piece else [])


def _header_len(ct: bytes) -> int:
    """Length of header + MAC line + nonce, found the way the spec describes it."""
    return ct.index(b"\n", ct.index(b"\n---") + 1) + 1 + 16


def _remac(stanza_lines: bytes, file_key: bytes, payload_part: bytes) -> bytes:
    """Build a file from hand-written stanza lines, with a correct MAC for ``file_key``."""
    head = b"age-encryption.org/v1\n" + stanza_lines + b"---"
    mac = hmac.new(_hkdf(file_key, b"", b"header"), head, hashlib.sha256).digest()
    return head + b" " + base64.b64encode(mac).rstrip(b"=") + b"\n" + payload_part


def _split_file(ct: bytes) -> tuple[bytes, bytes]:
    """(stanza lines, nonce+payload) of a file we wrote."""
    start = len(b"age-encryption.org/v1\n")
    mark = ct.index(b"\n---") + 1
    end = ct.index(b"\n", mark) + 1
    return ct[start:mark], ct[end:]


# ------------------------------------------------------------------------------------------- CCTV vectors


def _read_vector(name: str) -> tuple[dict[str, list[str]], bytes]:
    raw = (VECTOR_DIR / name).read_bytes()
    head, sep, body = raw.partition(b"\n\n")
    assert sep, f"{name}: no blank line after the key/value header"
    meta: dict[str, list[str]] = {}
    for line in head.decode().splitlines():
        key, _, value = line.partition(": ")
        meta.setdefault(key, []).append(value)
    if meta.get("compressed") == ["zlib"]:
        body = zlib.decompress(body)
    return meta, body


def test_vectors_are_vendored_in_the_repository() -> None:
    """A clone without the shared directory still runs every vector (none is skipped for lack of files)."""
    assert len(VECTOR_FILES) >= 140
    assert sum(name.startswith("hybrid") for name in VECTOR_FILES) >= 18
    assert (VECTOR_DIR / "README.md").is_file()


@pytest.mark.skipif(not SHARED_VECTOR_DIR.is_dir(), reason="no shared vector directory to compare with")
def test_vendored_vectors_match_the_shared_copy() -> None:
    shared = sorted(p.name for p in SHARED_VECTOR_DIR.iterdir() if p.is_file())
    assert shared == VECTOR_FILES
    for name in shared:
        assert (SHARED_VECTOR_DIR / name).read_bytes() == (VECTOR_DIR / name).read_bytes(), name


@pytest.mark.parametrize("name", VECTOR_FILES)
def test_cctv_vector(name: str) -> None:
    meta, body = _read_vector(name)
    identities = meta.get("identity", [])
    passphrases = meta.get("passphrase", [])
    if not identities and not passphrases:
        # The vector fails before any identity is consulted; the Decryptor still needs one.
        identities = [ID1]
    expect = meta["expect"][0]

    released = bytearray()
    # A vector lists the passphrases a reader knows (scrypt_double has two, and fails before any is used).
    # The testkit tells its reader which files are armored (armor_garbage_leading is armor only when told).
    armored = meta.get("armored") == ["yes"] or None
    dec = Decryptor(identities, passphrase=passphrases[0] if passphrases else None, armor=armored)
    if expect == "success":
        for i in range(0, len(body), 10_000):
            released += dec.update(body[i : i + 10_000])
        released += dec.finalize()
        assert hashlib.sha256(released).hexdigest() == meta["payload"][0]
        return
    with pytest.raises(EXPECTED_ERROR[expect]) as info:
        for i in range(0, len(body), 10_000):
            released += dec.update(body[i : i + 10_000])
        released += dec.finalize()
    assert str(info.value), "errors must carry a message"
    # Only whole, authenticated, provably non-final chunks are ever released before a failure.
    assert len(released) % CHUNK_SIZE == 0
    # The object stays failed: it does not resume as if nothing happened.
    with pytest.raises(EXPECTED_ERROR[expect]):
        dec.finalize()


# -------------------------------------------------------------------------------------------- key handling


def test_spec_identity_maps_to_spec_recipient() -> None:
    assert recipient_of(SPEC_IDENTITY) == SPEC_RECIPIENT
    assert recipient_of("  " + SPEC_IDENTITY.lower() + "\n") == SPEC_RECIPIENT
    assert (
        parse_recipient(SPEC_RECIPIENT).public_bytes_raw()
        == parse_identity(SPEC_IDENTITY).public_key().public_bytes_raw()
    )


def test_generate_identity_shape_and_pairing() -> None:
    secret, recipient = generate_identity()
    assert secret.startswith("AGE-SECRET-KEY-1") and secret == secret.upper() and len(secret) == 74
    assert recipient.startswith("age1") and recipient == recipient.lower() and len(recipient) == 62
    assert recipient_of(secret) == recipient
    assert generate_identity()[0] != secret


@pytest.mark.parametrize(
    ("func", "text", "needle"),
    [
        (parse_recipient, "", "not Bech32"),
        (parse_recipient, SPEC_RECIPIENT[:-1] + "q", "checksum"),
        (parse_recipient, SPEC_RECIPIENT[:10] + SPEC_RECIPIENT[10:].upper(), "mixes upper and lower"),
        (parse_recipient, SPEC_RECIPIENT.replace("q", "b", 1), "alphabet"),
        (parse_recipient, SPEC_IDENTITY, "secret key, not a recipient"),
        (parse_recipient, "age1 " + SPEC_RECIPIENT[4:], "space"),
        (parse_identity, SPEC_RECIPIENT, "expected 'AGE-SECRET-KEY-1'"),
        (parse_identity, SPEC_IDENTITY[:-1] + "Q", "checksum"),
        (parse_identity, SPEC_IDENTITY[:-7], "checksum"),
        (parse_identity, "AGE-SECRET-KEY-PQ-1" + "Q" * 56, "checksum"),
        (parse_recipient, "age1pq1" + "q" * 2100, "longer than any age key"),
        (parse_recipient, agecrypt._bech32_encode("age1pq", bytes(1215)), "1215 bytes, expected 1216"),
        (parse_recipient, agecrypt._bech32_encode("age1pq", b"\xff" * 1216), "post-quantum recipient"),
        (parse_identity, agecrypt._bech32_encode("age-secret-key-pq-", bytes(31)), "31 bytes, expected 32"),
        (parse_identity, "AGE-SECRET-KEY-1", "not Bech32"),
    ],
)
def test_bad_keys_raise_config_error(func: Callable[[str], object], text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        func(text)


def test_wrong_length_key_is_named() -> None:
    short = agecrypt._bech32_encode("age", bytes(31))
    with pytest.raises(ConfigError, match="31 bytes, expected 32"):
        parse_recipient(short)


def test_bad_key_message_never_echoes_the_secret() -> None:
    broken = SPEC_IDENTITY[:-1] + "Q"
    with pytest.raises(ConfigError) as info:
        parse_identity(broken)
    assert SPEC_IDENTITY[20:] not in str(info.value)


def test_read_identities_skips_comments_and_reports_line() -> None:
    text = f"# created: now\n# public key: {SPEC_RECIPIENT}\n\n{SPEC_IDENTITY}\n"
    assert read_identities(text) == [SPEC_IDENTITY]
    with pytest.raises(ConfigError, match="line 2"):
        read_identities(f"{SPEC_IDENTITY}\nnonsense\n")
    with pytest.raises(ConfigError, match=r"no AGE-SECRET-KEY-1\.\.\. or AGE-SECRET-KEY-PQ-1"):
        read_identities("# only a comment\n")


def test_constructor_usage_errors() -> None:
    with pytest.raises(ConfigError, match="at least one recipient"):
        Encryptor([])
    with pytest.raises(ConfigError, match="not one string"):
        Encryptor(RCPT1)
    with pytest.raises(ConfigError, match="16 bytes"):
        Encryptor([RCPT1], file_key=b"short")
    with pytest.raises(ConfigError, match="at least one identity"):
        Decryptor([])
    with pytest.raises(ConfigError):
        Decryptor([RCPT1])
    enc = Encryptor([RCPT1])
    enc.finalize()
    with pytest.raises(ConfigError, match="after finalize"):
        enc.update(b"x")


# -------------------------------------------------------------------------------------- format and sizes


def test_file_layout_matches_spec_independently() -> None:
    """Header MAC and payload checked here with the spec's formulas, not with our Decryptor."""
    file_key = bytes(range(16))
    plain = os.urandom(CHUNK_SIZE + 10)
    enc = Encryptor([RCPT1, RCPT2], file_key=file_key)
    ct = enc.header + enc.update(plain) + enc.finalize()
    lines = enc.header.split(b"\n")
    assert lines[0] == b"age-encryption.org/v1"
    assert lines[1].startswith(b"-> X25519 ") and len(lines[1]) == len(b"-> X25519 ") + 43
    assert len(lines[2]) == 43 and lines[3].startswith(b"-> X25519 ")
    mac_line = lines[5]
    assert mac_line.startswith(b"--- ") and len(mac_line) == 47
    head = enc.header[: enc.header.index(b"\n---") + 4]
    mac = hmac.new(_hkdf(file_key, b"", b"header"), head, hashlib.sha256).digest()
    assert base64.b64encode(mac).rstrip(b"=") == mac_line[4:]

    nonce = enc.header[-16:]
    aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
    payload = ct[len(enc.header) :]
    assert len(payload) == CHUNK_SIZE + 16 + 10 + 16
    first = aead.decrypt(bytes(11) + b"\x00", payload[:ENC_CHUNK], None)
    last = aead.decrypt((1).to_bytes(11, "big") + b"\x01", payload[ENC_CHUNK:], None)
    assert first + last == plain


def test_encryptor_holds_back_a_full_chunk_until_it_knows_it_is_not_last() -> None:
    enc = Encryptor([RCPT1])
    assert enc.update(bytes(CHUNK_SIZE)) == b""
    assert len(enc.update(b"\x01")) == ENC_CHUNK
    assert len(enc.finalize()) == 1 + 16

    enc = Encryptor([RCPT1])
    assert enc.update(bytes(2 * CHUNK_SIZE)) and len(enc.update(b"")) == 0
    assert len(enc.finalize()) == ENC_CHUNK  # exact multiple: full final chunk, no empty extra one

    enc = Encryptor([RCPT1])
    assert len(enc.finalize()) == 16  # empty plaintext: one empty final chunk


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 65537, 131072, 3 * 65536 + 5])
def test_encrypted_size_is_exact(size: int) -> None:
    enc = Encryptor([RCPT1, RCPT2, RCPT3])
    total = len(enc.header) + len(enc.update(bytes(size))) + len(enc.finalize())
    assert enc.encrypted_size(size) == total == ciphertext_size(size, len(enc.header))


def test_update_accepts_bytearray_and_memoryview_without_holding_them() -> None:
    plain = bytearray(os.urandom(70_000))
    enc = Encryptor([RCPT1])
    ct = enc.header + enc.update(plain) + enc.update(memoryview(b"tail")) + enc.finalize()
    plain.append(0)  # would raise BufferError if a view on it were still alive
    dec = Decryptor([ID1])
    out = dec.update(bytearray(ct)) + dec.update(memoryview(b"")) + dec.finalize()
    assert out == bytes(plain[:-1]) + b"tail"
    words = memoryview(bytes(8)).cast("H")  # non-byte format: taken as its 8 raw bytes
    enc = Encryptor([RCPT1])
    assert _decrypt(enc.header + enc.update(words) + enc.finalize()) == bytes(8)


# ------------------------------------------------------------------------------------------ round trips

ROUND_TRIP_SIZES = [0, 1, 65535, 65536, 65537, 131072, 3 * 65536 + 5]
# Tiny and empty pieces mixed with large ones; the trailing large piece bounds the number of update()
# calls per example (test_round_trip_one_byte_at_a_time covers a pure 1-byte feed).
PIECES = st.lists(st.one_of(st.integers(0, 17), st.integers(1, 3 * 65536)), min_size=0, max_size=12).map(
    lambda sizes: [*sizes, CHUNK_SIZE + 7]
)


@pytest.mark.parametrize("size", ROUND_TRIP_SIZES)
@pytest.mark.parametrize("n_recipients", [1, 3])
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(enc_pieces=PIECES, dec_pieces=PIECES, which=st.integers(0, 2))
def test_round_trip_random_pieces(
    size: int, n_recipients: int, enc_pieces: list[int], dec_pieces: list[int], which: int
) -> None:
    plain = random.Random(size).randbytes(size)
    pairs = [(ID1, RCPT1), (ID2, RCPT2), (ID3, RCPT3)][:n_recipients]
    enc = Encryptor([r for _, r in pairs])
    ct = enc.header + _feed(enc, plain, enc_pieces)
    assert len(ct) == enc.encrypted_size(size)
    identity = pairs[which % n_recipients][0]
    assert _feed(Decryptor([identity]), ct, dec_pieces) == plain


def test_round_trip_one_byte_at_a_time() -> None:
    plain = os.urandom(300)
    ct = _encrypt(plain, [RCPT1, RCPT2])
    assert _decrypt(ct, [ID3, ID2], piece=1) == plain


def test_streams_round_trip(tmp_path: Path) -> None:
    plain = os.urandom(2 * 1024 * 1024 + 3)
    (tmp_path / "p").write_bytes(plain)
    with (tmp_path / "p").open("rb") as src, (tmp_path / "c").open("wb") as dst:
        encrypt_stream(src, dst, [RCPT1])
    with (tmp_path / "c").open("rb") as src, (tmp_path / "o").open("wb") as dst:
        decrypt_stream(src, dst, [ID1])
    assert (tmp_path / "o").read_bytes() == plain
    assert (tmp_path / "c").stat().st_size == ciphertext_size(len(plain), _header_len(_encrypt(b"")))


def test_wrong_identity_is_no_match() -> None:
    with pytest.raises(AgeNoMatchError, match="none of the 1 identities"):
        _decrypt(_encrypt(b"secret", [RCPT1]), [ID2])


# ------------------------------------------------------------------------------------ header strictness


def _file_with(stanza_lines: bytes, file_key: bytes = b"K" * 16, plain: bytes = b"hello") -> bytes:
    """A valid file (for ID1) with extra hand-written stanzas before ID1's stanza, MAC recomputed."""
    ours, payload = _split_file(_encrypt(plain, [RCPT1], file_key=file_key))
    return _remac(stanza_lines + ours, file_key, payload)


B64_32 = base64.b64encode(bytes(32)).rstrip(b"=")


def test_unknown_stanzas_are_skipped() -> None:
    grease = b"-> grease x y\n" + base64.b64encode(bytes(48)) + b"\n\n-> empty\n\n"
    assert _decrypt(_file_with(grease)) == b"hello"


@pytest.mark.parametrize(
    ("lines", "needle"),
    [
        (b"-> scrypt c2FsdHNhbHRzYWx0c2FsdA 10\nAAAA\n", "scrypt stanza must be the only"),
        (b"-> a\n" + b"A" * 64 + b"\n", "short line"),  # full line then the next stanza
        (b"-> a\nAAA=\n", "canonical"),
        (b"-> a\nAAB\n", "canonical"),  # non-zero trailing bits
        (b"-> a\nAA\r\n", "canonical"),
        (b"-> a\n" + b"A" * 65 + b"\n\n", "longer than 64"),
        (b"-> a  b\n\n", "argument is empty"),
        (b"-> a\xc3\xa9\n\n", "printable ASCII"),
        (b"->\n\n", "neither a stanza"),
        (b"-> X25519\n" + B64_32 + b"\n", "1 arguments"),
        (b"-> X25519 " + B64_32 + b" extra\n" + B64_32 + b"\n", "3 arguments"),
        (b"-> X25519 " + B64_32 + b"\n\n", "body is 0 bytes"),
        (b"-> X25519 " + base64.b64encode(bytes(32)) + b"\n" + B64_32 + b"\n", "share is not canonical"),
        (b"-> X25519 " + B64_32[:-1] + b"\n" + B64_32 + b"\n", "share is not canonical"),
        (b"-> X25519 " + B64_32 + b"A\n" + B64_32 + b"\n", "share is not canonical"),
    ],
)
def test_header_grammar_violations(lines: bytes, needle: str) -> None:
    with pytest.raises(AgeHeaderError, match=needle):
        _decrypt(_file_with(lines))


def test_stanza_count_is_capped() -> None:
    many = b"-> g\n\n" * MAX_STANZAS
    with pytest.raises(AgeHeaderError, match=f"more than {MAX_STANZAS} stanzas"):
        _decrypt(_file_with(many))
    assert _decrypt(_file_with(b"-> g\n\n" * (MAX_STANZAS - 1))) == b"hello"


def test_header_size_is_bounded_without_buffering_everything() -> None:
    dec = Decryptor([ID1])
    dec.update(b"age-encryption.org/v1\n")
    line = b"-> grease\n" + b"A" * 64 + b"\n"
    with pytest.raises(AgeHeaderError, match=f"within {MAX_HEADER_SIZE} bytes"):
        for _ in range(10 * MAX_HEADER_SIZE // len(line)):
            dec.update(line)
    assert len(dec._buf) < MAX_HEADER_SIZE + 2 * len(line)


def test_non_age_input_is_rejected_at_once() -> None:
    dec = Decryptor([ID1])
    with pytest.raises(AgeHeaderError, match="not an age file"):
        dec.update(b"\x89PNG\r\n")
    with pytest.raises(AgeHeaderError, match="unsupported age version 'v2'"):
        Decryptor([ID1]).update(b"age-encryption.org/v2\n-> X25519")
    with pytest.raises(AgeHeaderError, match="empty"):
        Decryptor([ID1]).finalize()


# ---------------------------------------------------------------------------- tampering never escapes


SMALL_PLAIN = b"evidence frame " * 7


def test_every_single_bit_flip_is_detected() -> None:
    ct = _encrypt(SMALL_PLAIN, [RCPT2, RCPT1])
    for pos in range(len(ct)):
        for mask in (0x01, 0x80):
            bad = bytearray(ct)
            bad[pos] ^= mask
            with pytest.raises(IntegrityError):
                _decrypt(bytes(bad))


def test_every_truncation_is_detected() -> None:
    ct = _encrypt(SMALL_PLAIN)
    for cut in range(len(ct)):
        with pytest.raises(IntegrityError):
            _decrypt(ct[:cut])


def test_multi_chunk_truncation_flips_and_splices() -> None:
    plain = os.urandom(3 * CHUNK_SIZE + 5)
    ct = _encrypt(plain)
    hl = _header_len(ct)
    cuts = {hl + k * ENC_CHUNK + d for k in range(4) for d in (-17, -16, -1, 0, 1, 16, 17)}
    for cut in sorted(c for c in cuts if c < len(ct)):
        with pytest.raises((AgePayloadError, AgeHeaderError)):
            _decrypt(ct[:cut], piece=50_000)
    for pos in [hl - 16, hl - 1, hl, hl + ENC_CHUNK - 1, hl + ENC_CHUNK, hl + 2 * ENC_CHUNK + 7, len(ct) - 1]:
        bad = bytearray(ct)
        bad[pos] ^= 0x40
        with pytest.raises(AgePayloadError):
            _decrypt(bytes(bad), piece=70_000)
    chunks = [ct[hl + i * ENC_CHUNK : hl + (i + 1) * ENC_CHUNK] for i in range(4)]
    swapped = ct[:hl] + chunks[1] + chunks[0] + chunks[2] + chunks[3]
    with pytest.raises(AgePayloadError, match="chunk 0"):
        _decrypt(swapped)
    dropped = ct[:hl] + chunks[0] + chunks[2] + chunks[3]
    with pytest.raises(AgePayloadError, match="chunk 1"):
        _decrypt(dropped)


@pytest.mark.parametrize("size", [5, CHUNK_SIZE, 2 * CHUNK_SIZE])
# Fixed bytes (seeded), not os.urandom at collection: pytest-xdist workers must collect the same ids.
@pytest.mark.parametrize(
    "extra",
    [b"\x00", bytes(16), random.Random(17).randbytes(17), random.Random(ENC_CHUNK).randbytes(ENC_CHUNK)],
    ids=["one-zero-byte", "16-zero-bytes", "17-random-bytes", "a-whole-chunk"],
)
def test_trailing_garbage_is_detected(size: int, extra: bytes) -> None:
    ct = _encrypt(os.urandom(size))
    with pytest.raises(AgePayloadError):
        _decrypt(ct + extra)
    with pytest.raises(AgePayloadError):
        _decrypt(ct + ct[-ENC_CHUNK:] if size >= CHUNK_SIZE else ct + ct[-21:])


def test_full_final_chunk_followed_by_data_is_named() -> None:
    ct = _encrypt(bytes(CHUNK_SIZE))
    with pytest.raises(AgePayloadError, match="final chunk but more data follows"):
        _decrypt(ct + b"x")
    with pytest.raises(AgePayloadError, match="truncated"):
        _decrypt(_encrypt(bytes(CHUNK_SIZE + 1))[:-17])


def test_failed_decryptor_stays_failed() -> None:
    dec = Decryptor([ID1])
    with pytest.raises(AgeHeaderError):
        dec.update(b"garbage!")
    with pytest.raises(AgeHeaderError):
        dec.update(b"age-encryption.org/v1\n")
    with pytest.raises(AgeHeaderError):
        dec.finalize()


# ---------------------------------------------------------------------------------------- stock age CLI


def _run(args: list[str], data: bytes = b"") -> bytes:
    proc = subprocess.run(args, input=data, capture_output=True, check=False, timeout=30)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


@needs_age
@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, 200_000])
def test_stock_age_decrypts_ours(tmp_path: Path, size: int) -> None:
    keyfile = tmp_path / "key.txt"
    keyfile.write_text(ID2 + "\n")
    plain = os.urandom(size)
    ct = _encrypt(plain, [RCPT1, RCPT2, RCPT3])
    assert _run([str(AGE), "-d", "-i", str(keyfile)], ct) == plain


@needs_age
@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE, 2 * CHUNK_SIZE + 3])
def test_we_decrypt_stock_age(size: int) -> None:
    plain = os.urandom(size)
    ct = _run([str(AGE), "-e", "-r", RCPT3, "-r", RCPT1], plain)
    assert _decrypt(ct, [ID1], piece=40_000) == plain
    with pytest.raises(AgeNoMatchError):
        _decrypt(ct, [ID2])


@needs_age
def test_stock_keygen_identity_accepted(tmp_path: Path) -> None:
    keyfile = tmp_path / "key.txt"
    _run([str(AGE_KEYGEN), "-o", str(keyfile)])
    text = keyfile.read_text()
    [identity] = read_identities(text)
    stated = next(line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("# public key: "))
    assert recipient_of(identity) == stated == _run([str(AGE_KEYGEN), "-y", str(keyfile)]).decode().strip()
    plain = b"clip" * 1000
    assert _run([str(AGE), "-d", "-i", str(keyfile)], _encrypt(plain, [stated])) == plain
    assert _decrypt(_run([str(AGE), "-e", "-r", stated], plain), [identity]) == plain


def test_resume_reproduces_the_same_ciphertext_and_checks_the_file_key() -> None:
    import os as _os

    from bodycam.drivers.errors import ConfigError as _ConfigError

    identity, recipient = agecrypt.generate_identity()
    file_key = _os.urandom(16)
    data = _os.urandom(3 * 65536 + 17)
    first = agecrypt.Encryptor([recipient], file_key=file_key)
    original = first.header + first.update(data) + first.finalize()
    again = agecrypt.Encryptor.resume(first.header, file_key)
    assert again.header + again.update(data) + again.finalize() == original
    with pytest.raises(_ConfigError):
        agecrypt.Encryptor.resume(first.header, _os.urandom(16))
    dec = agecrypt.Decryptor([identity])
    assert dec.update(original) + dec.finalize() == data


class _Buffers:
    """A SealSink of fixed-size buffers, like the pull's ring of part buffers, collecting what it got."""

    def __init__(self, size: int) -> None:
        self.size, self.full, self.buf, self.fill = size, [], bytearray(size), 0
        self.direct = 0

    def reserve(self, n: int) -> memoryview | None:
        if self.fill == self.size:
            self.full.append(bytes(self.buf))
            self.buf, self.fill = bytearray(self.size), 0
        if self.fill + n > self.size:
            return None
        self.fill += n
        self.direct += 1
        return memoryview(self.buf)[self.fill - n : self.fill]

    def reserve_run(self, unit: int, count: int) -> memoryview | None:
        if self.fill == self.size:
            self.full.append(bytes(self.buf))
            self.buf, self.fill = bytearray(self.size), 0
        fits = min(count, (self.size - self.fill) // unit)
        return self.reserve(fits * unit) if fits else None

    def write(self, data: bytes) -> None:
        for byte in data:
            if self.fill == self.size:
                self.full.append(bytes(self.buf))
                self.buf, self.fill = bytearray(self.size), 0
            self.buf[self.fill] = byte
            self.fill += 1

    def value(self) -> bytes:
        return b"".join(self.full) + bytes(self.buf[: self.fill])


@pytest.mark.parametrize("buffer_size", [200_000, 65536 + 16, 3 * (65536 + 16) + 5])
def test_update_into_seals_into_caller_buffers_byte_for_byte(buffer_size: int, tmp_path: Path) -> None:
    """The pull seals age chunks into preallocated part buffers (issue 14): the bytes must be exactly
    what update/finalize produce, chunks straddling a buffer boundary included, and stock age reads them."""
    file_key, plain = os.urandom(16), random.Random(buffer_size).randbytes(5 * CHUNK_SIZE + 1234)
    reference = Encryptor([RCPT1], file_key=file_key)
    expected = reference.header + reference.update(plain) + reference.finalize()
    enc = Encryptor.resume(reference.header, file_key)
    sink = _Buffers(buffer_size)
    sink.write(enc.header)
    for start in range(0, len(plain), 100_000):
        enc.update_into(memoryview(plain)[start : start + 100_000], sink)
    enc.finalize_into(sink)
    assert sink.value() == expected
    assert sink.direct > 0  # sealed in place, not only through write()
    if AGE is not None:
        keyfile = tmp_path / "key"
        keyfile.write_text(ID1 + "\n")
        assert _run([str(AGE), "-d", "-i", str(keyfile)], sink.value()) == plain


class _CountingBuffers(_Buffers):
    """A :class:`_Buffers` counting the reservations the encryptor makes."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.reservations = 0

    def reserve(self, n: int) -> memoryview | None:
        self.reservations += 1
        return super().reserve(n)


def test_update_into_seals_a_frames_chunks_with_one_reservation_per_buffer() -> None:
    """A camera frame of 1 MiB is 16 age chunks: they are sealed as one run into the part buffer (one
    reservation, not one a chunk: 16,384 fewer calls and views a GiB, issue 14), splitting the run only
    where a buffer ends, and the bytes are still exactly update()'s."""
    file_key, plain = os.urandom(16), random.Random(3).randbytes(4 * 16 * CHUNK_SIZE)
    reference = Encryptor([RCPT1], file_key=file_key)
    expected = reference.header + reference.update(plain) + reference.finalize()
    enc = Encryptor.resume(reference.header, file_key)
    sink = _CountingBuffers(40 * (CHUNK_SIZE + 16) + 7)  # a buffer ends inside the third frame
    sink.write(enc.header)
    for start in range(0, len(plain), 16 * CHUNK_SIZE):
        enc.update_into(memoryview(plain)[start : start + 16 * CHUNK_SIZE], sink)
    enc.finalize_into(sink)
    assert sink.value() == expected
    # per frame the chunk held back from the one before and one run; one more where a buffer ends (the
    # straddling chunk between goes through write()), and the final chunk: 10, against 65 a chunk each
    assert sink.reservations <= 2 * 4 + 1 + 1


# ------------------------------------------------------------------------- MLKEM768-X25519 hybrid recipients

# The example key pair of the age spec (c2sp.org/age); the 1959-character recipient is pinned by its hash.
SPEC_PQ_IDENTITY = "AGE-SECRET-KEY-PQ-1XX76JRALNLXDMEW0CRK45QMCCH4X06SE84UN3VPM33W6HWDX0H3SK3ZQFR"
SPEC_PQ_RECIPIENT_SHA256 = "a091dd7e0ee9d62b75173dcc98441a0424baa941e66a8776e570a4ae60ff61ea"
PQ_ID1, PQ_RCPT1 = generate_hybrid_identity()
PQ_ID2, PQ_RCPT2 = generate_hybrid_identity()


def test_spec_hybrid_identity_maps_to_spec_recipient() -> None:
    """Seed expansion (SHAKE256 -> ML-KEM-768 seed + X25519 scalar) as filippo.io/hpke-pq does it."""
    recipient = recipient_of(SPEC_PQ_IDENTITY)
    assert recipient.startswith("age1pq1") and len(recipient) == 1959
    assert hashlib.sha256(recipient.encode()).hexdigest() == SPEC_PQ_RECIPIENT_SHA256
    assert recipient_of(SPEC_PQ_IDENTITY.lower()) == recipient
    key = parse_recipient(recipient)
    assert isinstance(key, agecrypt.HybridPublicKey)
    assert key.public_bytes_raw() == parse_identity(SPEC_PQ_IDENTITY).public_key().public_bytes_raw()


def test_generate_hybrid_identity_shape_and_pairing() -> None:
    secret, recipient = generate_hybrid_identity()
    assert secret.startswith("AGE-SECRET-KEY-PQ-1") and secret == secret.upper() and len(secret) == 77
    assert recipient.startswith("age1pq1") and recipient == recipient.lower() and len(recipient) == 1959
    assert recipient_of(secret) == recipient
    assert agecrypt.is_post_quantum(recipient) and not agecrypt.is_post_quantum(RCPT1)
    assert read_identities(f"# public key: {recipient}\n{secret}\n{ID1}\n") == [secret, ID1]


def test_hybrid_stanza_shape() -> None:
    enc = Encryptor([PQ_RCPT1, PQ_RCPT2])
    lines = enc.header.split(b"\n")
    for stanza, body in ((lines[1], lines[2]), (lines[3], lines[4])):
        kind, arg = stanza.split(b" ")[1:]
        assert kind == b"mlkem768x25519"
        assert len(base64.b64decode(arg + b"==")) == 1120 and len(arg) == 1494
        assert len(body) == 43  # 16-byte file key + 16-byte tag
    assert lines[5].startswith(b"--- ")


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 5])
def test_hybrid_round_trip(size: int) -> None:
    plain = random.Random(size).randbytes(size)
    ct = _encrypt(plain, [PQ_RCPT1, PQ_RCPT2])
    assert _decrypt(ct, [PQ_ID2], piece=50_000) == plain
    assert _decrypt(ct, [ID1, PQ_ID1]) == plain
    with pytest.raises(AgeNoMatchError, match="none of the 1 identities"):
        _decrypt(ct, [ID1])  # an X25519 identity never matches a hybrid stanza


def test_hybrid_wrong_identity_is_no_match() -> None:
    with pytest.raises(AgeNoMatchError):
        _decrypt(_encrypt(b"secret", [PQ_RCPT1]), [PQ_ID2])


def test_hybrid_and_x25519_recipients_are_not_mixed() -> None:
    """A file with an X25519 stanza is only as safe as X25519: age refuses the mix, and so do we."""
    for recipients in ([PQ_RCPT1, RCPT1], [RCPT1, PQ_RCPT1]):
        with pytest.raises(ConfigError, match="mix 1 post-quantum"):
            Encryptor(recipients)
    with pytest.raises(ConfigError, match="mix"):
        agecrypt.check_recipients([RCPT2, PQ_RCPT2, RCPT1])
    assert len(agecrypt.check_recipients([PQ_RCPT1, PQ_RCPT2])) == 2


def test_hybrid_header_stays_within_what_readers_accept() -> None:
    many = [PQ_RCPT1] * 40
    assert len(Encryptor(many).header) <= MAX_HEADER_SIZE
    with pytest.raises(ConfigError, match=f"larger than {MAX_HEADER_SIZE} bytes"):
        Encryptor([PQ_RCPT1] * 50)


def test_hybrid_resume_reproduces_the_same_ciphertext() -> None:
    file_key = os.urandom(16)
    data = os.urandom(2 * CHUNK_SIZE + 3)
    first = Encryptor([PQ_RCPT1], file_key=file_key)
    original = first.header + first.update(data) + first.finalize()
    again = Encryptor.resume(first.header, file_key)
    assert again.header + again.update(data) + again.finalize() == original
    assert _decrypt(original, [PQ_ID1]) == data


def test_hybrid_header_bit_flips_are_detected() -> None:
    ct = _encrypt(SMALL_PLAIN, [PQ_RCPT1])
    for pos in range(0, _header_len(ct), 7):
        bad = bytearray(ct)
        bad[pos] ^= 0x01
        with pytest.raises(IntegrityError):
            _decrypt(bytes(bad), [PQ_ID1])


def test_hybrid_low_order_recipient_is_refused() -> None:
    mlkem_part = parse_recipient(PQ_RCPT1).public_bytes_raw()[:1184]
    weak = agecrypt._bech32_encode("age1pq", mlkem_part + bytes(32))
    with pytest.raises(ConfigError, match="low-order"):
        Encryptor([weak])
