"""The dock asks its witnesses to cosign its latest published checkpoint, and keeps what they say.

Why apart from sealing: a witness is another organisation's server and may be down for days. Sealing and
uploading never wait on one; this runs after publishing (``ingest --once``) or in a thread of its own
(the daemon), each witness at most once per ``retry_s`` after a failure. A witness that was down is
caught up in one step: the dock remembers the size each witness last cosigned (``witness_views``) and
sends a consistency proof from it to the newest checkpoint; a 409 tells the dock the witness's real size,
and the dock proves again from there (C2SP tlog-witness).

The cosignatures are journaled, then written to the bucket: ``log/witnessed/<size>`` (the checkpoint
with every cosignature gathered for that size) and ``log/checkpoint.witnessed`` (the same for the
largest cosigned size), docs/formats.md §11.3. Both are rewritten as cosignatures arrive, so they are the
bucket's mutable objects beside ``log/checkpoint``; truncation is caught from the witnesses' own state.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bodycam.agent.formats import cosignature, note, tlog
from bodycam.agent.formats.witnesspolicy import Policy, Witness
from bodycam.agent.storage import docklog
from bodycam.agent.storage.docklog import JournalHashStore, log_prefix, origin
from bodycam.agent.storage.journal import Journal
from bodycam.drivers.errors import BodycamError, IntegrityError

if TYPE_CHECKING:
    from bodycam.agent.storage.bucket import Bucket

LOG = logging.getLogger(__name__)
MAX_CONFLICTS = 3  # 409s followed in one attempt: a witness that keeps moving is tried again later
MAX_PARALLEL = 16  # witnesses asked at once (a policy names at most 64)
TABLES = (
    "CREATE TABLE IF NOT EXISTS witness_views(origin TEXT NOT NULL, witness TEXT NOT NULL, size INTEGER NOT NULL, "
    "PRIMARY KEY(origin, witness))",
    "CREATE TABLE IF NOT EXISTS witness_cosignatures(origin TEXT NOT NULL, size INTEGER NOT NULL, "
    "witness TEXT NOT NULL, line TEXT NOT NULL, PRIMARY KEY(origin, size, witness))",
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one witness did with the newest checkpoint: cosigned ``size``, or ``error``."""

    witness: str
    size: int | None = None
    error: str | None = None


class Witnessing:
    """One dock's submissions to the witnesses of its policy (``[witnesses]`` in the config)."""

    def __init__(
        self, journal: Journal, bucket: Bucket, dock_id: str, policy: Policy, *, timeout: float, retry_s: float
    ) -> None:
        self.journal = journal
        self.bucket = bucket
        self.dock_id = dock_id
        self.origin = origin(dock_id)
        self.policy = policy
        self.timeout = timeout
        self.retry_s = retry_s
        self._next_try: dict[str, float] = {}  # witness name -> monotonic time before which it is not asked
        with journal.transaction() as db:
            for statement in TABLES:
                db.execute(statement)

    def _newest(self) -> tuple[int, bytes] | None:
        """The newest published checkpoint: (size, signed note)."""
        if not self.journal.query("SELECT 1 FROM sqlite_master WHERE type='table' AND name='tlog_entries'"):
            return None
        rows = self.journal.query(
            "SELECT e.idx, e.checkpoint FROM tlog_entries e JOIN batches b ON b.batch_id = e.batch_id "
            "WHERE e.log=? AND b.published_at IS NOT NULL ORDER BY e.idx DESC LIMIT 1",
            (self.origin,),
        )
        return (int(rows[0][0]) + 1, bytes(rows[0][1])) if rows else None

    def _view(self, w: Witness) -> int:
        rows = self.journal.query(
            "SELECT size FROM witness_views WHERE origin=? AND witness=?", (self.origin, w.cosigner.name)
        )
        return int(rows[0][0]) if rows else 0

    def _has_cosignature(self, w: Witness, size: int) -> bool:
        return bool(
            self.journal.query(
                "SELECT 1 FROM witness_cosignatures WHERE origin=? AND size=? AND witness=?",
                (self.origin, size, w.cosigner.name),
            )
        )

    def _behind(self) -> list[Witness]:
        newest = self._newest()
        if newest is None:
            return []
        return [w for w in self.policy.witnesses if w.url and not self._has_cosignature(w, newest[0])]

    def due(self, now: float | None = None) -> bool:
        """Whether a witness with a URL lacks the newest checkpoint and may be asked now."""
        now = time.monotonic() if now is None else now
        return any(self._next_try.get(w.name, 0.0) <= now for w in self._behind())

    def run(self, now: float | None = None) -> list[Outcome]:
        """Ask every due witness that lacks the newest checkpoint; write what they cosigned to the bucket.
        Never raises for a witness (its failure is an Outcome and a log line); raises for the bucket."""
        now = time.monotonic() if now is None else now
        newest = self._newest()
        if newest is None:
            return []
        size, signed = newest
        due = [w for w in self._behind() if self._next_try.get(w.name, 0.0) <= now]
        if not due:
            return []
        # asked at once: each ask may cost the timeout, and one after another the witnesses that do not
        # answer held ingest --once (or the daemon's witnessing thread) for the sum of their timeouts
        with ThreadPoolExecutor(max_workers=min(len(due), MAX_PARALLEL), thread_name_prefix="witness") as pool:
            answers = list(pool.map(lambda w: self._submit(w, size, signed), due))
        outcomes = []
        for w, outcome in zip(due, answers, strict=True):
            if outcome.error is not None:
                self._next_try[w.name] = now + self.retry_s
                LOG.warning("witness %s: %s (asked again in %.0f s)", w.name, outcome.error, self.retry_s)
            else:
                self._next_try.pop(w.name, None)
                LOG.info("witness %s cosigned checkpoint %d of %s", w.name, size, self.origin)
            outcomes.append(outcome)
        if any(o.error is None for o in outcomes):
            self._write(size, signed)
        return outcomes

    def _submit(self, w: Witness, size: int, signed: bytes) -> Outcome:
        # imported here: its http.client and ssl cost every run ~40 ms, and most docks have no witnesses
        from bodycam.agent.storage import witnessclient

        if w.url is None:
            return Outcome(w.name, error="has no URL in the witness policy")
        # a view beyond this log (journaled by an older agent from a witness's 409) is no size the witness
        # can have cosigned for it: ask from 0, and the witness's 409 says where it really stands
        old = self._view(w)
        old = old if old <= size else 0
        text, _ = note.split_note(signed)
        tree = tlog.Tree.view(JournalHashStore(lambda sql, p: self.journal.query(sql, tuple(p)), self.origin), size)
        for _ in range(MAX_CONFLICTS):
            proof = tree.consistency_proof(old, size) if 0 < old < size else []
            try:
                lines = witnessclient.add_checkpoint(w.url, old, proof, signed, timeout=self.timeout)
            except witnessclient.WitnessConflict as conflict:
                if conflict.size == old:
                    return Outcome(w.name, error=f"refused size {size}: it holds another root for size {old}")
                if conflict.size > size:  # not journaled: one bad answer must not stop every later attempt
                    error = f"says it has cosigned size {conflict.size}, larger than this dock's log ({size})"
                    return Outcome(w.name, error=error)
                old = conflict.size
                self._set_view(w, old)
                continue
            except BodycamError as err:
                return Outcome(w.name, error=str(err))
            return self._keep(w, size, text, lines)
        return Outcome(w.name, error="its size kept changing")

    def _keep(self, w: Witness, size: int, text: str, lines: list[str]) -> Outcome:
        for line in lines:
            try:
                hit = cosignature.verify_line(line, text, [w.cosigner])
            except IntegrityError as err:
                return Outcome(w.name, error=f"answered a cosignature that does not verify: {err}")
            if hit is not None:
                with self.journal.transaction() as db:
                    db.execute(
                        "INSERT OR REPLACE INTO witness_cosignatures(origin, size, witness, line) VALUES(?,?,?,?)",
                        (self.origin, size, w.cosigner.name, line),
                    )
                    db.execute(
                        "INSERT INTO witness_views(origin, witness, size) VALUES(?,?,?) "
                        "ON CONFLICT(origin, witness) DO UPDATE SET size=excluded.size",
                        (self.origin, w.cosigner.name, size),
                    )
                return Outcome(w.name, size=size)
        return Outcome(w.name, error="answered 200 without a cosignature by its key")

    def _set_view(self, w: Witness, size: int) -> None:
        with self.journal.transaction() as db:
            db.execute(
                "INSERT INTO witness_views(origin, witness, size) VALUES(?,?,?) "
                "ON CONFLICT(origin, witness) DO UPDATE SET size=excluded.size",
                (self.origin, w.cosigner.name, size),
            )

    def cosigned(self, size: int, signed: bytes) -> bytes:
        """The checkpoint of ``size`` with every cosignature journaled for it."""
        rows = self.journal.query(
            "SELECT line FROM witness_cosignatures WHERE origin=? AND size=? ORDER BY witness", (self.origin, size)
        )
        return cosignature.add_lines(signed, [str(r[0]) for r in rows])

    def _write(self, size: int, signed: bytes) -> None:
        data = self.cosigned(size, signed)
        prefix = log_prefix(self.dock_id)
        self.bucket.put_object(f"{prefix}/{docklog.WITNESSED_DIR}/{size}", data, create_only=False)
        self.bucket.put_object(f"{prefix}/{docklog.WITNESSED}", data, create_only=False)
