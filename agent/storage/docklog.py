"""The dock's transparency log: one leaf per sealed manifest, published as C2SP tiles and checkpoints.

Why a leaf per manifest (docs/decisions.md): the manifest is what the dock signs and what commits to
everything else (each recording's hashes, the custody segment's head, the previous manifest), and the
log can only advance when a batch is sealed anyway, so a leaf per custody entry would add leaves, not
evidence. The leaf is appended and its checkpoint signed inside the seal's transaction (the hashes live in
the journal), so a crash leaves either both the seal and its log entry or neither; publishing then writes
deterministic bytes create-only, so it can be repeated after a crash (docs/formats.md §9).
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bodycam.agent.formats import note, tlog
from bodycam.agent.formats.custody import canonical
from bodycam.agent.formats.manifest import LOG_DIR
from bodycam.agent.storage.journal import Journal
from bodycam.drivers.errors import BodycamError, StorageError

if TYPE_CHECKING:
    from bodycam.agent.storage.bucket import Bucket

LOG = logging.getLogger(__name__)
ENTRY_FORMAT = "bodycam-log-entry/1"
CHECKPOINT = "checkpoint"
CHECKPOINTS = "checkpoints"
WITNESSED = "checkpoint.witnessed"  # the largest cosigned checkpoint (docs/formats.md §11.3)
WITNESSED_DIR = "witnessed"  # witnessed/<size>: each cosigned checkpoint with all its cosignatures
MAX_VERSIONS = 8  # versions of one partial tile deleted at most (create-only writes leave one)

Query = Callable[[str, Sequence[object]], list[sqlite3.Row]]
#: created by the first seal that logs, not when the journal opens: opening a journal must not need a
#: write (a dock whose state disk is full still opens it and says so)
TABLES = (
    "CREATE TABLE IF NOT EXISTS tlog_hashes(log TEXT NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL, "
    "PRIMARY KEY(log, idx))",
    "CREATE TABLE IF NOT EXISTS tlog_entries(log TEXT NOT NULL, idx INTEGER NOT NULL, batch_id TEXT UNIQUE NOT NULL, "
    "entry BLOB NOT NULL, checkpoint BLOB NOT NULL, PRIMARY KEY(log, idx))",
)


def origin(dock_id: str) -> str:
    """The log's origin line and key name: one log per dock id."""
    return f"bodycam-sync/{dock_id}"


def log_prefix(dock_id: str) -> str:
    """Where the log lives, relative to the bucket's prefix: ``<dock_id>/log``."""
    return f"{dock_id}/{LOG_DIR}"


def verifier_key(dock_id: str, key: Ed25519PrivateKey) -> str:
    """The line a party pins to check this dock's checkpoints (Go's ``note.NewVerifier`` format)."""
    return note.verifier_key(origin(dock_id), key.public_key())


def entry(
    dock_id: str, batch_id: str, batch_seq: int, manifest_sha256: str, commitments: Mapping[str, object] | None = None
) -> bytes:
    """The leaf for a sealed manifest: canonical JSON naming it and its SHA-256 (nothing personal), plus,
    for a 1.1 manifest, its per-recording and per-custody-entry roots and counts
    (``commitment.log_fields``), which proof bundles lean on."""
    return canonical(
        {
            "format": ENTRY_FORMAT,
            "dock_id": dock_id,
            "batch_id": batch_id,
            "batch_seq": batch_seq,
            "manifest_sha256": manifest_sha256,
            **(commitments or {}),
        }
    )


class JournalHashStore:
    """One log's stored hashes in the journal's ``tlog_hashes`` table, read and written through
    ``query`` (a transaction's connection while sealing, ``Journal.query`` while publishing)."""

    def __init__(self, query: Query, log: str) -> None:
        self._query = query
        self._log = log
        # hashes are stored at 0..count-1 (append and truncate keep them contiguous): the largest index
        # is one lookup in the primary key, where COUNT(*) walks every row and makes each seal O(n)
        self._count = int(query("SELECT COALESCE(MAX(idx) + 1, 0) FROM tlog_hashes WHERE log=?", (log,))[0][0])

    def count(self) -> int:
        return self._count

    def read(self, index: int) -> bytes:
        rows = self._query("SELECT hash FROM tlog_hashes WHERE log=? AND idx=?", (self._log, index))
        if not rows:
            raise StorageError(f"the journal's log lacks stored hash {index}; the journal is damaged")
        return bytes(rows[0][0])

    def append(self, hashes: Sequence[bytes]) -> None:
        for h in hashes:
            self._query("INSERT INTO tlog_hashes(log, idx, hash) VALUES(?, ?, ?)", (self._log, self._count, h))
            self._count += 1

    def truncate(self, count: int) -> None:
        self._query("DELETE FROM tlog_hashes WHERE log=? AND idx >= ?", (self._log, count))
        self._count = min(self._count, count)


def _in(db: sqlite3.Connection) -> Query:
    return lambda sql, params: db.execute(sql, tuple(params)).fetchall()


def append_in(
    db: sqlite3.Connection,
    *,
    dock_id: str,
    batch_id: str,
    batch_seq: int,
    manifest_sha256: str,
    key: Ed25519PrivateKey,
    commitments: Mapping[str, object] | None = None,
) -> int:
    """In the seal's transaction: the batch's leaf, the new hashes and the signed checkpoint of the
    grown tree, journaled together. Returns the leaf's index (idempotent for a batch already logged)."""
    for statement in TABLES:
        db.execute(statement)
    row = db.execute("SELECT idx FROM tlog_entries WHERE batch_id=?", (batch_id,)).fetchone()
    if row is not None:
        return int(row[0])
    name = origin(dock_id)
    size = int(db.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM tlog_entries WHERE log=?", (name,)).fetchone()[0])
    tree = tlog.Tree(JournalHashStore(_in(db), name), size)
    data = entry(dock_id, batch_id, batch_seq, manifest_sha256, commitments)
    index = tree.append(data)
    signed = note.sign_checkpoint(note.Checkpoint(name, tree.size, tree.root()), name, key)
    db.execute(
        "INSERT INTO tlog_entries(log, idx, batch_id, entry, checkpoint) VALUES(?,?,?,?,?)",
        (name, index, batch_id, data, signed),
    )
    return index


#: ``put_once(key, data, retain)``: write create-only (the same bytes already there are fine); ``retain``
#: False for a partial tile or bundle, which gets no Object Lock retention so that it can be deleted
PutOnce = Callable[[str, bytes, bool], None]


def publish(journal: Journal, put_once: PutOnce, bucket: Bucket, dock_id: str, batch_id: str) -> None:
    """Write the tiles and entry bundles the batch's leaf completed, then its checkpoint: create-only at
    ``log/checkpoints/<size>`` and as the latest ``log/checkpoint`` (the one mutable object of the log).
    Once a full tile is written, the partial tiles it replaces are deleted (:func:`drop_partials`).

    Publishing batches in ``batch_seq`` order (as the dock does) publishes every tile of every size; into
    a bucket that has no checkpoint yet, every tile of the tree is written.
    A batch sealed before the dock had a log, or under another dock id (a handover starts a new log, as
    the origin names the dock), has no leaf in this one, and nothing is written for it.
    """
    name = origin(dock_id)
    if not journal.query("SELECT 1 FROM sqlite_master WHERE type='table' AND name='tlog_entries'"):
        return
    rows = journal.query("SELECT idx, checkpoint FROM tlog_entries WHERE log=? AND batch_id=?", (name, batch_id))
    if not rows:
        return
    size, signed = int(rows[0][0]) + 1, bytes(rows[0][1])
    # a view of the tree at this batch's size: a seal on another thread may append meanwhile
    tree = tlog.Tree.view(JournalHashStore(lambda sql, params: journal.query(sql, tuple(params)), name), size)
    prefix = log_prefix(dock_id)
    # a bucket without the log yet (the first publication, or a dock moved to a new bucket) gets every tile
    latest = _latest_published(journal, bucket, prefix, name)
    old = size - 1 if latest is not None else 0
    for path, data in tlog.tile_objects(tree, old, size, lambda lo, hi: _entries(journal, name, lo, hi)):
        put_once(f"{prefix}/{path}", data, ".p/" not in path)
    put_once(f"{prefix}/{CHECKPOINTS}/{size}", signed, True)
    if latest is not None and latest > size:
        # a batch published again after a later one (recover() retrying one whose publication failed
        # while the next went through): its checkpoint must not take the latest's place, which would
        # roll log/checkpoint back and make verify see the later kept checkpoints as a fork
        LOG.info("log %s: checkpoint %d published; the bucket's latest stays %d", name, size, latest)
        return
    bucket.put_object(f"{prefix}/{CHECKPOINT}", signed, create_only=False)
    LOG.info("log %s: checkpoint %d published", origin(dock_id), size)
    if old:  # a first publication writes no partial of a full tile
        drop_partials(bucket, prefix, old, size)


def _latest_published(journal: Journal, bucket: Bucket, prefix: str, name: str) -> int | None:
    """The size of the bucket's ``log/checkpoint`` when it is one this dock signed (byte for byte one of
    its journaled checkpoints); 0 for another object there; None when there is none. Only a checkpoint
    the journal holds counts: a bucket cannot hold the dock's latest back with one it made up."""
    from bodycam.agent.storage.bucket import ObjectNotFoundError  # beside Bucket, imported when publishing

    try:
        data = bucket.get_bytes(f"{prefix}/{CHECKPOINT}", max_size=note.MAX_NOTE)
    except ObjectNotFoundError:
        return None
    except BodycamError as err:  # too large or unreadable: not one of ours, so ours replaces it
        LOG.warning("log %s: %s/%s does not read (%s); replacing it", name, prefix, CHECKPOINT, err)
        return 0
    rows = journal.query("SELECT idx FROM tlog_entries WHERE log=? AND checkpoint=?", (name, data))
    return int(rows[0][0]) + 1 if rows else 0


def drop_partials(bucket: Bucket, prefix: str, old: int, size: int) -> None:
    """Delete every version of the partial tiles and bundles of each tile that became full between
    ``old`` and ``size`` (C2SP tlog-tiles allows it once the full tile exists; docs/decisions.md). Best
    effort: one that cannot be deleted (written locked by an older agent, an outage) is only left behind."""
    for tile in tlog.new_tiles(old, size):
        if tile.width != tlog.TILE_WIDTH:
            continue
        for path in (tile.path, tile.entries_path) if tile.level == 0 else (tile.path,):
            try:
                # a tile has at most TILE_WIDTH - 1 partials: more listed (a hostile endpoint) are not kept
                listed = itertools.islice(bucket.iter_objects(f"{prefix}/{path}.p/"), tlog.TILE_WIDTH)
                for info in list(listed):
                    bucket.erase_every_version(info.key, max_versions=MAX_VERSIONS)
            except BodycamError as err:
                LOG.warning("log: partial tiles of %s/%s left in the bucket: %s", prefix, path, err)


def _entries(journal: Journal, log: str, lo: int, hi: int) -> list[bytes]:
    rows = journal.query(
        "SELECT entry FROM tlog_entries WHERE log=? AND idx >= ? AND idx < ? ORDER BY idx", (log, lo, hi)
    )
    if len(rows) != hi - lo:
        raise StorageError(f"the journal's log lacks entries {lo}..{hi - 1}; the journal is damaged")
    return [bytes(r[0]) for r in rows]
