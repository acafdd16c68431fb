"""Dock signing keys: rotation with a hand-over the bucket itself proves (docs/formats.md, "Key rotation").

An auditor trusts a dock's manifests because ``allowed_signers`` lists the dock's key. When the key
changes, two lines for one dock in that file are only a claim; so the first manifest signed by the
new key is also signed by the previous one (``manifest.json.sig.prev``): the old key hands over to
the new one inside the signed chain, and ``verify`` reports ``key_rotation_unproven`` when a
manifest's key differs from the previous batch's without that co-signature.

``keys rotate`` writes the new key and records the current one (public key and file path) in the
journal's ``meta`` table; the operator then points ``signing.key`` at the new file. Sealing
(:func:`handover`, called by agent/pipeline/batch.py) compares its key with the previous manifest's
``signing_key``; on a change it looks the previous key up in that record and co-signs. Without a
record (a key swapped by hand, or lost) it still seals, notes ``cosigned: false`` in the custody
log and leaves the finding to the auditor: evidence keeps flowing, and nothing is hidden.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bodycam.agent.formats.manifest import PREV_SIGNATURE, Manifest, ManifestError
from bodycam.agent.formats.sshsig import (
    allowed_signers_line,
    fingerprint,
    generate_key,
    load_private_key,
    parse_public_key_line,
    public_key_line,
)
from bodycam.agent.storage.custody_log import CustodyLog
from bodycam.agent.storage.journal import Journal, utc_now
from bodycam.drivers.errors import ConfigError

LOG = logging.getLogger(__name__)

HISTORY_META = "signing_key_history"  # journal meta: JSON list of rotations, oldest first
_PREV_SIGNATURE_META = "signature_prev:"  # journal meta: + batch id -> armored co-signature


@dataclass(frozen=True, slots=True)
class Rotation:
    """What ``keys rotate`` did: the new key written, the old one recorded for the hand-over."""

    dock_id: str
    old_key_path: Path
    old_public_key: str
    new_key_path: Path
    new_public_key: str
    rotated_at: str

    def record(self) -> dict[str, str]:
        return {
            "old_key_path": str(self.old_key_path),
            "old_public_key": self.old_public_key,
            "new_key_path": str(self.new_key_path),
            "new_public_key": self.new_public_key,
            "rotated_at": self.rotated_at,
        }

    def allowed_signers_line(self) -> str:
        return allowed_signers_line(self.dock_id, parse_public_key_line(self.new_public_key))

    def old_allowed_signers_line(self) -> str:
        return allowed_signers_line(self.dock_id, parse_public_key_line(self.old_public_key))

    def to_json(self) -> dict[str, object]:
        return {
            **self.record(),
            "dock_id": self.dock_id,
            "allowed_signers": self.allowed_signers_line(),
            "old_allowed_signers": self.old_allowed_signers_line(),
        }

    def instructions(self, config_path: Path | None) -> list[str]:
        """The new allowed_signers line, then what to do, as ``#`` comments (the whole text can be
        appended to an allowed_signers file as it is)."""
        where = str(config_path) if config_path else "the agent's config"
        return [
            self.allowed_signers_line(),
            f"# new signing key {fingerprint(parse_public_key_line(self.new_public_key))} for {self.dock_id}.",
            "# 1. Add the line above to every allowed_signers file and KEEP the old key's line, or earlier",
            "#    batches stop verifying:",
            f"#    {self.old_allowed_signers_line()}",
            "#    (a valid-before on the old line must lie after the next batch is sealed: that batch is",
            "#    co-signed by the old key)",
            f'# 2. Set signing.key = "{self.new_key_path}" in {where} and reload the agent.',
            f"# 3. Keep {self.old_key_path} until the next batch is published: it carries",
            f"#    {PREV_SIGNATURE}, the old key's signature over the new key's first manifest.",
        ]


def rotate(journal: Journal, dock_id: str, current_key: Path, out: Path) -> Rotation:
    """Write a new Ed25519 key at ``out`` (0600, plus ``out.pub``) and record ``current_key`` in the
    journal so the next manifest sealed with another key is co-signed by it.

    Raises ConfigError: the current key is missing or unusable (it must sign once more), ``out`` is
    the current key or already exists, or the journal cannot record the rotation (the new key is then
    removed again).
    """
    old = load_private_key(current_key, "nothing to rotate: create the dock's first key with 'bodycam-sync keys init'")
    out = out.absolute()
    if out.exists() and current_key.exists() and out.resolve() == current_key.resolve():
        raise ConfigError(f"--out {out} is the current signing key; give the new key its own path")
    out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    new_line = generate_key(out, dock_id)
    rotation = Rotation(
        dock_id=dock_id,
        old_key_path=current_key.absolute(),
        old_public_key=public_key_line(old.public_key()),
        new_key_path=out,
        new_public_key=new_line,
        rotated_at=utc_now(),
    )
    try:
        history = _history(journal.meta(HISTORY_META))
        history.append(rotation.record())
        journal.set_meta(HISTORY_META, json.dumps(history, sort_keys=True))
    except BaseException:
        out.unlink(missing_ok=True)  # we wrote it a moment ago; an unrecorded key must not be used
        out.with_name(out.name + ".pub").unlink(missing_ok=True)
        raise
    LOG.info(
        "rotated the signing key of %s: %s -> %s",
        dock_id,
        fingerprint(old.public_key()),
        fingerprint(parse_public_key_line(new_line)),
    )
    return rotation


def handover(
    db: sqlite3.Connection, custody: CustodyLog, key: Ed25519PrivateKey, previous_manifest: bytes | None
) -> Ed25519PrivateKey | None:
    """Inside the sealing transaction: the previous key that must co-sign this batch's manifest, or None.

    None when there is no previous manifest or it was signed by ``key`` too. On a change of key this
    appends a custody ``key_rotated`` entry (``previous_key``, ``key``: fingerprints; ``cosigned``).
    Raises ConfigError when the rotation was recorded but the old key file is gone or holds another
    key: restore it and seal again (the batch stays open meanwhile; nothing is lost).
    """
    if previous_manifest is None:
        return None
    try:
        previous: str | None = Manifest.parse(previous_manifest, "the previous batch's manifest").signing_key
    except ManifestError:
        previous = None
    current = public_key_line(key.public_key())
    if previous is None or previous == current:
        return None
    old = _recorded_key(db, previous)
    try:
        previous_fp = fingerprint(parse_public_key_line(previous))
    except ConfigError:
        previous_fp = previous[:80]
    if old is None:
        LOG.warning(
            "the signing key changed since the last batch (%s -> %s) without 'bodycam-sync keys rotate': the "
            "new key's first manifest cannot be co-signed and verify will report key_rotation_unproven",
            previous_fp,
            fingerprint(key.public_key()),
        )
    custody.append_in(
        db, "key_rotated", previous_key=previous_fp, key=fingerprint(key.public_key()), cosigned=old is not None
    )
    return old


def _recorded_key(db: sqlite3.Connection, public: str) -> Ed25519PrivateKey | None:
    row = db.execute("SELECT value FROM meta WHERE key=?", (HISTORY_META,)).fetchone()
    for record in reversed(_history(row[0] if row else None)):
        if record.get("old_public_key") != public:
            continue
        path = Path(str(record.get("old_key_path")))
        try:
            old = load_private_key(path)
        except ConfigError as err:
            raise ConfigError(
                f"the previous signing key must co-sign the new key's first manifest, but {err}; "
                f"restore {path} (mode 0600) and run again"
            ) from None
        if public_key_line(old.public_key()) != public:
            raise ConfigError(
                f"{path} no longer holds the previous signing key {fingerprint(parse_public_key_line(public))}, "
                "which must co-sign the new key's first manifest; restore the old key file and run again"
            )
        return old
    return None


def _history(text: str | None) -> list[dict[str, str]]:
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        raise ConfigError(f"the journal's {HISTORY_META} record is not JSON; the journal is damaged") from None
    if not isinstance(value, list):
        raise ConfigError(f"the journal's {HISTORY_META} record is not a list; the journal is damaged")
    return [r for r in value if isinstance(r, dict)]


def store_prev_signature(db: sqlite3.Connection, batch_id: str, signature: str) -> None:
    """Journal a batch's co-signature inside the sealing transaction (published as PREV_SIGNATURE)."""
    db.execute(
        "INSERT INTO meta VALUES(?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
        (_PREV_SIGNATURE_META + batch_id, signature),
    )


def prev_signature(journal: Journal, batch_id: str) -> str | None:
    return journal.meta(_PREV_SIGNATURE_META + batch_id)
