"""SSHSIG signing/verification, key files and allowed_signers, checked against stock ssh-keygen."""

from __future__ import annotations

import base64
import io
import logging
import os
import random
import shutil
import struct
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bodycam.agent.formats import sshsig
from bodycam.agent.formats.sshsig import (
    AllowedSigner,
    allowed_signers_line,
    fingerprint,
    generate_key,
    keys_for,
    load_private_key,
    parse_allowed_signers,
    parse_public_key_line,
    public_key_line,
    sign,
    verify,
)
from bodycam.drivers.errors import ConfigError, IntegrityError

from .fifo import outcome_on_a_fifo

NS = "bodycam-manifest"
DATA = b'{"camera": "BC-0042", "files": ["clip-0001.mp4"], "sha256": "00ff"}\n' * 40

SSH_KEYGEN = shutil.which("ssh-keygen")
needs_ssh_keygen = pytest.mark.skipif(SSH_KEYGEN is None, reason="stock ssh-keygen (OpenSSH) is not installed")


def ssh_keygen(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert SSH_KEYGEN is not None
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}  # never talk to a user's agent
    return subprocess.run(
        [SSH_KEYGEN, *args],
        input=stdin.decode("latin-1") if stdin is not None else None,
        capture_output=True,
        text=True,
        encoding="latin-1",
        timeout=30,
        env=env,
        cwd=cwd,
        check=False,
    )


def stock_verify(
    tmp: Path, data: bytes, sig: str, allowed: str, namespace: str = NS, principal: str = "dock-01"
) -> int:
    (tmp / "allowed_signers").write_text(allowed)
    (tmp / "file.sig").write_text(sig)
    args = ("-Y", "verify", "-f", str(tmp / "allowed_signers"), "-I", principal, "-n", namespace)
    return ssh_keygen(*args, "-s", str(tmp / "file.sig"), stdin=data).returncode


def stock_key(tmp: Path, name: str = "stock", kind: str = "ed25519", passphrase: str = "") -> Path:
    path = tmp / name
    result = ssh_keygen("-q", "-t", kind, "-N", passphrase, "-C", f"{name}@test", "-f", str(path))
    assert result.returncode == 0, result.stderr
    return path


def stock_sign(tmp: Path, key: Path, data: bytes, *extra: str) -> str:
    target = tmp / "payload.bin"
    target.write_bytes(data)
    sig_path = Path(f"{target}.sig")
    sig_path.unlink(missing_ok=True)
    result = ssh_keygen("-Y", "sign", "-f", str(key), "-n", NS, *extra, str(target))
    assert result.returncode == 0, result.stderr
    return sig_path.read_text()


def ssh_string(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def rebuild(sig: str, **changes: bytes | int) -> str:
    """Re-encode an armored signature with some fields replaced (independent SSHSIG parser for tests)."""
    body = "".join(sig.strip().splitlines()[1:-1])
    blob = base64.b64decode(body)
    assert blob[:6] == b"SSHSIG"
    pos = 10
    fields: dict[str, bytes] = {}
    for name in ("key", "namespace", "reserved", "hash", "signature"):
        (length,) = struct.unpack_from(">I", blob, pos)
        fields[name] = blob[pos + 4 : pos + 4 + length]
        pos += 4 + length
    version = changes.pop("version", 1)
    assert isinstance(version, int)
    for name, value in changes.items():
        assert isinstance(value, bytes)
        fields[name] = value
    out = b"SSHSIG" + struct.pack(">I", version) + b"".join(ssh_string(fields[n]) for n in fields)
    return armored(base64.b64encode(out).decode())


def armored(body: str) -> str:
    return f"-----BEGIN SSH SIGNATURE-----\n{body}\n-----END SSH SIGNATURE-----\n"


def raw_signature_field(sig: str) -> bytes:
    body = base64.b64decode("".join(sig.strip().splitlines()[1:-1]))
    return body[-(4 + 11 + 4 + 64) :]


@pytest.fixture
def dock_key(tmp_path: Path) -> tuple[Path, Ed25519PrivateKey]:
    path = tmp_path / "dock_key"
    generate_key(path, "dock-01@station-7")
    return path, load_private_key(path)


# ------------------------------------------------------------------------------------------------
# 1. our signatures under stock ssh-keygen -Y verify


@needs_ssh_keygen
def test_stock_ssh_keygen_verifies_our_signature(tmp_path: Path, dock_key: tuple[Path, Ed25519PrivateKey]) -> None:
    _, key = dock_key
    sig = sign(DATA, key, NS)
    allowed = allowed_signers_line("dock-01", key.public_key()) + "\n"
    assert stock_verify(tmp_path, DATA, sig, allowed) == 0

    tampered = bytearray(DATA)
    tampered[100] ^= 0x01
    assert stock_verify(tmp_path, bytes(tampered), sig, allowed) != 0
    assert stock_verify(tmp_path, DATA, sig, allowed, namespace="bodycam-firmware") != 0
    assert stock_verify(tmp_path, DATA, sig, allowed, principal="dock-02") != 0


@needs_ssh_keygen
def test_stock_ssh_keygen_honours_our_namespaces_option(
    tmp_path: Path, dock_key: tuple[Path, Ed25519PrivateKey]
) -> None:
    _, key = dock_key
    restricted = allowed_signers_line("dock-01", key.public_key(), namespaces=["bodycam-firmware"]) + "\n"
    assert stock_verify(tmp_path, DATA, sign(DATA, key, NS), restricted) != 0
    permitted = allowed_signers_line("dock-01", key.public_key(), namespaces=[NS, "other"]) + "\n"
    assert stock_verify(tmp_path, DATA, sign(DATA, key, NS), permitted) == 0
    # and our own reading of the same lines agrees with ssh-keygen
    assert keys_for(parse_allowed_signers(restricted), "dock-01", NS) == []
    assert [_raw(k) for k in keys_for(parse_allowed_signers(permitted), "dock-01", NS)] == [_raw(key.public_key())]


def test_armor_matches_ssh_keygen_layout(dock_key: tuple[Path, Ed25519PrivateKey]) -> None:
    _, key = dock_key
    sig = sign(DATA, key, NS)
    lines = sig.split("\n")
    assert lines[0] == "-----BEGIN SSH SIGNATURE-----"
    assert lines[-2:] == ["-----END SSH SIGNATURE-----", ""]
    assert all(len(line) == 70 for line in lines[1:-3])
    assert 0 < len(lines[-3]) <= 70


# ------------------------------------------------------------------------------------------------
# 2. stock keys and signatures under our code


@needs_ssh_keygen
def test_our_verify_accepts_stock_signature_and_loads_stock_key(tmp_path: Path) -> None:
    key_path = stock_key(tmp_path)
    stock_pub = parse_public_key_line((tmp_path / "stock.pub").read_text())
    sig = stock_sign(tmp_path, key_path, DATA)

    signer = verify(DATA, sig, NS, [stock_pub])
    assert signer is stock_pub
    assert verify(io.BytesIO(DATA), sig, NS, [stock_pub]) is stock_pub

    loaded = load_private_key(key_path)
    assert _raw(loaded.public_key()) == _raw(stock_pub)
    # Ed25519 is deterministic: our signer must produce exactly ssh-keygen's bytes
    assert sign(DATA, loaded, NS) == sig


@needs_ssh_keygen
def test_our_verify_accepts_stock_sha256_signature(tmp_path: Path) -> None:
    key_path = stock_key(tmp_path)
    pub = parse_public_key_line((tmp_path / "stock.pub").read_text())
    sig = stock_sign(tmp_path, key_path, DATA, "-O", "hashalg=sha256")
    assert verify(DATA, sig, NS, [pub]) is pub
    with pytest.raises(IntegrityError, match="does not match"):
        verify(DATA + b"x", sig, NS, [pub])


@needs_ssh_keygen
def test_stock_ssh_keygen_reads_our_private_key(tmp_path: Path) -> None:
    path = tmp_path / "dock_key"
    returned = generate_key(path, "dock-01@station-7")
    pub_line = (tmp_path / "dock_key.pub").read_text()
    assert pub_line == f"{returned} dock-01@station-7\n"
    result = ssh_keygen("-y", "-f", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == pub_line
    fp = ssh_keygen("-l", "-E", "sha256", "-f", str(path))
    assert fingerprint(parse_public_key_line(returned)) in fp.stdout


@needs_ssh_keygen
def test_stock_ecdsa_signature_is_refused_as_unsupported(tmp_path: Path) -> None:
    key_path = stock_key(tmp_path, "ecdsa", kind="ecdsa")
    sig = stock_sign(tmp_path, key_path, DATA)
    with pytest.raises(IntegrityError, match="key type 'ecdsa-sha2-nistp256' is not supported"):
        verify(DATA, sig, NS, [Ed25519PrivateKey.generate().public_key()])


@needs_ssh_keygen
def test_load_refuses_encrypted_and_non_ed25519_stock_keys(tmp_path: Path) -> None:
    encrypted = stock_key(tmp_path, "enc", passphrase="correct horse")
    with pytest.raises(ConfigError, match="passphrase-protected"):
        load_private_key(encrypted)
    ecdsa_key = stock_key(tmp_path, "ecdsa", kind="ecdsa")
    with pytest.raises(ConfigError, match="must be Ed25519"):
        load_private_key(ecdsa_key)


# ------------------------------------------------------------------------------------------------
# 3. rejection paths and key file safety


def test_round_trip_bytes_and_streams(dock_key: tuple[Path, Ed25519PrivateKey]) -> None:
    _, key = dock_key
    pub = key.public_key()
    other = Ed25519PrivateKey.generate().public_key()
    sig = sign(DATA, key, NS)
    assert sign(io.BytesIO(DATA), key, NS) == sig
    assert verify(DATA, sig, NS, [other, pub]) is pub
    assert verify(io.BytesIO(DATA), sig, NS, [pub]) is pub


class ChunkReader(io.BytesIO):
    """A binary stream that records read sizes, to prove nobody slurps it with read()/read(-1)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.sizes: list[int | None] = []

    def read(self, size: int | None = -1, /) -> bytes:
        self.sizes.append(size)
        return super().read(min(size, 4096) if size is not None and size > 0 else size)


def test_streams_are_hashed_in_bounded_chunks(dock_key: tuple[Path, Ed25519PrivateKey]) -> None:
    _, key = dock_key
    data = os.urandom(300_000)
    reader = ChunkReader(data)
    sig = sign(reader, key, NS)
    assert reader.sizes and all(size is not None and 0 < size <= 1024 * 1024 for size in reader.sizes)
    assert len(reader.sizes) > 2  # really read piecewise
    assert verify(data, sig, NS, [key.public_key()]) is not None


def test_rejections_raise_integrity_error(dock_key: tuple[Path, Ed25519PrivateKey]) -> None:
    _, key = dock_key
    pub = key.public_key()
    sig = sign(DATA, key, NS)

    with pytest.raises(IntegrityError, match="does not match the data"):
        verify(DATA[:-1] + b"?", sig, NS, [pub])
    with pytest.raises(IntegrityError, match="not among the 1 allowed"):
        verify(DATA, sig, NS, [Ed25519PrivateKey.generate().public_key()])
    with pytest.raises(IntegrityError, match="namespace 'bodycam-manifest', not 'bodycam-firmware'"):
        verify(DATA, sig, "bodycam-firmware", [pub])

    sig_field = bytearray(raw_signature_field(sig))
    sig_field[-1] ^= 0x80
    with pytest.raises(IntegrityError, match="does not match the data"):
        verify(DATA, rebuild(sig, signature=bytes(sig_field)), NS, [pub])
    # swapping the namespace inside the blob does not help: the signature covers it
    with pytest.raises(IntegrityError, match="does not match the data"):
        verify(DATA, rebuild(sig, namespace=b"other"), "other", [pub])
    with pytest.raises(IntegrityError, match="hash 'md5' is not supported"):
        verify(DATA, rebuild(sig, hash=b"md5"), NS, [pub])
    with pytest.raises(IntegrityError, match="version 2 is not supported"):
        verify(DATA, rebuild(sig, version=2), NS, [pub])


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "-----BEGIN SSH SIGNATURE-----\n-----END SSH SIGNATURE-----\n",
        "-----BEGIN SSH SIGNATURE-----\nnot*base64!\n-----END SSH SIGNATURE-----\n",
        "-----BEGIN SSH SIGNATURE-----\n"
        + base64.b64encode(b"NOTSIG\0\0\0\1").decode()
        + "\n-----END SSH SIGNATURE-----\n",
        "-----BEGIN SSH SIGNATURE-----\n"
        + base64.b64encode(b"SSHSIG\0\0\0\1\0\0\1\0ab").decode()
        + "\n-----END SSH SIGNATURE-----\n",
        "-----BEGIN SSH SIGNATURE-----\n" + "A" * 20000 + "\n-----END SSH SIGNATURE-----\n",
    ],
    ids=["empty", "garbage", "no-body", "bad-base64", "bad-magic", "truncated", "oversized"],
)
def test_garbage_armor_raises_integrity_error(text: str, dock_key: tuple[Path, Ed25519PrivateKey]) -> None:
    with pytest.raises(IntegrityError):
        verify(DATA, text, NS, [dock_key[1].public_key()])


def test_trailing_bytes_in_blob_are_rejected(dock_key: tuple[Path, Ed25519PrivateKey]) -> None:
    _, key = dock_key
    sig = sign(DATA, key, NS)
    blob = base64.b64decode("".join(sig.strip().splitlines()[1:-1])) + b"\0"
    text = armored(base64.b64encode(blob).decode())
    with pytest.raises(IntegrityError, match="trailing"):
        verify(DATA, text, NS, [key.public_key()])


def _recoded(sig: str, how: str) -> str:
    """The same blob under base64 that is not canonical: stray padding, or non-zero low bits in the
    last character before the padding (only where the blob's length leaves some)."""
    lines = sig.strip().split("\n")
    body = lines[-2]
    if how == "padding":
        body += "===="
    else:
        stem = body.rstrip("=")
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        body = stem[:-1] + alphabet[alphabet.index(stem[-1]) | 1] + body[len(stem) :]
    return "\n".join([*lines[:-2], body, lines[-1]]) + "\n"


@needs_ssh_keygen
@pytest.mark.parametrize(("namespace", "how"), [(NS, "padding"), ("bodycam-agreement", "low-bits")])
def test_armor_that_is_not_canonical_base64_is_refused_as_ssh_keygen_refuses_it(
    tmp_path: Path, dock_key: tuple[Path, Ed25519PrivateKey], namespace: str, how: str
) -> None:
    """One signature, one text: an altered manifest.json.sig that stock ssh-keygen refuses must not pass."""
    _, key = dock_key
    sig = sign(DATA, key, namespace)
    allowed = allowed_signers_line("dock-01", key.public_key()) + "\n"
    assert stock_verify(tmp_path, DATA, sig, allowed, namespace) == 0
    altered = _recoded(sig, how)
    assert altered != sig
    assert base64.b64decode("".join(altered.split("\n")[1:-2])) == base64.b64decode("".join(sig.split("\n")[1:-2]))
    assert stock_verify(tmp_path, DATA, altered, allowed, namespace) != 0
    with pytest.raises(IntegrityError, match="canonical"):
        verify(DATA, altered, namespace, [key.public_key()])


@needs_ssh_keygen
@pytest.mark.parametrize("how", ["crlf", "leading-newline", "leading-space", "space-after-begin"])
def test_armor_that_does_not_start_with_the_begin_line_is_refused_as_ssh_keygen_refuses_it(
    tmp_path: Path, dock_key: tuple[Path, Ed25519PrivateKey], how: str
) -> None:
    """ssh-keygen reads a signature file only when it starts with ``-----BEGIN SSH SIGNATURE-----`` and a
    LF: CRLF line ends, a blank line or a space before it, or one after it on its line, are each refused.
    verify accepted all four, so a manifest.json.sig changed so passed verify and failed the auditor's
    stock check. (Whitespace within the base64 lines and text after the END line ssh-keygen accepts.)"""
    _, key = dock_key
    sig = sign(DATA, key, NS)
    altered = {
        "crlf": sig.replace("\n", "\r\n"),
        "leading-newline": "\n" + sig,
        "leading-space": " " + sig,
        "space-after-begin": sig.replace("\n", " \n", 1),
    }[how]
    allowed = allowed_signers_line("dock-01", key.public_key()) + "\n"
    assert stock_verify(tmp_path, DATA, altered, allowed) != 0
    with pytest.raises(IntegrityError, match="BEGIN SSH SIGNATURE"):
        verify(DATA, altered, NS, [key.public_key()])
    spaced = sig.replace("\n", "\n ", 2).replace("\n -----END", "\n-----END")  # a base64 line indented
    assert stock_verify(tmp_path, DATA, spaced, allowed) == 0
    assert verify(DATA, spaced, NS, [key.public_key()]) is not None


@needs_ssh_keygen
@pytest.mark.parametrize("separator", ["\x1c", "\x1d", "\x1e"])
def test_armor_split_by_a_separator_ssh_keygen_does_not_skip_is_refused(
    tmp_path: Path, dock_key: tuple[Path, Ed25519PrivateKey], separator: str
) -> None:
    """verify split the armor with Python's splitlines, which also breaks lines at the ASCII file, group
    and record separators (and U+0085, U+2028): one put inside a base64 line still verified, though
    ssh-keygen -Y verify refuses the file, so a manifest.json.sig changed so passed (guarantee 3). Lines
    now end at LF and the base64 loses C's whitespace only, wherever it stands, as ssh-keygen skips it."""
    _, key = dock_key
    sig = sign(DATA, key, NS)
    allowed = allowed_signers_line("dock-01", key.public_key()) + "\n"
    begin, first, *rest = sig.split("\n")
    for ch in (separator, "\x85", "\u2028"):
        altered = "\n".join([begin, first[:10] + ch + first[10:], *rest])
        if ch.isascii():
            assert stock_verify(tmp_path, DATA, altered, allowed) != 0
        with pytest.raises(IntegrityError, match="base64"):
            verify(DATA, altered, NS, [key.public_key()])
    skipped = "\n".join([begin, first[:10] + "\x0b\t " + first[10:] + "\x0c", *rest])
    assert stock_verify(tmp_path, DATA, skipped, allowed) == 0
    assert verify(DATA, skipped, NS, [key.public_key()]) is not None


def test_a_signing_key_path_that_is_a_named_pipe_is_refused_not_waited_on(tmp_path: Path) -> None:
    """The signing key was opened without O_NONBLOCK before its fstat: a named pipe at key_path (planted,
    or a mistaken config) held ingest, the daemon's start and every reload in open() for ever, waiting
    for a writer. The pseudonym key got O_NONBLOCK in 8a48dd1; the signing key now shares its reader."""
    fifo = tmp_path / "dock_key"
    os.mkfifo(fifo, 0o600)
    outcome = outcome_on_a_fifo(lambda: load_private_key(fifo), fifo, "load_private_key")
    assert isinstance(outcome, ConfigError), outcome
    assert str(outcome) == f"signing key {fifo} is not a regular file"


def test_generate_key_writes_0600_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "dock_key"
    line = generate_key(path, "dock-01")
    assert line.startswith("ssh-ed25519 AAAA") and " " not in line.removeprefix("ssh-ed25519 ")
    assert (path.stat().st_mode & 0o777) == 0o600
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        generate_key(path, "dock-01")
    assert path.read_bytes() == before

    (tmp_path / "other_key.pub").write_text("keep me\n")
    with pytest.raises(ConfigError, match="already exists"):
        generate_key(tmp_path / "other_key", "x")
    assert not (tmp_path / "other_key").exists()
    assert (tmp_path / "other_key.pub").read_text() == "keep me\n"

    with pytest.raises(ConfigError, match="single line"):
        generate_key(tmp_path / "k3", "two\nlines")


def test_load_refuses_group_readable_key(tmp_path: Path) -> None:
    path = tmp_path / "dock_key"
    generate_key(path, "dock-01")
    path.chmod(0o644)
    with pytest.raises(ConfigError) as info:
        load_private_key(path)
    assert f"chmod 600 {path}" in str(info.value)
    assert "0644" in str(info.value)
    path.chmod(0o600)
    assert isinstance(load_private_key(path), Ed25519PrivateKey)


def test_load_reports_missing_and_garbage_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_private_key(tmp_path / "nope")
    junk = tmp_path / "junk"
    junk.write_text("not a key\n")
    junk.chmod(0o600)
    with pytest.raises(ConfigError, match="not a usable OpenSSH private key"):
        load_private_key(junk)
    rsa_like = tmp_path / "ec"
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_like.write_bytes(
        ec_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
    )
    rsa_like.chmod(0o600)
    with pytest.raises(ConfigError, match="type ECDSA; dock signing keys must be Ed25519"):
        load_private_key(rsa_like)


def _key_file_blob(path: Path) -> bytes:
    lines = path.read_text().splitlines()
    return base64.b64decode("".join(lines[1:-1]))


def _write_key_blob(path: Path, blob: bytes) -> None:
    text = base64.b64encode(blob).decode()
    body = "\n".join(text[i : i + 70] for i in range(0, len(text), 70))
    path.write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----\n")
    path.chmod(0o600)


class _KeyRebuilder:
    """An unencrypted key file's blob taken apart (the test's own reader), to be put back together with one
    field changed: the checkints, the padding or the secret."""

    MAGIC = b"openssh-key-v1\0"

    def __init__(self, blob: bytes) -> None:
        reader = sshsig._Reader(blob[len(self.MAGIC) :])
        self.head = [reader.string(), reader.string(), reader.string(), reader.u32()]
        self.public_blob, section = reader.string(), reader.string()
        inner = sshsig._Reader(section)
        self.check = section[:4]
        inner.u32()
        inner.u32()
        self.key_type, self.public, self.secret, self.comment = (inner.string() for _ in range(4))
        self.padding = inner.rest()

    def __call__(
        self, *, checks: tuple[int, int] | None = None, pad: bytes | None = None, seed: bytes | None = None
    ) -> bytes:
        check = struct.unpack(">I", self.check)[0]
        fields = (self.key_type, self.public, self.secret if seed is None else seed, self.comment)
        body = struct.pack(">II", *(checks or (check, check))) + b"".join(ssh_string(f) for f in fields)
        prefix = b"".join(ssh_string(f) for f in self.head[:3]) + struct.pack(">I", self.head[3])  # type: ignore[arg-type]
        section = body + (self.padding if pad is None else pad)
        return self.MAGIC + prefix + ssh_string(self.public_blob) + ssh_string(section)

    def body_length(self) -> int:
        return 8 + sum(4 + len(f) for f in (self.key_type, self.public, self.secret, self.comment))


def _cryptography_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


@needs_ssh_keygen
def test_plain_ed25519_keys_load_without_cryptographys_serialization(tmp_path: Path) -> None:
    """The dock's key (ours or ssh-keygen's, unencrypted Ed25519) is read by sshsig itself: the same seed as
    cryptography's loader gives, without importing ``serialization`` and every key type's module behind it
    (about 20 ms of each run's start-up, issue 14)."""
    ours = tmp_path / "ours"
    generate_key(ours, "dock-01@station-7")
    stock = stock_key(tmp_path)
    for path in (ours, stock):
        assert sshsig._plain_ed25519(path.read_bytes()) is not None, path
        assert load_private_key(path).private_bytes_raw() == _cryptography_key(path).private_bytes_raw()
    probe = (
        "import sys; from pathlib import Path; from bodycam.agent.formats.sshsig import load_private_key; "
        f"load_private_key(Path({str(ours)!r})); "
        "print('cryptography.hazmat.primitives.serialization' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "False", done


def test_a_key_file_the_hand_parser_does_not_take_is_cryptographys_to_refuse(tmp_path: Path) -> None:
    """Broken checkints, padding, a public key that is not the seed's: not taken by the hand parser, so
    cryptography's loader reads the file and refuses it as before (not a usable OpenSSH private key)."""
    good = tmp_path / "good"
    generate_key(good, "dock")
    blob = _key_file_blob(good)
    rebuilt = _KeyRebuilder(blob)
    check = struct.unpack(">I", rebuilt.check)[0]
    other = Ed25519PrivateKey.generate().private_bytes_raw()
    assert rebuilt() == blob  # the test's own rebuild is faithful
    for name, blob_changed in (
        ("checkints", rebuilt(checks=(check, check ^ 1))),
        ("padding", rebuilt(pad=bytes(len(rebuilt.padding)))),
        ("seed", rebuilt(seed=other + rebuilt.public)),
    ):
        path = tmp_path / name
        _write_key_blob(path, blob_changed)
        assert sshsig._plain_ed25519(path.read_bytes()) is None, name
        with pytest.raises(ConfigError, match="not a usable OpenSSH private key"):
            load_private_key(path)


def _either_loader(data: bytes) -> tuple[bytes | None, bytes | None]:
    """The seed sshsig's own reader takes from a key file (None when it leaves the file to cryptography),
    and the seed cryptography's loader takes (None when it refuses it)."""
    ours = sshsig._plain_ed25519(data)
    try:
        theirs = serialization.load_ssh_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        theirs = None
    seed = theirs.private_bytes_raw() if isinstance(theirs, Ed25519PrivateKey) else None
    return (ours.private_bytes_raw() if ours is not None else None), seed


def test_the_hand_parser_takes_no_key_file_cryptography_refuses(tmp_path: Path) -> None:
    """sshsig's own Ed25519 reader (e7e3ed4) is a shortcut for the files cryptography's loader reads, never
    a wider door: padding of 17 to 255 bytes (1, 2, 3, ... as ssh writes it, but longer than a cipher
    block) was taken though cryptography refuses it, and 256 bytes or more raised a bare ValueError out of
    load_private_key (a traceback, not a line). Every padding length, then 20,000 single-byte changes of a
    key file (seeded, the same each run): what the hand parser takes, cryptography takes with the same
    seed; it never raises."""
    good = tmp_path / "good"
    generate_key(good, "dock")
    text = good.read_bytes()
    rebuilt = _KeyRebuilder(_key_file_blob(good))
    path = tmp_path / "padded"
    for length in range(0, 300):
        if (rebuilt.body_length() + length) % 8:
            continue
        _write_key_blob(path, rebuilt(pad=bytes(i & 0xFF for i in range(1, length + 1))))
        ours, theirs = _either_loader(path.read_bytes())
        assert ours is None or ours == theirs, length
        if theirs is None:
            with pytest.raises(ConfigError, match="not a usable OpenSSH private key"):
                load_private_key(path)
    rng = random.Random(14)
    for _ in range(20_000):
        changed = bytearray(text)
        at = rng.randrange(len(changed))
        edit = rng.randrange(3)
        if edit == 0:
            changed[at] = rng.randrange(256)
        elif edit == 1:
            changed.insert(at, rng.choice(b" \r\n\t=A/+-"))
        else:
            del changed[at]
        ours, theirs = _either_loader(bytes(changed))
        assert ours is None or ours == theirs, bytes(changed)


def test_public_key_lines_round_trip() -> None:
    pub = Ed25519PrivateKey.generate().public_key()
    line = public_key_line(pub)
    assert line == pub.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    assert _raw(parse_public_key_line(line + " some comment\n")) == _raw(pub)
    ec_line = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    for bad in ("", "ssh-ed25519", ec_line, "ssh-ed25519 AAAA!!!!", "ssh-ed25519 " + ec_line.split()[1]):
        with pytest.raises(ConfigError):
            parse_public_key_line(bad)


# ------------------------------------------------------------------------------------------------
# 4. allowed_signers


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes_raw()


def _ec_line() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def test_parse_allowed_signers(caplog: pytest.LogCaptureFixture) -> None:
    k1, k2, k3, k4, k5 = (public_key_line(Ed25519PrivateKey.generate().public_key()) for _ in range(5))
    text = "\n".join(
        [
            "# trust list for station 7",
            "",
            f"dock-01 {k1} dock-01@station-7",
            f'dock-02,dock-03 namespaces="bodycam-manifest,audit-*" {k2}',
            f"   \t# indented comment {k3}",
            f"dock-04 cert-authority {k3}",
            f"dock-05 {_ec_line()} an ecdsa key",
            f'"dock-06" VALID-BEFORE="20200101Z",valid-after="20190101" {k4}',
            f"*.station-7,!evil.station-7\t{k5}",
            "",
        ]
    )
    with caplog.at_level(logging.INFO, logger=sshsig.__name__):
        signers = parse_allowed_signers(text)
    assert "line 6: cert-authority" in caplog.text and "line 7: ecdsa-sha2-nistp256" in caplog.text

    assert [s.principals for s in signers] == [
        ("dock-01",),
        ("dock-02", "dock-03"),
        ("dock-06",),
        ("*.station-7", "!evil.station-7"),
    ]
    assert signers[0] == AllowedSigner(("dock-01",), parse_public_key_line(k1), None)
    assert signers[1].namespaces == ("bodycam-manifest", "audit-*")
    assert signers[2].valid_before == datetime(2020, 1, 1, tzinfo=UTC)

    def keys(principal: str, namespace: str, at: datetime | None = None) -> list[bytes]:
        return [_raw(k) for k in keys_for(signers, principal, namespace, at=at)]

    assert keys("dock-01", NS) == [_raw(parse_public_key_line(k1))]
    assert keys("dock-03", NS) == [_raw(parse_public_key_line(k2))]
    assert keys("dock-03", "audit-2024") == [_raw(parse_public_key_line(k2))]
    assert keys("dock-03", "bodycam-firmware") == []
    assert keys("dock-04", NS) == []  # cert-authority line skipped
    assert keys("dock-06", NS) == []  # expired
    assert keys("dock-06", NS, datetime(2019, 6, 1, tzinfo=UTC)) == [_raw(parse_public_key_line(k4))]
    assert keys("cam.station-7", NS) == [_raw(parse_public_key_line(k5))]
    assert keys("evil.station-7", NS) == []
    assert keys("dock-1", NS) == []


def test_allowed_signers_feed_verify(dock_key: tuple[Path, Ed25519PrivateKey]) -> None:
    _, key = dock_key
    text = allowed_signers_line("dock-01", key.public_key(), namespaces=[NS]) + "\n"
    signers = parse_allowed_signers(text)
    sig = sign(DATA, key, NS)
    assert _raw(verify(DATA, sig, NS, keys_for(signers, "dock-01", NS))) == _raw(key.public_key())
    with pytest.raises(IntegrityError, match="not among the 0 allowed"):
        verify(DATA, sig, NS, keys_for(signers, "dock-02", NS))


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("dock-01", "missing key"),
        ("dock-01 ssh-ed25519", "missing key"),
        ('dock-01 namespaces="x"', "missing key"),
        ("dock-01 ssh-ed25519 AAAA!!!!", "base64"),
        ('dock-01 namespace="x" {k}', "unknown option 'namespace'"),
        ("dock-01 namespaces=x {k}", "double quotes"),
        ('dock-01 namespaces="x {k}', "unterminated"),
        ('dock-01 namespaces="a",namespaces="b" {k}', "more than one"),
        ('dock-01 valid-after="2024-01-01" {k}', "YYYYMMDD"),
        ('dock-01 valid-after="20240101",valid-before="20230101" {k}', "not after"),
        ("dock-01 ssh-ed25519 {ec}", "line says 'ssh-ed25519'"),
    ],
)
def test_bad_allowed_signers_line_names_line_number(line: str, reason: str) -> None:
    k = public_key_line(Ed25519PrivateKey.generate().public_key())
    ec_b64 = _ec_line().split()[1]
    text = f"# header\n\ndock-00 {k}\n" + line.format(k=k, ec=ec_b64) + "\n"
    with pytest.raises(ConfigError, match="line 4") as info:
        parse_allowed_signers(text)
    assert reason in str(info.value)


def test_allowed_signers_line_validation() -> None:
    pub = Ed25519PrivateKey.generate().public_key()
    assert allowed_signers_line("dock-01", pub) == f"dock-01 {public_key_line(pub)}"
    for bad in ("", "two words", "a,b", "#x", 'q"'):
        with pytest.raises(ConfigError):
            allowed_signers_line(bad, pub)
    with pytest.raises(ConfigError):
        allowed_signers_line("dock-01", pub, namespaces=["a,b"])
