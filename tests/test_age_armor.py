"""ASCII-armored age files (``age -a``): the streaming decoder, detection, bounds and stock-age interop.

The CCTV ``armor_*`` vectors (tests/test_agecrypt.py::test_cctv_vector) pin the grammar with the reader
told the file is armored, as the testkit's harness does; these tests pin detection from the first bytes
(what ``Decryptor()`` does by default), streaming in pieces of any size, and that memory stays bounded.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bodycam.agent.formats.agearmor import BEGIN, END, MAX_WHITESPACE, WHITESPACE, ArmorDecoder
from bodycam.agent.formats.agecrypt import (
    CHUNK_SIZE,
    AgeArmorError,
    AgeHeaderError,
    AgeNoMatchError,
    AgePayloadError,
    Decryptor,
    Encryptor,
    decrypt_stream,
    generate_identity,
)
from bodycam.drivers.errors import IntegrityError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_agecrypt import EXPECTED_ERROR, VECTOR_FILES, _read_vector

AGE = shutil.which("age")
ID1, RCPT1 = generate_identity()
ID2, _RCPT2 = generate_identity()
ARMORED_VECTORS = [name for name in VECTOR_FILES if "armored" in _read_vector(name)[0]]


def armor(data: bytes, eol: bytes = b"\n") -> bytes:
    """What ``age -a`` writes: BEGIN, padded base64 in 64-column lines, END."""
    text = base64.b64encode(data)
    lines = [BEGIN] + [text[i : i + 64] for i in range(0, len(text), 64)] + [END]
    return eol.join(lines) + eol


def encrypt(plain: bytes) -> bytes:
    enc = Encryptor([RCPT1])
    return enc.header + enc.update(plain) + enc.finalize()


def feed(dec: Decryptor, data: bytes, piece: int) -> bytes:
    out = bytearray()
    for i in range(0, len(data), piece):
        out += dec.update(data[i : i + piece])
    return bytes(out + dec.finalize())


def test_there_are_33_armored_vectors() -> None:
    assert len(ARMORED_VECTORS) == 33


@pytest.mark.parametrize("name", ARMORED_VECTORS)
def test_armored_vectors_are_detected_without_being_told(name: str) -> None:
    """``Decryptor()`` tells armor from its first bytes, fed 7 bytes at a time, and reaches the testkit's verdict.

    The one exception is garbage before the BEGIN line: not knowing the file is armored, the reader sees
    neither an age file nor armor (as ``age -d`` does).
    """
    meta, body = _read_vector(name)
    expect = meta["expect"][0]
    if name == "armor_garbage_leading":
        expect = "header failure"
    dec = Decryptor(meta.get("identity", []) or [ID1], passphrase=(meta.get("passphrase") or [None])[0])
    if expect == "success":
        assert len(feed(dec, body, 7)) > 0
        return
    with pytest.raises(EXPECTED_ERROR[expect]) as info:
        feed(dec, body, 7)
    assert "\n" not in str(info.value)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.sampled_from([0, 1, 47, 48, 49, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE + 100]),
    piece=st.sampled_from([1, 7, 64, 65, 66, 4096, CHUNK_SIZE + 16, 70_000]),
    eol=st.sampled_from([b"\n", b"\r\n"]),
    lead=st.sampled_from([b"", b"\n", b" \t\r\n", b" " * MAX_WHITESPACE]),
    trail=st.sampled_from([b"", b"\n", b"\r\n \t", b" " * (MAX_WHITESPACE - 2)]),
)
def test_armored_round_trip_in_any_pieces(size: int, piece: int, eol: bytes, lead: bytes, trail: bytes) -> None:
    if piece < 64:
        size = min(size, 100)  # byte-sized pieces of a multi-chunk file only cost time
    plain = os.urandom(size)
    data = lead + armor(encrypt(plain), eol) + trail
    assert feed(Decryptor([ID1]), data, piece) == plain
    assert feed(Decryptor([ID1], armor=True), data, piece) == plain


def test_armor_flag_forces_or_refuses_armor() -> None:
    ct = encrypt(b"clip")
    with pytest.raises(AgeArmorError, match="not '-----BEGIN AGE ENCRYPTED FILE-----'"):
        feed(Decryptor([ID1], armor=True), ct, 1000)
    with pytest.raises(AgeHeaderError, match="not an age file"):
        feed(Decryptor([ID1], armor=False), armor(ct), 1000)
    assert feed(Decryptor([ID1], armor=False), ct, 1000) == b"clip"
    chars = memoryview(armor(ct)).cast("c")  # a view of one-byte 'c' items is still told apart by its bytes
    dec = Decryptor([ID1])
    assert dec.update(chars) + dec.finalize() == b"clip"


def test_binary_files_keep_the_direct_path() -> None:
    """Armor is looked for on the first bytes only: a binary file's updates go straight to the chunks."""
    ct = encrypt(os.urandom(3 * CHUNK_SIZE))
    dec = Decryptor([ID1])
    dec.update(ct[:1000])
    assert dec._armor is None and dec._direct
    armored = Decryptor([ID1])
    armored.update(armor(ct)[:2000])
    assert armored._armor is not None and not armored._direct


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "empty"),
        (b" \n\t", "empty"),
        (b" " * (MAX_WHITESPACE + 1) + BEGIN + b"\n", f"more than {MAX_WHITESPACE} bytes of whitespace before"),
        (BEGIN + b"\n", "truncated"),
        (armor(b"x" * 48)[: -len(END) - 1], "truncated"),
        (armor(b"x" * 100) + b" " * (MAX_WHITESPACE + 1), "whitespace after"),
        (armor(b"x" * 100) + b"\n\n" + BEGIN + b"\n", "data follows"),
    ],
)
def test_armor_framing_errors_are_named(data: bytes, needle: str) -> None:
    dec = ArmorDecoder()
    with pytest.raises(AgeArmorError, match=needle):
        dec.update(data)
        dec.finalize()


def test_armor_memory_is_bounded() -> None:
    """A line that never ends is refused after 66 bytes, and between calls at most one line is held."""
    dec = ArmorDecoder()
    dec.update(BEGIN + b"\n")
    with pytest.raises(AgeArmorError, match="longer than 64 columns"):
        for _ in range(1000):
            dec.update(b"A" * 50)
    assert len(dec._pending) <= 66 + 50
    ok = ArmorDecoder()
    data = armor(os.urandom(500_000))
    for i in range(0, len(data), 4097):
        ok.update(data[i : i + 4097])
        assert len(ok._pending) <= 66
    ok.finalize()


def test_armored_errors_stay_failed_and_release_only_whole_chunks() -> None:
    plain = os.urandom(3 * CHUNK_SIZE)
    data = armor(encrypt(plain))
    cut = data[: len(data) // 2]
    dec = Decryptor([ID1])
    released = dec.update(cut)
    assert len(released) % CHUNK_SIZE == 0 and plain.startswith(released)
    with pytest.raises(AgeArmorError, match="truncated"):
        dec.finalize()
    with pytest.raises(AgeArmorError):
        dec.finalize()
    with pytest.raises(AgeNoMatchError):
        feed(Decryptor([ID2]), data, 10_000)
    spliced = data.replace(data.split(b"\n")[5], data.split(b"\n")[6], 1)
    with pytest.raises(IntegrityError):
        feed(Decryptor([ID1]), spliced, 10_000)
    extended = armor(encrypt(plain) + b"tail")
    with pytest.raises(AgePayloadError):
        feed(Decryptor([ID1]), extended, 10_000)


@pytest.mark.skipif(AGE is None, reason="stock age CLI not installed")
@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE, 2 * CHUNK_SIZE + 3])
def test_stock_age_armored_output_decrypts(tmp_path: Path, size: int) -> None:
    """``age -a -r`` output (binary and armored are told apart by the first bytes) opens here."""
    assert AGE is not None
    plain = os.urandom(size)
    proc = subprocess.run([AGE, "-a", "-r", RCPT1], input=plain, capture_output=True, timeout=60, check=True)
    assert proc.stdout.startswith(BEGIN + b"\n")
    assert feed(Decryptor([ID1]), proc.stdout, 1000) == plain
    (tmp_path / "f.age").write_bytes(proc.stdout)
    with (tmp_path / "f.age").open("rb") as src, (tmp_path / "out").open("wb") as dst:
        decrypt_stream(src, dst, [ID1])
    assert (tmp_path / "out").read_bytes() == plain


def reference_decode(data: bytes) -> bytes | None:
    """The armor rules read line by line, as Go's filippo.io/age/armor does; ``None`` for an armor error."""
    body = data.lstrip(WHITESPACE)
    if len(data) - len(body) > MAX_WHITESPACE:
        return None
    raw = body.split(b"\n")
    lines = [line.removesuffix(b"\r") for line in raw]
    if lines[0] != BEGIN:
        return None
    out, i = b"", 1
    while i < len(lines) and lines[i] != END:
        line = lines[i]
        if not line or len(line) > 64 or len(line) % 4:
            return None
        try:
            decoded = base64.b64decode(line, validate=True)
        except ValueError:
            return None
        if base64.b64encode(decoded) != line:
            return None
        out += decoded
        i += 1
        if len(decoded) < 48 and (i >= len(lines) or lines[i] != END):
            return None
    if i >= len(lines):
        return None
    trailing = b"\n".join(raw[i + 1 :])
    return out if not trailing.strip(WHITESPACE) and len(trailing) <= MAX_WHITESPACE else None


def decode_in_pieces(data: bytes, piece: int) -> bytes | None:
    dec, out = ArmorDecoder(), b""
    try:
        for i in range(0, len(data), piece):
            out += dec.update(data[i : i + piece])
        return out + dec.finalize()
    except AgeArmorError:
        return None


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(0, 400),
    eol=st.sampled_from([b"\n", b"\r\n"]),
    at=st.floats(0, 1),
    edit=st.sampled_from(["insert", "delete", "replace", "none"]),
    byte=st.sampled_from(list(b"=\r\n A/*-\t")),
    piece=st.sampled_from([1, 5, 64, 65, 66, 130, 100_000]),
)
def test_decoder_agrees_with_the_line_by_line_rules(
    size: int, eol: bytes, at: float, edit: str, byte: int, piece: int
) -> None:
    """Fast path and fallback alike, in any piece size, accept exactly what the line-by-line rules do."""
    data = bytearray(armor(os.urandom(size), eol))
    i = int(at * (len(data) - 1))
    if edit == "insert":
        data.insert(i, byte)
    elif edit == "delete":
        del data[i]
    elif edit == "replace":
        data[i] = byte
    assert decode_in_pieces(bytes(data), piece) == reference_decode(bytes(data))
