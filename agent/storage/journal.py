"""The journal: SQLite (WAL, synchronous=FULL) holding every piece of state that must survive a crash
(part rows commit without their own fsync: ``Journal.add_part`` says why).

It records each recording's progress as a state machine, the uploaded parts of each multipart
upload, the custody chain, batches and their sealed artefacts, and the registers an armourer keeps
(enrolled cameras, allocations to officers, exercises, recipients). One transaction per step, so a
kill -9 at any point leaves a state the next run resumes from (docs/crash-safety.md).

Recording states (``RecordingState``; its values are the text stored in ``recordings.state``)::

    (listed) -> out_of_scope   (stays on the camera; a later docking may decide it again)
        \\-> uploading -> completing -> verified -> erased
                 |  \\-> pending      (moved out of a batch sealed on schedule: starts afresh)
                 \\-> failed          (integrity problem: never erased, reported, started afresh)

``completing``: every byte is in the bucket and checked, the multipart upload is still to be completed
(recover() does it without the camera). ``verified`` stays when the camera refuses the erase. Rows
are keyed by ``RecordingKey`` (serial, recording id, the camera's SHA-256): a recording the camera
rewrites under the same id is another recording.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import os
import sqlite3
import stat
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bodycam.agent.formats.times import iso_utc
from bodycam.drivers.errors import ConfigError, StorageError

if TYPE_CHECKING:
    from bodycam.drivers.protocol.messages import RecordingInfo

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cameras(
    serial TEXT PRIMARY KEY, device_key TEXT NOT NULL, model TEXT, enrolled_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS allocations(
    id INTEGER PRIMARY KEY, serial TEXT NOT NULL, officer TEXT NOT NULL, at REAL NOT NULL, noted_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS exercises(
    id TEXT PRIMARY KEY, site TEXT NOT NULL, start_ts REAL NOT NULL, end_ts REAL NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS exercise_cameras(
    exercise_id TEXT NOT NULL REFERENCES exercises(id), serial TEXT NOT NULL, PRIMARY KEY(exercise_id, serial));
CREATE TABLE IF NOT EXISTS recipients(name TEXT PRIMARY KEY, age TEXT NOT NULL, added_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batches(
    batch_id TEXT PRIMARY KEY, seq INTEGER UNIQUE NOT NULL, opened_at TEXT NOT NULL, state TEXT NOT NULL,
    custody_first INTEGER, custody_last INTEGER, manifest BLOB, signature TEXT, custody BLOB, personal BLOB,
    manifest_sha256 TEXT, published_at TEXT);
CREATE TABLE IF NOT EXISTS recordings(
    serial TEXT NOT NULL, recording_id INTEGER NOT NULL, camera_sha256 TEXT NOT NULL,
    state TEXT NOT NULL, batch_id TEXT, model TEXT, size INTEGER NOT NULL,
    start_us INTEGER NOT NULL, end_us INTEGER NOT NULL, clock_offset_s REAL NOT NULL,
    exercise_id TEXT, category TEXT NOT NULL, name TEXT NOT NULL,
    object_key TEXT, upload_id TEXT, file_key BLOB, age_header BLOB,
    plaintext_sha256 TEXT, ciphertext_sha256 TEXT, ciphertext_size INTEGER, version_id TEXT,
    error TEXT, attempts INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL,
    PRIMARY KEY(serial, recording_id, camera_sha256));
CREATE TABLE IF NOT EXISTS recording_agreements(
    serial TEXT NOT NULL, recording_id INTEGER NOT NULL, camera_sha256 TEXT NOT NULL, disclosure TEXT NOT NULL,
    PRIMARY KEY(serial, recording_id, camera_sha256));
CREATE TABLE IF NOT EXISTS parts(
    serial TEXT NOT NULL, recording_id INTEGER NOT NULL, camera_sha256 TEXT NOT NULL, part_number INTEGER NOT NULL,
    size INTEGER NOT NULL, sha256_b64 TEXT NOT NULL, etag TEXT NOT NULL,
    PRIMARY KEY(serial, recording_id, camera_sha256, part_number));
CREATE TABLE IF NOT EXISTS custody(seq INTEGER PRIMARY KEY, line TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS custody_detail(seq INTEGER PRIMARY KEY, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS custody_operator(seq INTEGER PRIMARY KEY, user TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batch_sidecars(
    batch_id TEXT NOT NULL, n INTEGER NOT NULL, name TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY(batch_id, n));
CREATE TABLE IF NOT EXISTS clock_readings(
    id INTEGER PRIMARY KEY, serial TEXT NOT NULL, epoch INTEGER, valid INTEGER NOT NULL, camera_time REAL NOT NULL,
    offset_s REAL NOT NULL, round_trip_s REAL NOT NULL, set_by_dock INTEGER NOT NULL,
    superseded INTEGER NOT NULL DEFAULT 0, measured_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS clock_readings_epoch ON clock_readings(serial, epoch);
CREATE TABLE IF NOT EXISTS erasures(
    key TEXT PRIMARY KEY, object TEXT NOT NULL, batch_id TEXT NOT NULL, serial TEXT, recording_id INTEGER,
    sha256 TEXT NOT NULL, version_id TEXT, retain_until REAL NOT NULL, agreements TEXT NOT NULL,
    state TEXT NOT NULL, custody_seq INTEGER, started_at TEXT NOT NULL, logged_at TEXT);
CREATE TABLE IF NOT EXISTS camera_intake(serial TEXT PRIMARY KEY, noted INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS recording_clocks(
    serial TEXT NOT NULL, recording_id INTEGER NOT NULL, camera_sha256 TEXT NOT NULL, offset_s REAL,
    first_listed_at TEXT NOT NULL, PRIMARY KEY(serial, recording_id, camera_sha256));
"""
#: schema 1 -> 2: recordings an older agent listed keep the offset it measured at their first listing
#: (its clock_offset_s), the only clock history it kept (agent/pipeline/clocks.py)
MIGRATE_1_TO_2 = (
    "INSERT OR IGNORE INTO recording_clocks(serial, recording_id, camera_sha256, offset_s, first_listed_at) "
    "SELECT serial, recording_id, camera_sha256, clock_offset_s, updated_at FROM recordings"
)


def utc_now() -> str:
    return iso_utc(dt.datetime.now(dt.UTC), "microseconds")


class RecordingState(enum.StrEnum):
    """Where one recording is (module docstring); a StrEnum, so rows written as plain text read back equal."""

    OUT_OF_SCOPE = "out_of_scope"
    UPLOADING = "uploading"
    COMPLETING = "completing"
    VERIFIED = "verified"
    ERASED = "erased"
    FAILED = "failed"
    PENDING = "pending"


#: states in which a recording's bytes are all in the bucket, checked
DONE_STATES = frozenset({RecordingState.VERIFIED, RecordingState.ERASED})
#: states in which its upload is in flight (a batch holding one cannot be sealed)
IN_FLIGHT_STATES = frozenset({RecordingState.UPLOADING, RecordingState.COMPLETING})
#: states a pull starts afresh from (a new upload, a new age file key)
RESTART_STATES = frozenset({RecordingState.OUT_OF_SCOPE, RecordingState.FAILED, RecordingState.PENDING})

#: the primary key of ``recordings``, ``parts``, ``recording_agreements`` and ``recording_clocks``
_KEY_WHERE = "serial=? AND recording_id=? AND camera_sha256=?"


@dataclass(frozen=True, slots=True)
class RecordingKey:
    """One recording as the journal keys it: a camera's serial, its recording id and its listed SHA-256."""

    serial: str
    recording_id: int
    camera_sha256: str  # hex

    @classmethod
    def of(cls, serial: str, rec: RecordingInfo) -> RecordingKey:
        """The key of a recording as the camera ``serial`` lists it."""
        return cls(serial, rec.id, rec.sha256.hex())

    @property
    def params(self) -> tuple[str, int, str]:
        return (self.serial, self.recording_id, self.camera_sha256)


class JournaledPart(Protocol):
    """What the journal keeps of an uploaded part (storage.bucket.Part is one).

    ``checksum`` goes in the column ``parts.sha256_b64``, which keeps its name: it holds the part's base64
    CRC-32C since issue 14 item 2, and a SHA-256 in rows an older agent wrote (told apart by length).
    """

    @property
    def number(self) -> int: ...

    @property
    def size(self) -> int: ...

    @property
    def checksum(self) -> str | None: ...

    @property
    def etag(self) -> str: ...


class Journal:
    """Thread-safe handle on the journal; every public method is one transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        private_dir(path.parent)
        try:
            _private_files(path)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._lock = threading.RLock()
            with self.transaction() as db:
                # one statement at a time: executescript() would COMMIT behind the transaction's back
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
                if row is None:
                    db.execute("INSERT INTO meta VALUES('schema', ?)", (str(SCHEMA_VERSION),))
                elif int(row[0]) > SCHEMA_VERSION:
                    raise ConfigError(
                        f"journal {path} was written by a newer agent (schema {row[0]}); upgrade bodycam-sync"
                    )
                elif int(row[0]) < SCHEMA_VERSION:
                    db.execute(MIGRATE_1_TO_2)
                    db.execute("UPDATE meta SET value=? WHERE key='schema'", (str(SCHEMA_VERSION),))
        except sqlite3.Error as err:
            raise _storage_error(err, path) from err
        except OSError as err:
            raise StorageError(f"cannot open the journal at {path}: {err}") from err

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; any error rolls back and becomes a StorageError."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as err:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise _storage_error(err, self.path) from err

    def query(self, sql: str, args: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return list(self._db.execute(sql, args).fetchall())
            except sqlite3.Error as err:
                raise _storage_error(err, self.path) from err

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- registers ----------------------------------------------------------------------------
    def enroll(self, serial: str, device_key: bytes, model: str | None = None) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO cameras(serial, device_key, model, enrolled_at) VALUES(?,?,?,?) "
                "ON CONFLICT(serial) DO UPDATE SET device_key=excluded.device_key, model=excluded.model, "
                "enrolled_at=excluded.enrolled_at",
                (serial, device_key.hex(), model, utc_now()),
            )

    def enrolled_key(self, serial: str) -> bytes | None:
        rows = self.query("SELECT device_key FROM cameras WHERE serial=?", (serial,))
        return bytes.fromhex(rows[0][0]) if rows else None

    def allocate(self, serial: str, officer: str, at: float) -> None:
        with self.transaction() as db:
            self.allocate_in(db, serial, officer, at)

    def allocate_in(self, db: sqlite3.Connection, serial: str, officer: str, at: float) -> None:
        """In the caller's transaction (with its custody entry, agent/pipeline/enrolment.py)."""
        db.execute(
            "INSERT INTO allocations(serial, officer, at, noted_at) VALUES(?,?,?,?)",
            (serial, officer, at, utc_now()),
        )

    def allocations(self, serial: str | None = None) -> list[sqlite3.Row]:
        if serial is None:
            return self.query("SELECT * FROM allocations ORDER BY at, id")
        return self.query("SELECT * FROM allocations WHERE serial=? ORDER BY at, id", (serial,))

    def officer_at(self, serial: str, when: float) -> str | None:
        rows = self.query(
            "SELECT officer FROM allocations WHERE serial=? AND at<=? ORDER BY at DESC, id DESC LIMIT 1", (serial, when)
        )
        return str(rows[0][0]) if rows else None

    def add_recipient(self, name: str, age: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO recipients(name, age, added_at) VALUES(?,?,?) "
                "ON CONFLICT(name) DO UPDATE SET age=excluded.age",
                (name, age, utc_now()),
            )

    def recipients(self) -> list[tuple[str, str]]:
        return [(r["name"], r["age"]) for r in self.query("SELECT name, age FROM recipients ORDER BY name")]

    def meta(self, key: str) -> str | None:
        rows = self.query("SELECT value FROM meta WHERE key=?", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO meta VALUES(?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))

    # -- one recording, by its key ---------------------------------------------------------------
    # Reads work inside or outside a transaction. Writes are steps of a larger transaction (the state
    # change and its custody entry commit together), so they must run inside transaction().
    def recording(self, key: RecordingKey) -> sqlite3.Row | None:
        rows = self.query(f"SELECT * FROM recordings WHERE {_KEY_WHERE}", key.params)  # noqa: S608 - constant
        return rows[0] if rows else None

    def state(self, key: RecordingKey) -> RecordingState | None:
        row = self.recording(key)
        return None if row is None else RecordingState(row["state"])

    def keys_in(self, state: RecordingState, *, batch_id: str | None = None) -> list[RecordingKey]:
        """The recordings in ``state`` (of ``batch_id`` only, when given)."""
        sql = "SELECT serial, recording_id, camera_sha256 FROM recordings WHERE state=?"
        args: tuple[str, ...] = (state,)
        if batch_id is not None:
            sql, args = sql + " AND batch_id=?", (state, batch_id)
        return [RecordingKey(str(r[0]), int(r[1]), str(r[2])) for r in self.query(sql, args)]

    def parts(self, key: RecordingKey) -> list[sqlite3.Row]:
        """The journaled parts of the recording's upload, by part number."""
        return self.query(f"SELECT * FROM parts WHERE {_KEY_WHERE} ORDER BY part_number", key.params)  # noqa: S608

    def disclosure(self, key: RecordingKey) -> str | None:
        """The agreements and parties a recording was encrypted to (JSON), if it left under agreements."""
        rows = self.query(f"SELECT disclosure FROM recording_agreements WHERE {_KEY_WHERE}", key.params)  # noqa: S608
        return str(rows[0][0]) if rows else None

    def add_part(self, key: RecordingKey, upload_id: str, part: JournaledPart) -> None:
        """Journal one uploaded part (its own transaction), unless the recording no longer owns
        ``upload_id`` (it was moved out of its batch meanwhile).

        The one write that commits without its own fsync (``synchronous=NORMAL`` for this transaction):
        the row is in the WAL file as soon as it commits, so a kill -9 keeps it; a power cut may lose the
        rows since the last ``FULL`` commit, whose fsync of the WAL made every earlier row durable too. A
        lost row is a part the bucket has and the journal does not, which is sent again (crash-safety.md);
        every state change still syncs before it counts, ``completing`` with its exact part list. So a
        part no longer costs an fdatasync of the journal, 0.3 ms of CPU and 3 ms of its uploader's time."""
        with self._lock:
            try:
                self._db.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as err:
                raise _storage_error(err, self.path) from err
            try:
                with self.transaction() as db:
                    db.execute(
                        "INSERT OR REPLACE INTO parts SELECT ?,?,?,?,?,?,? WHERE EXISTS(SELECT 1 FROM "  # noqa: S608
                        f"recordings WHERE {_KEY_WHERE} AND upload_id=?)",
                        (*key.params, part.number, part.size, part.checksum, part.etag, *key.params, upload_id),
                    )
            finally:
                try:
                    self._db.execute("PRAGMA synchronous=FULL")  # every other write syncs before it counts
                except sqlite3.Error as err:
                    raise _storage_error(err, self.path) from err

    def replace_parts(self, key: RecordingKey, parts: Iterable[JournaledPart]) -> None:
        """In a transaction: exactly ``parts`` (those of one whole pass), none of an earlier pass."""
        self.delete_parts(key)
        self._write_many(
            "INSERT INTO parts VALUES(?,?,?,?,?,?,?)",
            [(*key.params, p.number, p.size, p.checksum, p.etag) for p in parts],
        )

    def delete_parts(self, key: RecordingKey) -> None:
        self._write(f"DELETE FROM parts WHERE {_KEY_WHERE}", key.params)  # noqa: S608 - constant

    def note_stay_reason(self, key: RecordingKey, reason: str, offset_s: float) -> None:
        """In a transaction: an out-of-scope recording decided again, for another reason."""
        self._update(key, "error=?, clock_offset_s=?", reason, offset_s)

    def mark_completing(
        self, key: RecordingKey, plaintext_sha256: str, ciphertext_sha256: str, ciphertext_size: int
    ) -> None:
        """In a transaction: every byte is in the bucket and checked; the upload is to be completed."""
        self._update(
            key,
            "state=?, plaintext_sha256=?, ciphertext_sha256=?, ciphertext_size=?",
            RecordingState.COMPLETING,
            plaintext_sha256,
            ciphertext_sha256,
            ciphertext_size,
        )

    def mark_verified(self, key: RecordingKey, version_id: str | None) -> None:
        """In a transaction: the object is complete and checked; its age file key is no longer needed."""
        self._update(key, "state=?, version_id=?, file_key=NULL", RecordingState.VERIFIED, version_id)

    def mark_erased(self, key: RecordingKey) -> None:
        self._update(key, "state=?", RecordingState.ERASED)

    def mark_failed(self, key: RecordingKey, error: str) -> None:
        """In a transaction: never erased; a later docking starts it afresh (its upload was aborted)."""
        self._update(key, "state=?, error=?, upload_id=NULL", RecordingState.FAILED, error)

    def mark_pending(self, key: RecordingKey, error: str) -> None:
        """In a transaction: out of its batch, with no key, upload or file key; its parts go too."""
        self._update(
            key,
            "state=?, batch_id=NULL, object_key=NULL, upload_id=NULL, file_key=NULL, age_header=NULL, error=?",
            RecordingState.PENDING,
            error,
        )
        self.delete_parts(key)

    def first_listing_offset(self, key: RecordingKey, offset_now: float | None) -> float | None:
        """In a transaction: the clock offset noted when this dock first listed the recording; the
        first time, ``offset_now`` is noted (None: the clock could not be trusted then)."""
        rows = self.query(f"SELECT offset_s FROM recording_clocks WHERE {_KEY_WHERE}", key.params)  # noqa: S608
        if rows:
            offset = rows[0]["offset_s"]
            return None if offset is None else float(offset)
        self._write(
            "INSERT INTO recording_clocks(serial, recording_id, camera_sha256, offset_s, first_listed_at) "
            "VALUES(?,?,?,?,?)",
            (*key.params, offset_now, utc_now()),
        )
        return offset_now

    def _update(self, key: RecordingKey, assignments: str, *values: object) -> None:
        """``assignments`` is a constant of this class, never text from outside."""
        self._write(
            f"UPDATE recordings SET {assignments}, updated_at=? WHERE {_KEY_WHERE}",  # noqa: S608
            (*values, utc_now(), *key.params),
        )

    def _write(self, sql: str, args: tuple[object, ...]) -> None:
        with self._lock:
            self._check_in_transaction()
            self._db.execute(sql, args)

    def _write_many(self, sql: str, rows: list[tuple[object, ...]]) -> None:
        with self._lock:
            self._check_in_transaction()
            self._db.executemany(sql, rows)

    def _check_in_transaction(self) -> None:
        """Under the lock, so another thread's open transaction does not count as this caller's."""
        if not self._db.in_transaction:
            raise RuntimeError("a journal write of a recording must run inside Journal.transaction()")


def private_dir(path: Path) -> None:
    """Create the state directory 0700 whatever the umask, and refuse one that others can enter.

    It holds officer ids, sites and the journal: a directory other users can read or traverse would
    hand them to anyone on the dock, so it is refused (ConfigError, exit 2) with the one-line fix.
    """
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as err:
        raise ConfigError(f"cannot create the state directory {path}: {err.strerror or err}") from err
    if mode & 0o077:
        raise ConfigError(
            f"the state directory {path} is open to other users (mode {mode:04o}) and holds officer ids and "
            f"sites; run: chmod 700 {path}"
        )


def _private_files(path: Path) -> None:
    """The journal and its WAL/shm files 0600 (SQLite gives the latter the journal's own mode)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            os.chmod(companion, 0o600)


def _storage_error(err: sqlite3.Error, path: Path) -> StorageError:
    text = str(err)
    if "full" in text.lower():
        return StorageError(
            f"the state directory {path.parent} is full ({text}); free space there and run again: nothing was lost"
        )
    if "locked" in text.lower() or "busy" in text.lower():
        return StorageError(f"the journal {path} is busy ({text}); is another bodycam-sync running?")
    return StorageError(f"journal {path}: {text}")


#: what shell completion may list: a fixed table -> column map, never a name from the command line
_COMPLETION_COLUMNS = {"cameras": "serial", "exercises": "id"}


def peek_names(path: Path, table: str, prefix: str = "", limit: int = 200) -> list[str]:
    """Serials or exercise ids starting with ``prefix``, for shell completion.

    Opens the journal read-only and never creates, migrates or waits on it: a Tab key must not change
    state or hang behind a running ingest. Any problem yields no suggestions rather than an error.
    """
    column = _COMPLETION_COLUMNS[table]
    if not path.is_file():
        return []
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=0.2)
        try:
            rows = db.execute(
                f"SELECT {column} FROM {table} WHERE substr({column}, 1, ?) = ? ORDER BY {column} LIMIT ?",  # noqa: S608
                (len(prefix), prefix, limit),
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return []
    return [str(row[0]) for row in rows]
