"""The custody log: an append-only chain of JSON lines, each carrying the SHA-256 of the line before.

Entries live in the journal and are written in the same transaction as the state change they
record, so the log and the state can never disagree after a crash. Each batch publishes the
contiguous segment of the chain since the previous batch, and its signed manifest names the
segment's head: a gap, fork, reordering or edit anywhere is detectable (docs/formats.md).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .journal import Journal, utc_now

GENESIS = "0" * 64
MAX_DETAIL = 500  # characters of an error's clear text kept for the sidecar
EVENTS = frozenset(
    {
        "docked",
        "identified",
        "authenticated",
        "clock_set",
        "clock_invalid",
        "clock_epoch_reset",
        "listed",
        "skipped_out_of_scope",
        "pull_started",
        "pull_deferred",
        "pulled",
        "uploaded",
        "verified",
        "erased",
        "error",
        "undocked",
        "batch_sealed",
        "key_rotated",
        "firmware_installed",
        "enrolled",
        "paired",
        "revocations_sent",
        "dock_proven",
        "camera_unprotected",
        "dock_handover",
        "exercise_amended",
        "exercise_removed",
    }
)


def canonical(obj: Any) -> bytes:
    """Canonical JSON: sorted keys, UTF-8, no insignificant whitespace (the bytes that get hashed/signed)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


@dataclass(frozen=True, slots=True)
class Head:
    seq: int
    hash: str


class CustodyLog:
    def __init__(self, journal: Journal, dock_id: str) -> None:
        self.journal = journal
        self.dock_id = dock_id

    def append(self, event: str, **data: Any) -> Head:
        with self.journal.transaction() as db:
            return self.append_in(db, event, **data)

    def append_in(self, db: sqlite3.Connection, event: str, **data: Any) -> Head:
        """Append inside the caller's transaction, so the entry commits with the change it records."""
        if event not in EVENTS:
            raise ValueError(f"unknown custody event {event!r}")
        row = db.execute("SELECT seq, hash FROM custody ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
        entry = {"seq": seq, "ts": utc_now(), "dock": self.dock_id, "event": event, "prev": prev}
        entry.update({k: v for k, v in data.items() if v is not None})
        line = canonical(entry)
        digest = line_hash(line)
        db.execute("INSERT INTO custody(seq, line, hash) VALUES(?,?,?)", (seq, line.decode(), digest))
        return Head(seq, digest)

    def error(self, err: BaseException, **ids: Any) -> Head:
        with self.journal.transaction() as db:
            return self.error_in(db, err, **ids)

    def error_in(self, db: sqlite3.Connection, err: BaseException, **ids: Any) -> Head:
        """An ``error`` entry that carries only the error's kind and ids; its clear text stays apart.

        An error's message may quote what a camera wrote (a file name, an index's ``file`` value) or
        name an officer or a site, and the chain is published in the shared bucket; the text is kept
        in ``custody_detail`` and travels only in the batch's encrypted sidecar (docs/formats.md).
        """
        status = getattr(err, "status", None)
        head = self.append_in(
            db, "error", error=type(err).__name__, status=status if isinstance(status, int) and status else None, **ids
        )
        db.execute("INSERT INTO custody_detail(seq, text) VALUES(?,?)", (head.seq, str(err)[:MAX_DETAIL]))
        return head

    def details(self, first: int, last: int) -> list[dict[str, Any]]:
        """The clear text of the error entries ``first..last``, for the encrypted sidecar."""
        rows = self.journal.query(
            "SELECT seq, text FROM custody_detail WHERE seq BETWEEN ? AND ? ORDER BY seq", (first, last)
        )
        return [{"seq": int(r[0]), "error": str(r[1])} for r in rows]

    def head(self) -> Head:
        rows = self.journal.query("SELECT seq, hash FROM custody ORDER BY seq DESC LIMIT 1")
        return Head(rows[0][0], rows[0][1]) if rows else Head(0, GENESIS)

    def segment(self, first: int, last: int) -> bytes:
        rows = self.journal.query("SELECT line FROM custody WHERE seq BETWEEN ? AND ? ORDER BY seq", (first, last))
        return b"".join(row[0].encode() + b"\n" for row in rows)

    def hash_of(self, seq: int) -> str:
        if seq == 0:
            return GENESIS
        rows = self.journal.query("SELECT hash FROM custody WHERE seq=?", (seq,))
        return str(rows[0][0]) if rows else GENESIS


@dataclass(frozen=True, slots=True)
class ChainProblem:
    line: int  # 1-based line number in the segment
    seq: int | None
    message: str


def check_segment(lines: Iterable[bytes], prev: str, first_seq: int) -> tuple[str, int, list[ChainProblem]]:
    """Walk a custody segment: each line parses, numbers follow on, and links to the one before.

    Returns (head hash, last seq, problems). ``prev``/``first_seq`` are where the segment must start.
    """
    problems: list[ChainProblem] = []
    head, expected_seq = prev, first_seq
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip(b"\n")
        try:
            entry = json.loads(line)
        except ValueError:
            problems.append(ChainProblem(number, None, "custody entry is not valid JSON"))
            head = line_hash(line)
            expected_seq += 1
            continue
        seq = entry.get("seq") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or canonical(entry) != line:
            problems.append(ChainProblem(number, seq, "custody entry is not in canonical form (edited?)"))
        if seq != expected_seq:
            problems.append(ChainProblem(number, seq, f"custody entry has seq {seq}, expected {expected_seq}"))
        if isinstance(entry, dict) and entry.get("prev") != head:
            problems.append(ChainProblem(number, seq, "custody entry does not link to the entry before it"))
        head = line_hash(line)
        expected_seq = (seq if isinstance(seq, int) else expected_seq) + 1
    return head, expected_seq - 1, problems
