"""What ``verify`` keeps of every batch for the whole run, in bounded memory whatever the bucket holds.

verify checks each batch as the listing reaches it, but the checks across batches (each dock's chain, its
transparency log, key handovers, the expected heads) and the report (``--json``, ``--report``, the table)
need every batch's summary afterwards. A force's year is tens of thousands of batches and an audit of
several years or forces hundreds of thousands, so the summaries are kept in memory only up to a budget
(a share of ``--max-memory``); past it they spill, all of them, to a private temporary SQLite database and
every later one goes there too. Both ways hand back the same summaries in the same order (each dock, by
name, its batches by sequence number then id), so findings and reports do not depend on where they were
kept (docs/decisions.md, "verify spills its batch summaries").

The database is the auditor's scratch space and holds what the bucket says (and, with ``--identity``,
officer ids from the decrypted sidecars): it lies in a directory made for it, mode 0700, under ``$TMPDIR``
(else /tmp), the file itself 0600 whatever the umask, with no journal beside it; :meth:`BatchStore.close`
removes both, and runs on error, on Ctrl-C and at interpreter exit for a store never closed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
import weakref
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Generic, Protocol, TypeVar

#: summaries written to the database in one transaction once spilling (and before any query)
FLUSH_EVERY = 512
#: the database's page cache, in KiB (SQLite's default is 2,000: the spilled store's memory stays this)
CACHE_KIB = 4096
#: summaries read from the database at a time
PAGE = 256
_PAGE = "SELECT k, data, extra FROM batch WHERE k > ? ORDER BY k LIMIT ?"
_DOCK_PAGE = "SELECT k, data, extra FROM batch WHERE k > ? AND k < ? ORDER BY k LIMIT ?"
_EXTRA_PAGE = "SELECT k, data, extra FROM batch WHERE k > ? AND extra IS NOT NULL ORDER BY k LIMIT ?"
_NEXT_DOCK = "SELECT dock FROM batch WHERE dock > ? ORDER BY dock LIMIT 1"


class Summary(Protocol):
    """What the store reads of a batch summary itself (``verify.BatchResult``)."""

    dock: str
    batch: str
    seq: int | None
    problems: int


T = TypeVar("T", bound=Summary)

#: a summary as bytes: (what every pass reads, what only the report reads or None)
Encode = Callable[[T], "tuple[bytes, bytes | None]"]
Decode = Callable[[bytes, "bytes | None"], T]


def _text(value: str) -> bytes:
    """UTF-8 that keeps a lone surrogate (a key from a hostile bucket): byte order is code point order."""
    return value.encode("utf-8", "surrogatepass")


def order_key(dock: str, seq: int | None, batch: str) -> bytes:
    """Bytes that sort as ``(dock, seq or 0, batch)`` sorts in Python: the dock with its NULs escaped and a
    0x00 0x00 terminator (so a dock sorts before any dock it is a prefix of), the sequence number (0 to
    2^63-1, as the manifest parser allows) in eight big-endian bytes, then the batch id."""
    return _text(dock).replace(b"\0", b"\0\xff") + b"\0\0" + (seq or 0).to_bytes(8, "big") + _text(batch)


def _dock_range(dock: str) -> tuple[bytes, bytes]:
    start = _text(dock).replace(b"\0", b"\0\xff") + b"\0\0"
    return start, start[:-1] + b"\1"


class BatchStore(Generic[T]):
    """The run's batch summaries: in memory while their cost stays within ``budget`` bytes, then in a
    private temporary SQLite database (``spilled``). Add each once, then read them back in order."""

    def __init__(
        self,
        encode: Encode[T],
        decode: Decode[T],
        handover: Callable[[T], str | None],
        budget: int,
        work_dir: Path | None = None,
    ) -> None:
        self._encode, self._decode, self._handover = encode, decode, handover
        self.budget = budget
        self.work_dir = work_dir  # None: $TMPDIR (else /tmp: ``tempfile.gettempdir()``)
        self._cost = 0
        self._count = 0
        #: rows in the database: the next one's number, in the order the summaries were added (those kept
        #: in memory until the spill: each dock's in turn, docks in the order first seen)
        self._written = 0
        self._by_dock: dict[str, list[T]] = {}  # in the order added; docks in the order first seen
        self._ids: dict[str, set[str]] = {}  # dock -> its batch ids (a set per dock, not a tuple per batch)
        self._handovers: dict[str, T] | None = None  # new dock id -> the summary handing over to it, once asked
        self._last: T | None = None
        self._pending: list[T] = []  # added since the last write to the database
        self._pending_ids: set[tuple[str, str]] = set()
        self._db: sqlite3.Connection | None = None
        self.directory: Path | None = None  # the database's directory, once spilled
        self._cleanup: Callable[[], object] | None = None
        #: (dock, batch) -> findings naming it: set once the run is done, given to each summary read back
        self.problems: Mapping[tuple[str | None, str | None], int] = {}

    # -- writing ------------------------------------------------------------------------------------
    def add(self, item: T, cost: int) -> None:
        """Keep one checked batch; ``cost``: the bytes it holds in memory (measured: ``BATCH_COST``)."""
        if self._db is None and self._cost + cost > self.budget:
            self._spill()  # on an error, nothing changed: the summaries so far stay in memory
        self._count += 1
        self._last = item
        if self._db is not None:
            self._pending.append(item)
            self._pending_ids.add((item.dock, item.batch))
            if len(self._pending) >= FLUSH_EVERY:
                self._flush()
            return
        self._cost += cost
        self._by_dock.setdefault(item.dock, []).append(item)
        self._ids.setdefault(item.dock, set()).add(item.batch)
        self._handovers = None

    def _spill(self) -> None:
        """Open the database and move every summary kept so far into it, in the order they were added;
        if that fails (no room), the database is removed and they stay in memory."""
        self._db = self._open()
        self._pending = [item for items in self._by_dock.values() for item in items]
        try:
            self._flush()
        except BaseException:
            self._pending, self._written = [], 0
            self._db = None
            if self._cleanup is not None:
                self._cleanup()
            raise
        self._by_dock, self._ids, self._handovers, self._cost = {}, {}, None, 0

    def _open(self) -> sqlite3.Connection:
        base = self.work_dir if self.work_dir is not None else Path(tempfile.gettempdir())
        directory = Path(tempfile.mkdtemp(prefix="bodycam-verify-", dir=base))
        try:
            os.chmod(directory, 0o700)  # mkdtemp's 0700 is cut by the umask; an owner must still read it
            path = directory / "batches.sqlite"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            os.fchmod(fd, 0o600)
            os.close(fd)
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        self.directory = directory
        self._cleanup = weakref.finalize(self, _remove, db, directory)
        db.execute("PRAGMA journal_mode=MEMORY")  # no journal file beside it; a failed write still rolls back
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA temp_store=FILE")
        db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        db.executescript(
            """
            CREATE TABLE batch (k BLOB PRIMARY KEY, n INTEGER NOT NULL, dock BLOB NOT NULL, id BLOB NOT NULL,
                                handover BLOB, data BLOB NOT NULL, extra BLOB) WITHOUT ROWID;
            CREATE UNIQUE INDEX batch_id ON batch (dock, id);
            CREATE INDEX batch_handover ON batch (handover, n) WHERE handover IS NOT NULL;
            """
        )
        return db

    def _flush(self) -> None:
        if self._db is None or not self._pending:
            return
        rows: list[tuple[bytes, int, bytes, bytes, bytes | None, bytes, bytes | None]] = []
        for item in self._pending:
            data, extra = self._encode(item)
            to = self._handover(item)
            rows.append(
                (
                    order_key(item.dock, item.seq, item.batch), self._written + len(rows), _text(item.dock),
                    _text(item.batch), None if to is None else _text(to), data, extra,
                )
            )  # fmt: skip
        with _transaction(self._db):
            self._db.executemany("INSERT INTO batch VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        self._written += len(rows)
        self._pending, self._pending_ids = [], set()

    @property
    def where(self) -> str:
        """The directory the database is (or would be) made under."""
        return str(self.work_dir if self.work_dir is not None else tempfile.gettempdir())

    def flush(self) -> None:
        """Write the summaries added since the last write (the listing is done)."""
        self._flush()

    def drop_pending(self) -> int:
        """Forget the summaries not yet written (the database refused them: its disk is full); how many."""
        lost = len(self._pending)
        self._count -= lost
        self._pending, self._pending_ids = [], set()
        return lost

    # -- reading ------------------------------------------------------------------------------------
    @property
    def spilled(self) -> bool:
        return self._db is not None

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def has(self, dock: str, batch: str) -> bool:
        """Whether a summary of ``dock/batch`` was added (the listing came back to a batch it had left)."""
        if self._db is None:
            return batch in self._ids.get(dock, ())
        if (dock, batch) in self._pending_ids:
            return True
        row = self._db.execute("SELECT 1 FROM batch WHERE dock = ? AND id = ?", (_text(dock), _text(batch)))
        return row.fetchone() is not None

    def last(self, dock: str) -> T | None:
        """The summary added last, when it is ``dock``'s (the batch listed just before, in key order)."""
        return self._last if self._last is not None and self._last.dock == dock else None

    def handover_to(self, dock: str) -> T | None:
        """The summary added last whose signed custody hands its dock over to ``dock``."""
        if self._db is None:
            if self._handovers is None:
                self._handovers = {}
                for items in self._by_dock.values():
                    for item in items:
                        to = self._handover(item)
                        if to is not None:
                            self._handovers[to] = item
            return self._handovers.get(dock)
        self._flush()
        found = self._db.execute(
            "SELECT data, extra FROM batch WHERE handover = ? ORDER BY n DESC LIMIT 1", (_text(dock),)
        ).fetchone()
        return None if found is None else self._decode(found[0], found[1])

    def docks(self) -> Iterator[str]:
        """Each dock with a summary, by name."""
        if self._db is None:
            yield from sorted(self._by_dock)
            return
        self._flush()
        found = self._db.execute("SELECT dock FROM batch ORDER BY dock LIMIT 1").fetchone()
        while found is not None:  # one indexed look-up a dock: no temporary b-tree for DISTINCT
            yield bytes(found[0]).decode("utf-8", "surrogatepass")
            found = self._db.execute(_NEXT_DOCK, (found[0],)).fetchone()

    def ordered(self, dock: str) -> Iterator[T]:
        """``dock``'s summaries by sequence number (none as 0), then batch id."""
        if self._db is None:
            yield from sorted(self._by_dock.get(dock, ()), key=_in_chain)
            return
        self._flush()
        start, end = _dock_range(dock)
        yield from self._rows(_DOCK_PAGE, start, end)

    def __iter__(self) -> Iterator[T]:
        """Every summary in the report's order (docks by name, each by sequence number then batch id),
        each with its count of findings."""
        if self._db is None:
            for dock in sorted(self._by_dock):
                for item in sorted(self._by_dock[dock], key=_in_chain):
                    item.problems = self.problems.get((item.dock, item.batch), 0)
                    yield item
            return
        self._flush()
        for item in self._rows(_PAGE, b""):
            item.problems = self.problems.get((item.dock, item.batch), 0)
            yield item

    def with_extra(self) -> Iterator[T]:
        """Only the summaries whose encoding had an extra part (report rows, personal data), in order."""
        if self._db is None:
            yield from self
            return
        self._flush()
        for item in self._rows(_EXTRA_PAGE, b""):
            item.problems = self.problems.get((item.dock, item.batch), 0)
            yield item

    def _rows(self, query: str, after: bytes, *more: bytes) -> Iterator[T]:
        """Rows in key order after ``after``, read in pages by key (no cursor is held open between
        pages, so a caller may query the store again while it iterates)."""
        assert self._db is not None
        while True:
            page = self._db.execute(query, (after, *more, PAGE)).fetchall()
            for _, data, extra in page:
                yield self._decode(data, extra)
            if len(page) < PAGE:
                return
            after = page[-1][0]

    # -- the end ------------------------------------------------------------------------------------
    def close(self) -> None:
        """Remove the database and its directory (if it spilled) and forget every summary."""
        if self._cleanup is not None:
            self._cleanup()
        self._db = None
        self._by_dock, self._ids, self._handovers, self._pending, self._pending_ids = {}, {}, None, [], set()
        self._last = None  # the count stays: what a caller that read nothing may still report

    def __enter__(self) -> BatchStore[T]:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _in_chain(item: Summary) -> tuple[int, str]:
    return (item.seq or 0, item.batch)


def _remove(db: sqlite3.Connection | None, directory: Path) -> None:
    if db is not None:
        with contextlib.suppress(sqlite3.Error):
            db.close()
    shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN")
    try:
        yield
    except BaseException:
        if db.in_transaction:  # an I/O error may have rolled it back already
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
