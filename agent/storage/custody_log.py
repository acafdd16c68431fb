"""The custody log's writer: entries appended to the journal in the caller's transaction.

The chain's format (canonical lines, hashes, events, the segment check) is in formats/custody.py;
this module stores it, so an entry always commits with the state change it records.
"""

from __future__ import annotations

import os
import pwd
import sqlite3
from dataclasses import dataclass

from bodycam.agent.config import Config
from bodycam.agent.formats.custody import (
    ENTRY_VERSION,
    EVENT_OPERATIONS,
    EVENTS,
    GENESIS,
    MAX_DETAIL,
    OPERATIONS,
    Head,
    canonical,
    line_hash,
    operator_pseudonym,
)
from bodycam.agent.formats.manifest import load_pseudonym_key
from bodycam.agent.storage.journal import Journal, utc_now


@dataclass(frozen=True, slots=True)
class Operator:
    """The person behind a CLI action: ``actor`` is what custody (in the bucket) shows, ``user`` the
    clear Unix user, kept in the journal for the controller archive's sidecar only."""

    user: str
    actor: str


def unix_user() -> str:
    """The operator running this process: the user ``sudo`` was run by, else the real uid's name."""
    sudo = os.environ.get("SUDO_USER")
    if os.geteuid() == 0 and sudo:
        return sudo[:64]
    try:
        return pwd.getpwuid(os.getuid()).pw_name[:64]
    except KeyError:
        return f"uid {os.getuid()}"


class CustodyLog:
    """Appends version 2 entries (docs/formats.md §4): ``actor`` is the dock id, or the operator's
    pseudonym when ``operator`` is given (a CLI action); ``operation`` follows the event."""

    def __init__(self, journal: Journal, dock_id: str, operator: Operator | None = None) -> None:
        self.journal = journal
        self.dock_id = dock_id
        self.operator = operator

    @classmethod
    def for_operator(cls, journal: Journal, config: Config) -> CustodyLog:
        """The log of a CLI action: its entries name the operator (pseudonymised) as the actor."""
        secret = load_pseudonym_key(config.pseudonym_key_path, create=True)
        user = unix_user()
        return cls(journal, config.dock_id, Operator(user, operator_pseudonym(secret, user)))

    def append(self, event: str, **data: object) -> Head:
        with self.journal.transaction() as db:
            return self.append_in(db, event, **data)

    def append_in(self, db: sqlite3.Connection, event: str, **data: object) -> Head:
        """Append inside the caller's transaction, so the entry commits with the change it records."""
        if event not in EVENTS:
            raise ValueError(f"unknown custody event {event!r}")
        operation = data.pop("operation", None) or EVENT_OPERATIONS.get(event)
        if operation is not None and operation not in OPERATIONS:
            raise ValueError(f"unknown custody operation {operation!r}")
        row = db.execute("SELECT seq, hash FROM custody ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
        actor = self.operator.actor if self.operator else self.dock_id
        entry: dict[str, object] = {"seq": seq, "ts": utc_now(), "dock": self.dock_id, "event": event, "prev": prev}
        entry.update({"v": ENTRY_VERSION, "actor": actor, "operation": operation})
        entry.update(data)
        entry = {k: v for k, v in entry.items() if v is not None}
        line = canonical(entry)
        digest = line_hash(line)
        db.execute("INSERT INTO custody(seq, line, hash) VALUES(?,?,?)", (seq, line.decode(), digest))
        if self.operator is not None:
            db.execute("INSERT INTO custody_operator(seq, user) VALUES(?,?)", (seq, self.operator.user))
        return Head(seq, digest)

    def error(self, err: BaseException, **ids: object) -> Head:
        with self.journal.transaction() as db:
            return self.error_in(db, err, **ids)

    def error_in(self, db: sqlite3.Connection, err: BaseException, **ids: object) -> Head:
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

    def details(self, first: int, last: int) -> list[dict[str, object]]:
        """The clear text of the error entries ``first..last``, for the encrypted sidecar."""
        rows = self.journal.query(
            "SELECT seq, text FROM custody_detail WHERE seq BETWEEN ? AND ? ORDER BY seq", (first, last)
        )
        return [{"seq": int(r[0]), "error": str(r[1])} for r in rows]

    def operators(self, first: int, last: int) -> list[dict[str, object]]:
        """Who (clear Unix user) caused the operator entries ``first..last``, for the archive's sidecar."""
        rows = self.journal.query(
            "SELECT seq, user FROM custody_operator WHERE seq BETWEEN ? AND ? ORDER BY seq", (first, last)
        )
        return [{"seq": int(r[0]), "user": str(r[1])} for r in rows]

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
