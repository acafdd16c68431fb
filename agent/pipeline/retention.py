"""Retention enforced (issue 12 item 7): what is past every covering agreement's retention, and its
erasure from the bucket with a custody entry that proves it (docs/formats.md "Retention").

Each disclosed recording carries ``retain_until`` in its signed manifest (agent/formats/retention.py).
``due`` lists what this dock uploaded whose date has passed; ``apply`` erases it: the recording's
ciphertext (every version, so an Object Lock bucket keeps no copy behind a delete marker) and, once
every recording of a batch is erased, that batch's personal sidecar. Then it publishes the erasure
entries in a custody-only batch, so ``verify`` reads each missing object as erased, not as lost.

Crash safety, in three steps per object: (1) an intent row (``erasures``, state ``deleting``) is
journaled; (2) the objects are deleted (a delete of what is already gone is a no-op); (3) one
transaction writes the custody entry and marks the row ``logged``. A crash anywhere leaves a
``deleting`` row, which the next ``apply`` finishes: the log never claims an erasure that did not
happen, and an erasure is never left unlogged.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bodycam.agent.formats import manifest as mf
from bodycam.agent.formats import retention as rt
from bodycam.agent.pipeline.ingest import Agent
from bodycam.agent.storage.bucket import Bucket
from bodycam.agent.storage.custody_log import CustodyLog
from bodycam.agent.storage.journal import Journal, utc_now
from bodycam.drivers.errors import BodycamError

LOG = logging.getLogger(__name__)
MAX_VERSIONS = 64  # versions of one key erased at most (create-only writes leave one)
MAX_LIST = 100_000  # rows one run considers (the rest wait for the next run)


@dataclass(frozen=True, slots=True)
class Due:
    """One object past every covering agreement's retention (ids, hashes and times only)."""

    object: str  # rt.RECORDING or rt.PERSONAL
    key: str
    batch: str
    sha256: str  # of the ciphertext (recording) or of the sidecar's bytes
    retain_until: float
    agreements: tuple[str, ...]
    version_id: str | None = None
    camera: str | None = None
    recording: int | None = None
    state: str = "due"  # "due", or "deleting" (an erasure a crash interrupted)

    def to_json(self) -> dict[str, Any]:
        return {
            "object": self.object,
            "key": self.key,
            "batch": self.batch,
            "camera": self.camera,
            "recording": self.recording,
            "sha256": self.sha256,
            "retain_until": rt.iso(self.retain_until),
            "agreements": list(self.agreements),
            "state": self.state,
        }


@dataclass
class ApplyReport:
    erased: list[Due] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    batch_id: str | None = None  # the custody-only batch that published the erasure entries
    unpublished: int = 0  # erasure entries still waiting for a batch (the open one is busy)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.unpublished

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "erased": [d.to_json() for d in self.erased],
            "errors": self.errors,
            "batch_id": self.batch_id,
            "unpublished": self.unpublished,
        }


def _recordings(journal: Journal) -> list[Due]:
    """This dock's disclosed recordings in published batches that carry a retain-until date and whose
    erasure has not begun."""
    rows = journal.query(
        "SELECT r.serial, r.recording_id, r.batch_id, r.object_key, r.ciphertext_sha256, r.version_id, "
        "ra.disclosure FROM recordings r JOIN recording_agreements ra "
        "ON ra.serial=r.serial AND ra.recording_id=r.recording_id AND ra.camera_sha256=r.camera_sha256 "
        "JOIN batches b ON b.batch_id=r.batch_id "
        "WHERE r.state IN ('verified','erased') AND b.state='published' "
        "AND r.object_key NOT IN (SELECT key FROM erasures) ORDER BY r.batch_id, r.serial, r.recording_id LIMIT ?",
        (MAX_LIST,),
    )
    out = []
    for r in rows:
        disclosed = json.loads(r["disclosure"])
        until = rt.parse_iso(disclosed.get("retain_until"))
        if until is None:
            continue  # disclosed before retention dates existed, or no retention set: never due by date
        out.append(
            Due(
                rt.RECORDING,
                str(r["object_key"]),
                str(r["batch_id"]),
                str(r["ciphertext_sha256"]),
                until,
                tuple(str(a["id"]) for a in disclosed.get("agreements", [])),
                version_id=r["version_id"],
                camera=str(r["serial"]),
                recording=int(r["recording_id"]),
            )
        )
    return out


def _sidecars(journal: Journal, dock_id: str) -> list[Due]:
    """Personal sidecars of published batches whose every recording's erasure is logged: the sidecar
    holds officer ids and original names of those recordings, so it goes with the last of them; so do
    the batch's party sidecars (docs/formats.md §5.3), each its own erasure. A batch is listed until
    every one of its sidecars has an erasure (so a crash between two of them loses none)."""
    rows = journal.query(
        "SELECT b.batch_id, b.personal, b.manifest FROM batches b WHERE b.state='published' "
        "AND EXISTS(SELECT 1 FROM erasures e WHERE e.batch_id=b.batch_id AND e.object=? AND e.state='logged') "
        "AND (SELECT COUNT(*) FROM erasures e WHERE e.batch_id=b.batch_id AND e.object=?) "
        "< 1 + (SELECT COUNT(*) FROM batch_sidecars s WHERE s.batch_id=b.batch_id) LIMIT ?",
        (rt.RECORDING, rt.PERSONAL, MAX_LIST),
    )
    out = []
    for r in rows:
        manifest = mf.Manifest.parse(bytes(r["manifest"]), f"the journal's manifest of batch {r['batch_id']}")
        keys = [rec.key for rec in manifest.recordings]
        logged = journal.query(
            "SELECT key, retain_until, agreements FROM erasures WHERE batch_id=? AND object=? AND state='logged'",
            (r["batch_id"], rt.RECORDING),
        )
        if {row["key"] for row in logged} != set(keys):
            continue
        agreements = sorted({a for row in logged for a in json.loads(row["agreements"])})
        prefix = mf.batch_prefix(dock_id, str(r["batch_id"]))
        sidecars = [(f"{prefix}/{mf.PERSONAL}", mf.sha256_hex(bytes(r["personal"])))]
        sidecars += [(s.key, s.sha256) for s in manifest.sidecars or ()]
        done = {
            str(e["key"])
            for e in journal.query(
                "SELECT key FROM erasures WHERE batch_id=? AND object=?", (r["batch_id"], rt.PERSONAL)
            )
        }
        until = max(float(row["retain_until"]) for row in logged)
        for key, sha in sidecars:
            if key not in done:
                out.append(Due(rt.PERSONAL, key, str(r["batch_id"]), sha, until, tuple(agreements)))
    return out


def _interrupted(journal: Journal) -> list[Due]:
    rows = journal.query("SELECT * FROM erasures WHERE state='deleting' ORDER BY key LIMIT ?", (MAX_LIST,))
    return [
        Due(
            str(r["object"]),
            str(r["key"]),
            str(r["batch_id"]),
            str(r["sha256"]),
            float(r["retain_until"]),
            tuple(json.loads(r["agreements"])),
            version_id=r["version_id"],
            camera=r["serial"],
            recording=r["recording_id"],
            state="deleting",
        )
        for r in rows
    ]


def due(journal: Journal, dock_id: str, now: float | None = None) -> list[Due]:
    """What is past every covering agreement's retention at ``now``: erasures a crash interrupted
    first, then recordings, then the personal sidecars of batches whose recordings are all erased."""
    now = time.time() if now is None else now
    pending = _interrupted(journal)
    pending += [d for d in _recordings(journal) if d.retain_until <= now]
    pending += [d for d in _sidecars(journal, dock_id) if d.retain_until <= now]
    return pending


def erase_object(bucket: Bucket, key: str) -> None:
    """Delete every version of ``key`` (:meth:`Bucket.erase_every_version`). Raises what the bucket
    raises (an unexpired COMPLIANCE lock: UploadError, AccessDenied)."""
    bucket.erase_every_version(key, max_versions=MAX_VERSIONS)


def _intend(journal: Journal, d: Due) -> None:
    with journal.transaction() as db:
        db.execute(
            "INSERT OR IGNORE INTO erasures(key, object, batch_id, serial, recording_id, sha256, version_id, "
            "retain_until, agreements, state, started_at) VALUES(?,?,?,?,?,?,?,?,?,'deleting',?)",
            (d.key, d.object, d.batch, d.camera, d.recording, d.sha256, d.version_id, d.retain_until,
             json.dumps(list(d.agreements)), utc_now()),
        )  # fmt: skip


def _forget_if_intact(journal: Journal, bucket: Bucket, d: Due) -> None:
    """After a refused delete (an Object Lock not yet expired, an outage): when the object is still
    there, drop the intent, so ``due`` judges it by its date again; else keep it for the next run."""
    try:
        still = bucket.head(d.key) is not None
    except BodycamError:
        return
    if still and d.state == "due":
        with journal.transaction() as db:
            db.execute("DELETE FROM erasures WHERE key=? AND state='deleting'", (d.key,))


def _log(journal: Journal, custody: CustodyLog, d: Due) -> None:
    fields = rt.erasure_fields(
        obj=d.object,
        key=d.key,
        batch=d.batch,
        sha256=d.sha256,
        retain_until_ts=d.retain_until,
        agreements=d.agreements,
        version_id=d.version_id,
        camera=d.camera,
        recording=d.recording,
    )
    with journal.transaction() as db:
        state = db.execute("SELECT state FROM erasures WHERE key=?", (d.key,)).fetchone()
        if state is None or state[0] != "deleting":
            return  # logged by an earlier run
        head = custody.append_in(db, rt.EVENT, **fields)
        db.execute(
            "UPDATE erasures SET state='logged', custody_seq=?, logged_at=? WHERE key=?", (head.seq, utc_now(), d.key)
        )


def erase(
    journal: Journal,
    custody: CustodyLog,
    bucket: Bucket,
    dock_id: str,
    *,
    now: float | None = None,
    after_delete: Callable[[Due], None] | None = None,
) -> ApplyReport:
    """Erase what is due (intent, delete, custody entry: see the module docstring); sidecars become due
    as their batches' last recordings go, so it runs until nothing new is due. ``after_delete`` is
    the test seam for a crash between the deletion and its log."""
    report = ApplyReport()
    failed: set[str] = set()
    for _round in range(2):  # recordings, then the sidecars their erasure made due
        todo = [d for d in due(journal, dock_id, now) if d.key not in failed]
        if not todo:
            break
        for d in todo:
            _intend(journal, d)
            try:
                erase_object(bucket, d.key)
            except BodycamError as err:
                failed.add(d.key)
                report.errors.append(f"{d.key}: not erased: {err}")
                _forget_if_intact(journal, bucket, d)
                continue
            if after_delete is not None:
                after_delete(d)
            _log(journal, custody, d)
            report.erased.append(d)
            LOG.info("erased %s (retained until %s under %s)", d.key, rt.iso(d.retain_until), ",".join(d.agreements))
    return report


def unpublished(journal: Journal) -> int:
    """Erasure entries logged but in no published batch yet."""
    rows = journal.query(
        "SELECT COUNT(*) FROM erasures e WHERE e.state='logged' AND e.custody_seq > "
        "(SELECT COALESCE(MAX(custody_last), 0) FROM batches WHERE state='published')"
    )
    return int(rows[0][0])


def apply(
    agent: Agent,
    *,
    custody: CustodyLog | None = None,
    now: float | None = None,
    after_delete: Callable[[Due], None] | None = None,
) -> ApplyReport:
    """``retention apply``: erase what is due, then seal and publish the erasure entries at once (a
    custody-only batch, or with the open batch when it has verified recordings and nothing in flight),
    so ``verify`` finds each erasure next to the missing object. ``custody`` names the actor (the CLI
    passes the operator's log)."""
    report = erase(
        agent.journal, custody or agent.custody, agent.bucket, agent.config.dock_id, now=now, after_delete=after_delete
    )
    if unpublished(agent.journal):
        try:
            report.batch_id = agent.seal_and_publish(flush_custody=True)
        except BodycamError as err:
            report.errors.append(f"publishing the erasure entries: {err}")
    report.unpublished = unpublished(agent.journal)
    return report
