"""A witness's memory: the latest checkpoint it cosigned for each log, in SQLite (WAL, synchronous=FULL).

Why SQLite and one row per origin: C2SP tlog-witness asks a witness to keep only the latest checkpoint of
each log, to persist it before answering, and to check-and-update atomically (otherwise two concurrent
requests could roll the stored size back and the witness would cosign two inconsistent views).
:meth:`WitnessState.advance` runs the whole decision inside one ``BEGIN IMMEDIATE`` transaction, which
also keeps a second witness process on the same directory from interleaving.

Refused submissions from a known log with a valid signature (a fork, a bad proof) are kept as evidence,
at most :data:`MAX_EVIDENCE` rows, oldest dropped first.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bodycam.agent.storage.journal import private_dir
from bodycam.drivers.errors import StorageError

MAX_EVIDENCE = 1000
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS latest(origin TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL, "
    "cosigned BLOB NOT NULL, updated_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS evidence(id INTEGER PRIMARY KEY, origin TEXT NOT NULL, at REAL NOT NULL, "
    "reason TEXT NOT NULL, request BLOB NOT NULL)",
)


@dataclass(frozen=True, slots=True)
class Latest:
    """The newest checkpoint a witness cosigned for one log: its size, root and the cosigned note."""

    size: int
    root: bytes
    cosigned: bytes


class WitnessState:
    """The state directory of ``witness serve`` (0700, its database 0600 whatever the umask)."""

    def __init__(self, directory: Path) -> None:
        private_dir(directory)
        self.path = directory / "witness.sqlite"
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                os.fchmod(fd, 0o600)
            finally:
                os.close(fd)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            for suffix in ("-wal", "-shm"):
                companion = self.path.with_name(self.path.name + suffix)
                if companion.exists():
                    os.chmod(companion, 0o600)
            for statement in SCHEMA:
                self._db.execute(statement)
        except (OSError, sqlite3.Error) as err:
            raise StorageError(f"cannot open the witness state {self.path}: {err}") from err
        self._lock = threading.Lock()

    def latest(self, origin: str) -> Latest | None:
        with self._lock:
            row = self._db.execute("SELECT size, root, cosigned FROM latest WHERE origin=?", (origin,)).fetchone()
        return None if row is None else Latest(int(row[0]), bytes(row[1]), bytes(row[2]))

    def advance(self, origin: str, decide: Callable[[Latest | None], Latest]) -> Latest:
        """Run ``decide`` on the stored latest checkpoint and store what it returns, atomically.
        ``decide`` raises to refuse; nothing is stored then. Raises StorageError for the database."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    row = self._db.execute(
                        "SELECT size, root, cosigned FROM latest WHERE origin=?", (origin,)
                    ).fetchone()
                    old = None if row is None else Latest(int(row[0]), bytes(row[1]), bytes(row[2]))
                    new = decide(old)
                    self._db.execute(
                        "INSERT INTO latest(origin, size, root, cosigned, updated_at) VALUES(?,?,?,?,?) "
                        "ON CONFLICT(origin) DO UPDATE SET size=excluded.size, root=excluded.root, "
                        "cosigned=excluded.cosigned, updated_at=excluded.updated_at",
                        (origin, new.size, new.root, new.cosigned, time.time()),
                    )
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as err:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise StorageError(f"witness state {self.path}: {err}") from err
        return new

    def keep_evidence(self, origin: str, reason: str, request: bytes) -> None:
        """Keep a refused, validly signed submission (proof of a log's misbehaviour), bounded."""
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO evidence(origin, at, reason, request) VALUES(?,?,?,?)",
                    (origin, time.time(), reason[:500], request),
                )
                self._db.execute("DELETE FROM evidence WHERE id <= (SELECT MAX(id) FROM evidence) - ?", (MAX_EVIDENCE,))
            except sqlite3.Error as err:
                raise StorageError(f"witness state {self.path}: {err}") from err

    def evidence(self, origin: str) -> list[tuple[str, bytes]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT reason, request FROM evidence WHERE origin=? ORDER BY id", (origin,)
            ).fetchall()
        return [(str(r[0]), bytes(r[1])) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
