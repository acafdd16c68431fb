"""A force's bucket, built fast: many docks, each with one sealed batch of small recordings.

No cameras: random plaintexts are age-encrypted to one party's recipient with the agent's Encryptor and
put with its Bucket (``workers`` at once); each recording is journaled as the pipeline journals a verified
one, with its ``pulled`` and ``verified`` custody entries; then the real batch code seals (manifest, SSH
signature by the dock's own key, custody segment, sidecar) and publishes (log tiles, checkpoint). What
``verify`` reads is therefore what docks write. Used by bench/verify.py (``--fleet``) and the tests.

``stage``: the recording objects are written there as files named by their keys (``stage/<key>``) instead
of being put one by one, and the caller puts the whole tree at once (bench/verify.py with ``rclone copy``:
a force of 100,000 objects then builds in minutes, not the ~20 minutes of one boto3 PUT each). The bytes,
keys and manifests are the same; the bucket must not be versioned (a manifest's ``version_id`` is then
null, as it is for objects put one by one into such a bucket).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bodycam.agent.config import Recipient
from bodycam.agent.formats import manifest as mf
from bodycam.agent.formats.agecrypt import Encryptor, generate_identity
from bodycam.agent.formats.sshsig import allowed_signers_line, generate_key, load_private_key, parse_public_key_line
from bodycam.agent.pipeline import batch as batches
from bodycam.agent.storage.bucket import Bucket
from bodycam.agent.storage.custody_log import CustodyLog
from bodycam.agent.storage.journal import Journal, utc_now

SERIAL = "CAM-FLEET"


@dataclass(frozen=True)
class Fleet:
    """What an auditor of the built bucket holds: the docks' allowed_signers and the party's identity."""

    allowed_signers: Path
    identity: str
    docks: list[str]
    objects: int  # recording objects
    recording_bytes: int  # their ciphertext bytes, all together
    build_s: float


def build_fleet(
    root: Path,
    bucket: Bucket,
    docks: int,
    per_dock: int,
    size: int,
    *,
    keep_ciphertext: Path | None = None,
    stage: Path | None = None,
    workers: int = 8,
    on_dock: Callable[[int], None] | None = None,
) -> Fleet:
    """Build ``docks`` docks under ``root`` (keys, journals) and their batches in ``bucket``.

    ``keep_ciphertext``: also write each recording object's bytes there (one file each), so a stock tool
    (``sha256sum``) can hash the very same bytes. ``stage``: write the recording objects there (``stage/<key>``)
    instead of putting them (the module docstring); the rest of each batch is published to ``bucket``.
    """
    started = time.perf_counter()
    identity, recipient = generate_identity()
    lines: list[str] = []
    total = 0
    names = [f"dock-{n:03d}" for n in range(docks)]
    with ThreadPoolExecutor(workers) as pool:
        for n, dock_id in enumerate(names):
            home = root / dock_id
            home.mkdir(parents=True, mode=0o700)
            home.chmod(0o700)
            pub = generate_key(home / "dock_ed25519", dock_id)
            lines.append(allowed_signers_line(dock_id, parse_public_key_line(pub)))
            total += build_dock(home, bucket, dock_id, recipient, per_dock, size, pool, keep_ciphertext, stage)
            if on_dock is not None:
                on_dock(n + 1)
    signers = root / "allowed_signers"
    signers.write_text("\n".join(lines) + "\n")
    return Fleet(signers, identity, names, docks * per_dock, total, time.perf_counter() - started)


def build_dock(
    home: Path,
    bucket: Bucket,
    dock_id: str,
    recipient: str,
    recordings: int,
    size: int,
    pool: ThreadPoolExecutor,
    keep_ciphertext: Path | None = None,
    stage: Path | None = None,
) -> int:
    """One dock's sealed, published batch of ``recordings`` objects of ``size`` plaintext bytes; returns
    the ciphertext bytes put (or, with ``stage``, written there for the caller to put)."""
    journal = Journal(home / "journal.sqlite3")
    custody = CustodyLog(journal, dock_id)
    batch_id = batches.open_batch(journal)
    custody.append("docked", camera=SERIAL, model="Fleet", firmware="1.0", transport="usbip")
    custody.append("listed", camera=SERIAL, count=recordings)

    def upload(rid: int) -> dict[str, Any]:
        plain = os.urandom(size)
        enc = Encryptor([recipient])
        blob = enc.header + enc.update(plain) + enc.finalize()
        key = mf.recording_key(dock_id, batch_id, SERIAL, rid)
        version = None
        if stage is not None:
            (stage / key).write_bytes(blob)
        else:
            version = bucket.put_object(key, blob).version_id
        if keep_ciphertext is not None:
            (keep_ciphertext / key.replace("/", "_")).write_bytes(blob)
        return {"id": rid, "key": key, "plain": mf.sha256_hex(plain), "cipher": mf.sha256_hex(blob),
                "cipher_size": len(blob), "version": version}  # fmt: skip

    if stage is not None:
        (stage / mf.recording_key(dock_id, batch_id, SERIAL, 0)).parent.mkdir(parents=True, exist_ok=True)
    uploaded = list(pool.map(upload, range(1000, 1000 + recordings)))
    journal_as_verified(journal, custody, uploaded, batch_id, size, "Fleet")
    custody.append("undocked", camera=SERIAL)
    batches.seal(
        journal,
        custody,
        batch_id,
        dock_id=dock_id,
        key=load_private_key(home / "dock_ed25519"),
        recipients=[Recipient("party-a", recipient)],
        pseudonym_secret=mf.load_pseudonym_key(home / "pseudonym.key", create=True),
    )
    batches.publish(journal, bucket, dock_id, batch_id)
    journal.close()
    return sum(int(r["cipher_size"]) for r in uploaded)


__all__ = ["Fleet", "build_dock", "build_fleet"]


def journal_as_verified(
    journal: Journal, custody: CustodyLog, uploaded: list[dict[str, Any]], batch_id: str, size: int, model: str
) -> None:
    """Journal uploaded recordings as Agent journals one it pulled, uploaded and verified, with their
    custody entries, so that a real seal signs them (shared by this fixture and bench/verify.py)."""
    recordings = len(uploaded)
    now_us = int(time.time() * 1e6)
    with journal.transaction() as db:
        for r in uploaded:  # as Agent journals a recording it pulled, uploaded and verified
            start_us = now_us - (2000 + 1000 + recordings - r["id"]) * 1_000_000
            db.execute(
                "INSERT INTO recordings(serial, recording_id, camera_sha256, state, batch_id, model, size, start_us, "
                "end_us, clock_offset_s, exercise_id, category, name, object_key, plaintext_sha256, "
                "ciphertext_sha256, ciphertext_size, version_id, updated_at) "
                "VALUES(?,?,?,'verified',?,?,?,?,?,?,NULL,'training',?,?,?,?,?,?,?)",
                (SERIAL, r["id"], r["plain"], batch_id, model, size, start_us, start_us + 500_000, 0.0,
                 f"VID_{r['id']}.MP4", r["key"], r["plain"], r["cipher"], r["cipher_size"], r["version"], utc_now()),
            )  # fmt: skip
            custody.append_in(db, "pulled", camera=SERIAL, recording=r["id"], size=size,
                              plaintext_sha256=r["plain"], ciphertext_sha256=r["cipher"])  # fmt: skip
            custody.append_in(db, "verified", camera=SERIAL, recording=r["id"], key=r["key"], size=r["cipher_size"],
                              ciphertext_sha256=r["cipher"], version_id=r["version"])  # fmt: skip
