"""A dock's transparency log published batch by batch, and the bucket as a reader (verify, proof) sees it
when the dock filled a tile after the reader read the checkpoint: the log grown past a full tile, the
partials of the older size deleted (docklog.drop_partials), the older checkpoint put back. One copy, so
test_docklog and test_proof differ only in what they read from it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bodycam.agent.formats import tlog
from bodycam.agent.pipeline import batch
from bodycam.agent.storage import docklog
from bodycam.agent.storage.bucket import Bucket, LocalBucket
from bodycam.agent.storage.journal import Journal

from .dock import DOCK_ID


def publish_leaves(journal: Journal, bucket: Bucket, key: Ed25519PrivateKey, leaves: int, start: int = 0) -> None:
    """Batches B<start>..B<leaves - 1> logged and published one after the other, as the dock seals and publishes."""
    for i in range(start, leaves):
        with journal.transaction() as db:
            docklog.append_in(
                db, dock_id=DOCK_ID, batch_id=f"B{i:04d}", batch_seq=i + 1, manifest_sha256=f"{i:064x}", key=key
            )
        docklog.publish(
            journal, lambda k, data, retain: batch._put_once(bucket, k, data, retain=retain), bucket,
            DOCK_ID, f"B{i:04d}",
        )  # fmt: skip


@dataclass
class GrownLog:
    """The bucket (a local one), the dock's log key, the log's directory in it, and the size of the
    checkpoint the reader read."""

    bucket: LocalBucket
    key: Ed25519PrivateKey
    log: Path
    seen: int


@contextmanager
def grown_past_a_full_tile(tmp_path: Path, seen: int = 200) -> Iterator[GrownLog]:
    """``TILE_WIDTH + 2`` leaves published, so tile 000 is full and its partials (of size ``seen`` among
    them) are gone; ``checkpoint`` is the one of ``seen`` leaves again."""
    key = Ed25519PrivateKey.generate()
    journal = Journal(tmp_path / "state" / "journal.sqlite3")
    root = tmp_path / "bucket"
    log = root / docklog.log_prefix(DOCK_ID)
    try:
        with LocalBucket(root) as bucket:
            publish_leaves(journal, bucket, key, tlog.TILE_WIDTH + 2)
            assert not (log / f"tile/entries/000.p/{seen}").exists() and not (log / f"tile/0/000.p/{seen}").exists()
            (log / "checkpoint").write_bytes((log / "checkpoints" / str(seen)).read_bytes())
            yield GrownLog(bucket, key, log, seen)
    finally:
        journal.close()
