"""Passphrase (scrypt) age files: ``Decryptor(passphrase=...)`` against hand-built files and stock ``age -p``.

The CCTV vectors (tests/test_agecrypt.py::test_cctv_vector, ``scrypt*``) pin the grammar; these tests pin
the API, the work-factor cap and that what stock ``age -p`` writes (work factor 18) opens. ``age -p`` reads
the passphrase from its controlling terminal only, so the test gives it a real pty (``setsid --ctty``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from bodycam.agent.formats.agecrypt import (
    CHUNK_SIZE,
    MAX_SCRYPT_WORK_FACTOR,
    AgeHeaderError,
    AgeNoMatchError,
    Decryptor,
    Encryptor,
    decrypt_stream,
    generate_identity,
)
from bodycam.drivers.errors import ConfigError

AGE = shutil.which("age")
SETSID = shutil.which("setsid")
ID1, RCPT1 = generate_identity()
FILE_KEY = b"passphrase-key16"


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def scrypt_file(plain: bytes, passphrase: bytes, log_n: int, salt: bytes = b"S" * 16) -> bytes:
    """An age -p file built from the spec alone (scrypt stanza, MAC), its payload sealed by our Encryptor."""
    key = Scrypt(salt=b"age-encryption.org/v1/scrypt" + salt, length=32, n=1 << log_n, r=8, p=1).derive(passphrase)
    body = ChaCha20Poly1305(key).encrypt(bytes(12), FILE_KEY, None)
    head = b"age-encryption.org/v1\n-> scrypt " + _b64(salt) + b" %d\n" % log_n + _b64(body) + b"\n---"
    mac_key = HKDF(algorithm=SHA256(), length=32, salt=b"", info=b"header").derive(FILE_KEY)
    mac = hmac.new(mac_key, head, hashlib.sha256).digest()
    enc = Encryptor([RCPT1], file_key=FILE_KEY)
    payload = enc.header[enc.header.index(b"\n", enc.header.index(b"\n---") + 1) + 1 :]  # the nonce
    return head + b" " + _b64(mac) + b"\n" + payload + enc.update(plain) + enc.finalize()


def _open(data: bytes, **kwargs: object) -> bytes:
    dec = Decryptor(**kwargs)  # type: ignore[arg-type]
    return dec.update(data) + dec.finalize()


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE + 1])
def test_passphrase_opens_an_scrypt_file(size: int) -> None:
    plain = os.urandom(size)
    data = scrypt_file(plain, "correct horse ☃".encode(), 10)
    assert _open(data, passphrase="correct horse ☃") == plain  # str is UTF-8, as age reads it
    assert _open(data, passphrase="correct horse ☃".encode()) == plain
    assert _open(data, identities=[ID1], passphrase="correct horse ☃") == plain


def test_wrong_or_missing_passphrase_is_no_match() -> None:
    data = scrypt_file(b"clip", b"right", 10)
    with pytest.raises(AgeNoMatchError, match="passphrase does not open"):
        _open(data, passphrase="wrong")
    with pytest.raises(AgeNoMatchError, match="no passphrase was given"):
        _open(data, identities=[ID1])
    enc = Encryptor([RCPT1])
    with pytest.raises(AgeNoMatchError, match="only a passphrase was given"):
        _open(enc.header + enc.finalize(), passphrase="right")


def test_work_factor_above_the_cap_is_a_header_error_naming_it() -> None:
    """Refused from the stanza alone: a hostile 2^22 (4 GiB) or 2^63 header never reaches scrypt."""
    assert _open(scrypt_file(b"x", b"pw", 10), passphrase="pw") == b"x"
    # A stanza claiming cap + 1 (its body is for 10: if scrypt ran, this would be a no-match instead).
    over = scrypt_file(b"x", b"pw", 10).replace(b" 10\n", b" %d\n" % (MAX_SCRYPT_WORK_FACTOR + 1), 1)
    with pytest.raises(AgeHeaderError, match=f"cap of {MAX_SCRYPT_WORK_FACTOR}"):
        _open(over, passphrase="pw")


def test_passphrase_usage_errors() -> None:
    with pytest.raises(ConfigError, match="at least one identity or a passphrase"):
        Decryptor()
    with pytest.raises(ConfigError, match="empty"):
        Decryptor(passphrase="")
    with pytest.raises(ConfigError, match="str or bytes"):
        Decryptor(passphrase=7)  # type: ignore[arg-type]


def _drive_age(args: list[str], answers: list[tuple[bytes, bytes]], timeout: float = 120.0) -> None:
    """Run stock ``age`` with a pty as its controlling terminal, answering each prompt as it appears."""
    assert SETSID is not None
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [SETSID, "--ctty", *args], stdin=slave, stdout=subprocess.DEVNULL, stderr=slave, close_fds=True
    )
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
            if answers and answers[0][0] in seen:
                seen = seen[seen.index(answers[0][0]) + len(answers[0][0]) :]
                os.write(master, answers.pop(0)[1])
        assert proc.wait(timeout=max(1.0, deadline - time.monotonic())) == 0, seen.decode(errors="replace")
        assert not answers, f"age did not ask for everything: {seen!r}"
    finally:
        if proc.poll() is None:  # never left behind, whatever failed
            proc.kill()
            proc.wait(timeout=30)
        os.close(master)


@pytest.mark.skipif(AGE is None or SETSID is None, reason="stock age or util-linux setsid not installed")
@pytest.mark.parametrize("armor", [False, True])
def test_stock_age_passphrase_file_opens(tmp_path: Path, armor: bool) -> None:
    """What ``age -p`` writes by default (work factor 18, the cap) opens with the same passphrase."""
    plain = os.urandom(2 * CHUNK_SIZE + 7)
    (tmp_path / "plain").write_bytes(plain)
    out = tmp_path / "plain.age"
    args = [str(AGE), "-p", *(["-a"] if armor else []), "-o", str(out), str(tmp_path / "plain")]
    _drive_age(args, [(b"passphrase", b"bay 3 evidence\n"), (b"onfirm", b"bay 3 evidence\n")])
    data = out.read_bytes()
    assert data.startswith(b"-----BEGIN AGE" if armor else b"age-encryption.org/v1\n-> scrypt ")
    with out.open("rb") as src, (tmp_path / "back").open("wb") as dst:
        decrypt_stream(src, dst, passphrase="bay 3 evidence")
    assert (tmp_path / "back").read_bytes() == plain
    with pytest.raises(AgeNoMatchError):
        _open(data, passphrase="bay 4 evidence")
