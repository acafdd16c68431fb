"""Interoperability with a second age implementation for the post-quantum hybrid type (issue 12 item 4).

The npm package ``age-encryption`` 0.3 (typage, by age's author) decrypts what the agent encrypts to an
``age1pq1`` recipient, the agent decrypts what it encrypts, and both derive the same recipient from an
``AGE-SECRET-KEY-PQ-1`` identity. ``scripts/test.sh`` installs it into ``tests/interop/node_modules``
(git-ignored); the scripts beside it are the only Node code. Under CI (``CI`` set) a missing ``node`` or
package fails these tests instead of skipping them, so CI can never pass without running them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bodycam.agent.formats.agecrypt import (
    CHUNK_SIZE,
    decrypt_stream,
    encrypt_stream,
    generate_hybrid_identity,
    recipient_of,
)

INTEROP = Path(__file__).resolve().parent / "interop"
PACKAGE = INTEROP / "node_modules" / "age-encryption" / "package.json"
NODE = shutil.which("node")
SETUP_HINT = "run 'bash scripts/test.sh' (or: npm install --no-package-lock --prefix tests/interop)"

# sizes around the 64 KiB chunk: empty (one empty final chunk), one byte, exact multiples, multi-chunk
SIZES = [0, 1, CHUNK_SIZE, 2 * CHUNK_SIZE, 3 * CHUNK_SIZE + 5]
IDENTITY, RECIPIENT = generate_hybrid_identity()
OTHER_IDENTITY, OTHER_RECIPIENT = generate_hybrid_identity()


@pytest.fixture(scope="module", autouse=True)
def node_age() -> None:
    missing = []
    if NODE is None:
        missing.append("node is not on PATH (Debian: apt-get install nodejs npm)")
    elif not PACKAGE.is_file():
        missing.append(f"age-encryption is not installed in {INTEROP / 'node_modules'}")
    if missing:
        message = f"{missing[0]}; {SETUP_HINT}"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the age interop tests: {message}")
        pytest.skip(message)
    assert NODE is not None
    version = subprocess.run([NODE, "-e", "process.stdout.write(require(process.argv[1]).version)", str(PACKAGE)],
                             capture_output=True, text=True, timeout=60, check=True).stdout  # fmt: skip
    assert version.startswith("0.3."), f"age-encryption {version} installed, the test pins 0.3.x"


def node(script: str, *args: str) -> str:
    assert NODE is not None
    proc = subprocess.run([NODE, str(INTEROP / script), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("size", SIZES)
def test_node_decrypts_what_the_agent_encrypts_to_a_hybrid_recipient(tmp_path: Path, size: int) -> None:
    plain, sealed, opened = tmp_path / "plain", tmp_path / "plain.age", tmp_path / "opened"
    plain.write_bytes(os.urandom(size))
    with plain.open("rb") as src, sealed.open("wb") as dst:
        encrypt_stream(src, dst, [OTHER_RECIPIENT, RECIPIENT])
    assert sealed.read_bytes().count(b"\n-> mlkem768x25519 ") == 2
    identity_file = tmp_path / "party.agekey"
    identity_file.write_text(f"# public key: {RECIPIENT}\n{IDENTITY}\n")
    node("decrypt.mjs", str(identity_file), str(sealed), str(opened))
    assert sha256(opened) == sha256(plain)


@pytest.mark.parametrize("size", SIZES)
def test_the_agent_decrypts_what_node_encrypts_to_a_hybrid_recipient(tmp_path: Path, size: int) -> None:
    plain, sealed, opened = tmp_path / "plain", tmp_path / "plain.age", tmp_path / "opened"
    plain.write_bytes(os.urandom(size))
    node("encrypt.mjs", str(plain), str(sealed), RECIPIENT)
    assert b"\n-> mlkem768x25519 " in sealed.read_bytes()
    with sealed.open("rb") as src, opened.open("wb") as dst:
        decrypt_stream(src, dst, [IDENTITY])
    assert sha256(opened) == sha256(plain)


def test_both_implementations_derive_the_same_keys(tmp_path: Path) -> None:
    """Seed expansion checked both ways: our identity in Node, Node's fresh identity here."""
    identity_file = tmp_path / "ids"
    identity_file.write_text(f"{IDENTITY}\n{OTHER_IDENTITY}\n")
    assert node("keys.mjs", "recipient", str(identity_file)).split() == [RECIPIENT, OTHER_RECIPIENT]
    theirs, their_recipient = node("keys.mjs", "generate-hybrid").split()
    assert theirs.startswith("AGE-SECRET-KEY-PQ-1") and recipient_of(theirs) == their_recipient


def test_node_refuses_a_file_for_someone_else(tmp_path: Path) -> None:
    """The Node side really checks: a stranger's identity does not open the agent's file."""
    sealed = tmp_path / "x.age"
    with (tmp_path / "p").open("wb+") as src, sealed.open("wb") as dst:
        src.write(b"clip")
        src.seek(0)
        encrypt_stream(src, dst, [RECIPIENT])
    stranger = tmp_path / "stranger.agekey"
    stranger.write_text(OTHER_IDENTITY + "\n")
    assert NODE is not None
    proc = subprocess.run([NODE, str(INTEROP / "decrypt.mjs"), str(stranger), str(sealed), str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 1 and proc.stderr.startswith("age-encryption: ")
