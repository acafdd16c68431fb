"""Batches: open one per docking session, seal it (manifest, signature, custody segment, personal
sidecar, all computed once and journaled), then publish it to the bucket with create-only writes.

Sealing and publishing are separate steps so a crash between them re-publishes the very same
bytes: the journal holds what was signed, and an object already in the bucket is accepted only if
it is byte-identical (docs/crash-safety.md).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bodycam.agent import __version__
from bodycam.agent.config import Recipient
from bodycam.agent.formats import commitment
from bodycam.agent.formats import manifest as mf
from bodycam.agent.formats.agecrypt import Encryptor
from bodycam.agent.formats.custody import GENESIS, Head, canonical
from bodycam.agent.formats.sshsig import public_key_line, sign
from bodycam.agent.formats.times import iso_utc, parse_iso
from bodycam.agent.pipeline import keys as dock_keys
from bodycam.agent.pipeline import sidecars as sc
from bodycam.agent.storage import docklog
from bodycam.agent.storage.custody_log import CustodyLog
from bodycam.agent.storage.journal import Journal, RecordingKey, RecordingState, utc_now
from bodycam.drivers.errors import IntegrityError, StorageError

if TYPE_CHECKING:
    from bodycam.agent.storage.bucket import Bucket

LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SealedBatch:
    """A batch as sealed: the signed manifest, custody segment and encrypted sidecar that publishing writes."""

    batch_id: str
    seq: int
    manifest: bytes
    signature: str
    custody: bytes
    personal: bytes
    recordings: int
    signature_prev: str | None = None  # by the previous key, in the first batch after a key rotation
    sidecars: tuple[tuple[str, bytes], ...] = ()  # each party sidecar's file name and bytes (§5.3)


def open_batch(journal: Journal) -> str:
    """The open batch, or a new one owning every custody entry since the last sealed batch."""
    with journal.transaction() as db:
        row = db.execute("SELECT batch_id FROM batches WHERE state='open' ORDER BY seq LIMIT 1").fetchone()
        if row:
            return str(row[0])
        last = db.execute("SELECT COALESCE(MAX(seq), 0) FROM batches").fetchone()[0]
        seq = int(last) + 1
        batch_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + f"-{seq:06d}"
        sealed = db.execute("SELECT MAX(custody_last) FROM batches WHERE state != 'open'").fetchone()[0]
        db.execute(
            "INSERT INTO batches(batch_id, seq, opened_at, state, custody_first) VALUES(?,?,?,?,?)",
            (batch_id, seq, utc_now(), "open", int(sealed or 0) + 1),
        )
        return batch_id


def open_id(journal: Journal) -> str | None:
    rows = journal.query("SELECT batch_id FROM batches WHERE state='open' ORDER BY seq LIMIT 1")
    return str(rows[0][0]) if rows else None


def age_s(journal: Journal, batch_id: str, now: float) -> float:
    """Seconds since ``batch_id`` was opened (by the wall clock it was stamped with)."""
    rows = journal.query("SELECT opened_at FROM batches WHERE batch_id=?", (batch_id,))
    return now - _parse_utc(str(rows[0][0])) if rows else 0.0


def recordings_ready(journal: Journal, batch_id: str) -> int:
    """Recordings of ``batch_id`` a seal would list (verified, or verified and erased)."""
    rows = journal.query(
        "SELECT COUNT(*) FROM recordings WHERE batch_id=? AND state IN ('verified','erased')", (batch_id,)
    )
    return int(rows[0][0])


def unsealed_custody_since(journal: Journal) -> float | None:
    """When the oldest custody entry that no sealed batch holds was written (epoch s), or None."""
    sealed = journal.query("SELECT COALESCE(MAX(custody_last), 0) FROM batches WHERE state != 'open'")
    rows = journal.query("SELECT line FROM custody WHERE seq=?", (int(sealed[0][0]) + 1,))
    if not rows:
        return None
    return _parse_utc(str(json.loads(rows[0][0])["ts"]))


def defer(
    journal: Journal, custody: CustodyLog, batch_id: str, *, keep: frozenset[RecordingKey]
) -> list[tuple[str, str]]:
    """Move the uploads of ``batch_id`` still in ``uploading`` (except those in ``keep``, being pulled
    and progressing) out of it, so it can be sealed with what is verified (docs/crash-safety.md).

    An object key names its batch, so a moved recording cannot keep its upload: its row returns to
    ``pending`` (no batch, key, upload, file key or parts) and its next docking starts it afresh in the
    batch then open. One transaction, with a custody ``pull_deferred`` entry per recording. Returns the
    (key, upload id) pairs the caller aborts in the bucket; after a crash recover() aborts them, since
    no ``uploading`` row owns them any more.
    """
    moved: list[tuple[str, str]] = []
    with journal.transaction() as db:
        for rk in journal.keys_in(RecordingState.UPLOADING, batch_id=batch_id):
            if rk in keep:
                continue
            moved += move_out(journal, db, custody, batch_id, rk, "sealed on schedule")
    return moved


def move_out(
    journal: Journal, db: sqlite3.Connection, custody: CustodyLog, batch_id: str, rk: RecordingKey, why: str
) -> list[tuple[str, str]]:
    """In a transaction: one ``uploading`` recording of ``batch_id`` back to ``pending`` (custody
    ``pull_deferred``); the (key, upload id) its caller aborts after the commit, if it had an upload."""
    row = journal.recording(rk)
    assert row is not None  # listed in this transaction
    journal.mark_pending(rk, f"moved out of batch {batch_id}, {why}")
    custody.append_in(
        db, "pull_deferred", camera=rk.serial, recording=rk.recording_id, batch=batch_id, key=row["object_key"]
    )
    return [(str(row["object_key"]), str(row["upload_id"]))] if row["upload_id"] else []


def busy(journal: Journal, batch_id: str) -> int:
    rows = journal.query(
        "SELECT COUNT(*) FROM recordings WHERE batch_id=? AND state IN ('uploading','completing')", (batch_id,)
    )
    return int(rows[0][0])


def seal(
    journal: Journal,
    custody: CustodyLog,
    batch_id: str,
    *,
    dock_id: str,
    key: Ed25519PrivateKey,
    recipients: list[Recipient],
    pseudonym_secret: bytes,
) -> SealedBatch:
    """Close the custody segment and compute every artefact of the batch, journaled in one transaction."""
    with journal.transaction() as db:
        batch = db.execute("SELECT * FROM batches WHERE batch_id=?", (batch_id,)).fetchone()
        if batch is None:
            raise StorageError(f"batch {batch_id} is not in the journal")
        if batch["state"] != "open":
            return _sealed_from_row(journal, batch_id)
        rows = db.execute(
            "SELECT * FROM recordings WHERE batch_id=? AND state IN ('verified','erased') "
            "ORDER BY serial, recording_id",
            (batch_id,),
        ).fetchall()
        prev_row = db.execute(
            "SELECT manifest_sha256, manifest FROM batches WHERE seq=? AND state IN ('sealed','published')",
            (batch["seq"] - 1,),
        ).fetchone()
        cosigner = dock_keys.handover(db, custody, key, prev_row[1] if prev_row else None)
        officers = [_officer_at(db, r["serial"], r["start_us"] / 1e6 - r["clock_offset_s"]) for r in rows]
        disclosures = [_disclosure(journal, r) for r in rows]
        entries = tuple(
            _recording(r, d, mf.pseudonym(pseudonym_secret, officer) if officer else None)
            for r, officer, d in zip(rows, officers, disclosures, strict=True)
        )
        shared = [
            sc.Shared(
                r["serial"], r["recording_id"], officer, r["exercise_id"],
                tuple(a.to_json() for a in d.agreements), d.shares,
            )
            for r, officer, d in zip(rows, officers, disclosures, strict=True)
            if d.agreements is not None
        ]  # fmt: skip
        personal_doc = _personal_doc(db, batch_id, rows, officers)
        sidecars = _party_sidecars(db, custody, dock_id, batch_id, shared, personal_doc["exercises"])
        head = custody.append_in(db, "batch_sealed", batch=batch_id, recordings=len(rows))
        segment = _segment(db, mf.batch_prefix(dock_id, batch_id), int(batch["custody_first"]), head)
        personal_doc["errors"] = custody.details(segment.ref.first_seq, head.seq)  # the segment's errors in clear
        operators = custody.operators(segment.ref.first_seq, head.seq)
        if operators:  # who ran the segment's CLI actions (custody names them by pseudonym only)
            personal_doc["operators"] = operators
        personal = _encrypt([r.age for r in recipients], canonical(personal_doc))
        prefix = mf.batch_prefix(dock_id, batch_id)
        manifest = mf.Manifest(
            format=mf.FORMAT,
            dock_id=dock_id,
            agent_version=__version__,
            batch_id=batch_id,
            batch_seq=int(batch["seq"]),
            opened=batch["opened_at"],
            sealed=utc_now(),
            previous_manifest_sha256=prev_row[0] if prev_row else None,
            signing_key=public_key_line(key.public_key()),
            custody=segment.ref,
            personal=mf.PersonalRef(f"{prefix}/{mf.PERSONAL}", mf.sha256_hex(personal)),
            recipients=tuple(mf.ManifestRecipient(r.name, r.age) for r in recipients),
            recordings=entries,
            recordings_root=commitment.recordings_root([e.to_json() for e in entries]),  # 1.1: one can be proven
            # a batch with recordings disclosed under agreements (§10): each party's own sidecar
            sidecars=tuple(
                mf.SidecarRef(f"{prefix}/{name}", mf.sha256_hex(data), parties, items)
                for name, data, parties, items in sidecars
            )
            if shared
            else None,
        )
        manifest_bytes = manifest.to_bytes()
        _sign_and_log(db, manifest, manifest_bytes, key, cosigner)
        db.execute(
            "UPDATE batches SET state='sealed', custody_last=?, manifest=?, signature=?, custody=?, personal=?, "
            "manifest_sha256=? WHERE batch_id=?",
            (head.seq, manifest_bytes, sign(manifest_bytes, key, mf.NAMESPACE), segment.data, personal,
             mf.sha256_hex(manifest_bytes), batch_id),
        )  # fmt: skip
    return _sealed_from_row(journal, batch_id)


@dataclass(frozen=True, slots=True)
class _Segment:
    """One custody segment of a batch: the manifest's reference to it and its bytes."""

    ref: mf.CustodyRef
    data: bytes  # custody.jsonl


def _segment(db: sqlite3.Connection, prefix: str, first: int, head: Head) -> _Segment:
    """The batch's custody segment, ``first`` to the ``batch_sealed`` entry ``head``, and how the
    manifest names it (linked to the previous batch's head, or to the genesis hash in batch 1)."""
    prev = db.execute("SELECT hash FROM custody WHERE seq=?", (first - 1,)).fetchone()
    rows = db.execute("SELECT line FROM custody WHERE seq BETWEEN ? AND ? ORDER BY seq", (first, head.seq))
    lines = [r[0].encode() for r in rows.fetchall()]
    data = b"".join(line + b"\n" for line in lines)
    ref = mf.CustodyRef(
        f"{prefix}/{mf.CUSTODY}", first, head.seq, prev[0] if prev else GENESIS, head.hash, mf.sha256_hex(data),
        root=commitment.custody_root(lines),  # format 1.1: one line at a time can be proven
    )  # fmt: skip
    return _Segment(ref, data)


def _recording(r: sqlite3.Row, shared: _Disclosure, officer_pseudonym: str | None) -> mf.ManifestRecording:
    """A verified recording's manifest entry: times by the camera's clock and corrected by the offset
    in force when it was stamped (guarantee 5), and the agreements it was disclosed under (guarantee 7)."""
    offset = r["clock_offset_s"]
    return mf.ManifestRecording(
        camera_serial=r["serial"],
        camera_model=r["model"],
        recording_id=r["recording_id"],
        start_camera=iso_utc(r["start_us"] / 1e6, "microseconds"),
        end_camera=iso_utc(r["end_us"] / 1e6, "microseconds"),
        clock_offset_s=round(offset, 6),
        start=iso_utc(r["start_us"] / 1e6 - offset, "microseconds"),
        end=iso_utc(r["end_us"] / 1e6 - offset, "microseconds"),
        exercise_id=r["exercise_id"],
        size=r["size"],
        plaintext_sha256=r["plaintext_sha256"],
        camera_sha256=r["camera_sha256"],
        ciphertext_sha256=r["ciphertext_sha256"],
        ciphertext_size=r["ciphertext_size"],
        key=r["object_key"],
        version_id=r["version_id"],
        officer_pseudonym=officer_pseudonym,
        agreements=shared.agreements,
        parties=shared.parties,
        retain_until=shared.retain_until,
    )


def _personal_doc(
    db: sqlite3.Connection,
    batch_id: str,
    rows: list[sqlite3.Row],
    officers: list[str | None],
) -> dict[str, Any]:
    """The clear values the manifest must not carry (docs/formats.md §5.3): original names, officer ids,
    the exercises' sites and windows (seal adds the segment's errors and operators once it is closed)."""
    exercises = []
    for ex_id in sorted({r["exercise_id"] for r in rows if r["exercise_id"]}):
        ex = db.execute("SELECT * FROM exercises WHERE id=?", (ex_id,)).fetchone()
        if ex is not None:
            start, end = iso_utc(ex["start_ts"], "microseconds"), iso_utc(ex["end_ts"], "microseconds")
            exercises.append({"id": ex_id, "site": ex["site"], "start": start, "end": end})
    recordings = [
        {"camera_serial": r["serial"], "recording_id": r["recording_id"], "original_name": r["name"], "officer_id": o}
        for r, o in zip(rows, officers, strict=True)
    ]
    return {"batch_id": batch_id, "recordings": recordings, "exercises": exercises}


def _sign_and_log(
    db: sqlite3.Connection,
    manifest: mf.Manifest,
    manifest_bytes: bytes,
    key: Ed25519PrivateKey,
    cosigner: Ed25519PrivateKey | None,
) -> None:
    """The previous key's co-signature after a rotation, and the transparency log's leaf for the manifest."""
    if cosigner is not None:
        dock_keys.store_prev_signature(db, manifest.batch_id, sign(manifest_bytes, cosigner, mf.NAMESPACE))
    docklog.append_in(
        db,
        dock_id=manifest.dock_id,
        batch_id=manifest.batch_id,
        batch_seq=manifest.batch_seq,
        manifest_sha256=mf.sha256_hex(manifest_bytes),
        key=key,
        commitments=commitment.log_fields(manifest),
    )


def publish(journal: Journal, bucket: Bucket, dock_id: str, batch_id: str) -> None:
    """Upload a sealed batch's artefacts, manifest last, then its log tiles and checkpoint; idempotent
    after a crash."""
    sealed = _sealed_from_row(journal, batch_id)
    prefix = mf.batch_prefix(dock_id, batch_id)
    artefacts = [(mf.CUSTODY, sealed.custody), (mf.PERSONAL, sealed.personal), *sealed.sidecars]
    if sealed.signature_prev is not None:
        artefacts.append((mf.PREV_SIGNATURE, sealed.signature_prev.encode()))
    artefacts += [(mf.SIGNATURE, sealed.signature.encode()), (mf.MANIFEST, sealed.manifest)]
    for name, data in artefacts:
        _put_once(bucket, f"{prefix}/{name}", data)
    docklog.publish(
        journal, lambda key, data, retain: _put_once(bucket, key, data, retain=retain), bucket, dock_id, batch_id
    )
    with journal.transaction() as db:
        db.execute("UPDATE batches SET state='published', published_at=? WHERE batch_id=?", (utc_now(), batch_id))


def pending_publication(journal: Journal) -> list[str]:
    return [r[0] for r in journal.query("SELECT batch_id FROM batches WHERE state='sealed' ORDER BY seq")]


def _put_once(bucket: Bucket, key: str, data: bytes, *, retain: bool = True) -> None:
    from bodycam.agent.storage.bucket import ObjectExistsError

    try:
        bucket.put_object(key, data, create_only=True, retain=retain)
    except ObjectExistsError:
        existing = bucket.get_bytes(key, max_size=len(data) + 1)
        if existing != data:
            raise IntegrityError(
                f"{key} already exists in the bucket with different content; refusing to overwrite evidence"
            ) from None


def _sealed_from_row(journal: Journal, batch_id: str) -> SealedBatch:
    rows = journal.query("SELECT * FROM batches WHERE batch_id=?", (batch_id,))
    if not rows or rows[0]["state"] == "open":
        raise StorageError(f"batch {batch_id} is not sealed")
    r = rows[0]
    count = len(mf.Manifest.parse(r["manifest"], f"the journal's manifest of batch {batch_id}").recordings)
    return SealedBatch(
        batch_id,
        r["seq"],
        r["manifest"],
        r["signature"],
        r["custody"],
        r["personal"],
        count,
        dock_keys.prev_signature(journal, batch_id),
        tuple(
            (str(s[0]), bytes(s[1]))
            for s in journal.query("SELECT name, data FROM batch_sidecars WHERE batch_id=? ORDER BY n", (batch_id,))
        ),
    )


def _disclosure(journal: Journal, r: sqlite3.Row) -> _Disclosure:
    """The covering agreements (id, version, sha256), the party names a recording was encrypted to and its
    retain-until date, when the dock runs under data-sharing agreements; none for ``[[recipients]]``."""
    found = journal.disclosure(RecordingKey(r["serial"], r["recording_id"], r["camera_sha256"]))
    if found is None:
        return _Disclosure()
    doc = json.loads(found)
    return _Disclosure(
        tuple(
            mf.AgreementRef(a["id"], a["version"], a["sha256"], {k: v for k, v in a.items() if k not in _REF})
            for a in doc["agreements"]
        ),
        tuple(doc["parties"]),
        doc.get("retain_until"),
        doc.get("shares") or {},
    )


_REF = ("id", "version", "sha256")


def _party_sidecars(
    db: sqlite3.Connection,
    custody: CustodyLog,
    dock_id: str,
    batch_id: str,
    shared: list[sc.Shared],
    exercises: list[dict[str, Any]],
) -> list[tuple[str, bytes, tuple[str, ...], tuple[str, ...]]]:
    """Encrypt and journal each party sidecar of the batch, and log its disclosure (custody ``disclosed``,
    before ``batch_sealed``): (file name, bytes, parties, data items) in the manifest's order."""
    out = []
    views = sc.party_sidecars(batch_id, shared, {ex["id"]: ex for ex in exercises})
    for n, view in enumerate(views, start=1):
        name = mf.party_sidecar_name(n)
        data = _encrypt(list(view.recipients), view.plaintext)
        db.execute("INSERT INTO batch_sidecars(batch_id, n, name, data) VALUES(?,?,?,?)", (batch_id, n, name, data))
        custody.append_in(
            db,
            "disclosed",
            sidecar=True,
            key=f"{mf.batch_prefix(dock_id, batch_id)}/{name}",
            ciphertext_sha256=mf.sha256_hex(data),
            parties=list(view.parties),
            agreements=[dict(a) for a in view.agreements],
            under=view.under,
            data_items=list(view.data_items),
        )
        out.append((name, data, view.parties, view.data_items))
    return out


@dataclass(frozen=True, slots=True)
class _Disclosure:
    """What the journal kept at upload start for the manifest (agent/pipeline/ingest.py)."""

    agreements: tuple[mf.AgreementRef, ...] | None = None
    parties: tuple[str, ...] | None = None
    retain_until: str | None = None
    #: party -> agreements, data_items, recipients: what the party sidecars need, never in the manifest
    shares: Mapping[str, Mapping[str, list[str]]] = field(default_factory=dict)


def _officer_at(db: sqlite3.Connection, serial: str, when: float) -> str | None:
    row = db.execute(
        "SELECT officer FROM allocations WHERE serial=? AND at<=? ORDER BY at DESC, id DESC LIMIT 1", (serial, when)
    ).fetchone()
    return str(row[0]) if row else None


def _parse_utc(text: str) -> float:
    return parse_iso(text).timestamp()


def _encrypt(recipients: list[str], data: bytes) -> bytes:
    enc = Encryptor(recipients)
    return enc.header + enc.update(data) + enc.finalize()
