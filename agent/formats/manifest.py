"""Batch manifests (docs/formats.md): canonical JSON, SSH-signed, linked to the one before.

The manifest is what an auditor trusts: it lists every recording object with its plaintext,
camera-side and ciphertext SHA-256, names the custody segment's head, and carries the previous
manifest's hash so a deleted or replayed batch breaks the chain. Nothing in it names an officer
or a site in clear text: officers appear as keyed pseudonyms, and clear values travel in the
age-encrypted ``personal.json.age`` sidecar that only the agreement's recipients can open.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Any

from bodycam.agent.formats.custody import canonical
from bodycam.drivers.errors import ConfigError

FORMAT = "bodycam-manifest/1"
NAMESPACE = "bodycam-manifest"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
LOG_DIR = "log"
PREV_SIGNATURE = "manifest.json.sig.prev"  # next to manifest.json.sig in a batch that changes key
CUSTODY = "custody.jsonl"
PERSONAL = "personal.json.age"
MAX_PARTY_SIDECARS = 256  # a batch's party sidecars (one per distinct view; 16 parties per agreement)
MAX_MANIFEST_BYTES = 64 * 1024 * 1024


def batch_prefix(dock_id: str, batch_id: str) -> str:
    return f"{dock_id}/{batch_id}"


def party_sidecar_name(n: int) -> str:
    """The file name of a batch's ``n``-th party sidecar (docs/formats.md §5.3): a number, never a name."""
    return f"personal.{n}.json.age"


def recording_key(dock_id: str, batch_id: str, serial: str, recording_id: int) -> str:
    return f"{dock_id}/{batch_id}/recordings/{serial}/{recording_id}.age"


def encode(manifest: dict[str, Any]) -> bytes:
    return canonical(manifest)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_pseudonym_key(path: Path, *, create: bool) -> bytes:
    """The force-held secret for officer pseudonyms; created (0600) on first use when ``create``."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if not create:
            raise ConfigError(
                f"pseudonym key {path} is missing; set privacy.pseudonym_key to the force's key"
            ) from None
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        secret = os.urandom(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(secret.hex().encode() + b"\n")
            out.flush()
            os.fsync(out.fileno())
        return secret
    except OSError as err:
        raise ConfigError(f"cannot read pseudonym key {path}: {err}") from err
    try:
        secret = bytes.fromhex(data.decode().strip())
    except (UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"pseudonym key {path} must hold hex (at least 32 bytes)") from err
    if len(secret) < 32:
        raise ConfigError(f"pseudonym key {path} must hold at least 32 bytes")
    return secret


def pseudonym(secret: bytes, officer_id: str) -> str:
    """Keyed pseudonym of an officer id: HMAC-SHA-256 (hex); stable per force, meaningless without the key."""
    return hmac.new(secret, officer_id.encode(), hashlib.sha256).hexdigest()
