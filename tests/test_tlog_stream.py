"""verify's log check in one pass and bounded memory (issue 14 item 6): the tree rebuilt as a
``tlog.Frontier`` gives the roots and tiles the stored tree gives, and ``logcheck.check`` takes the
manifests as the entries reach them instead of holding them all.

The log here is built as the dock builds it (``docklog.append_in`` on an SQLite journal, tiles and
bundles by ``tlog.tile_objects``, a checkpoint kept every ``EVERY`` entries) into a file bucket.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bodycam.agent.audit import logcheck
from bodycam.agent.formats import note, tlog
from bodycam.agent.storage import docklog
from bodycam.agent.storage.bucket import LocalBucket

DOCK = "dock-stream"
LEAVES = 3000
EVERY = 500


def test_the_frontier_gives_every_root_and_tile_the_stored_tree_gives() -> None:
    tree = tlog.Tree(tlog.MemoryHashStore())
    frontier = tlog.Frontier()
    full: dict[tlog.Tile, bytes] = {}
    assert frontier.root() == tree.root() == tlog.EMPTY_ROOT and frontier.partial_tiles() == []
    for i in range(tlog.TILE_WIDTH**2 + 300):  # a level-2 tile too
        tree.append(b"%d" % i)
        full.update(frontier.append(b"%d" % i))
        if i < 700 or i % 4099 == 0:
            assert frontier.root() == tree.root(), i
        if i < 600 or i % 16411 == 0:
            served = {**full, **dict(frontier.partial_tiles())}
            assert {t: served[t] for t in tlog.tiles_for(tree.size)} == {
                t: tree.tile(t) for t in tlog.tiles_for(tree.size)
            }, i
    served = {**full, **dict(frontier.partial_tiles())}
    assert served == {t: tree.tile(t) for t in tlog.tiles_for(tree.size)}  # nothing more, nothing less
    assert any(t.level == 2 for t in served)


def batch_id(i: int) -> str:
    return f"20260301T101500Z-{i + 1:07d}"


def sha(i: int) -> str:
    return f"{i:064x}"


@dataclass
class Log:
    root: Path
    key: Ed25519PrivateKey


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Log:
    root = tmp_path_factory.mktemp("stream") / "bucket"
    key = Ed25519PrivateKey.generate()
    db = sqlite3.connect(":memory:", isolation_level=None)
    name = docklog.origin(DOCK)
    prefix = root / docklog.log_prefix(DOCK)
    published = 0

    def query(sql: str, params: Any) -> list[Any]:
        return db.execute(sql, tuple(params)).fetchall()

    def entries(lo: int, hi: int) -> list[bytes]:
        rows = query("SELECT entry FROM tlog_entries WHERE log=? AND idx>=? AND idx<? ORDER BY idx", (name, lo, hi))
        return [bytes(r[0]) for r in rows]

    for i in range(LEAVES):
        size = (
            docklog.append_in(db, dock_id=DOCK, batch_id=batch_id(i), batch_seq=i + 1, manifest_sha256=sha(i), key=key)
            + 1
        )
        if size % EVERY and size != LEAVES:
            continue
        tree = tlog.Tree.view(docklog.JournalHashStore(query, name), size)
        for path, data in tlog.tile_objects(tree, published, size, entries):
            (prefix / path).parent.mkdir(parents=True, exist_ok=True)
            (prefix / path).write_bytes(data)
        signed = bytes(query("SELECT checkpoint FROM tlog_entries WHERE idx=?", (size - 1,))[0][0])
        (prefix / docklog.CHECKPOINTS).mkdir(parents=True, exist_ok=True)
        (prefix / docklog.CHECKPOINTS / str(size)).write_bytes(signed)
        (prefix / docklog.CHECKPOINT).write_bytes(signed)
        published = size
    return Log(root, key)


class CountingBucket(LocalBucket):
    """A read-only file bucket that counts the entry bundles read."""

    bundles = 0

    def get_bytes(self, key: str, max_size: int) -> bytes:
        if "/tile/entries/" in key:
            self.bundles += 1
        return super().get_bytes(key, max_size)


def manifests(leaves: int = LEAVES) -> Iterator[logcheck.Manifest]:
    for i in range(leaves):
        yield logcheck.Manifest(batch_id(i), i + 1, sha(i))


def test_the_log_check_takes_each_manifest_as_the_entries_reach_it(log: Log) -> None:
    """Before, the check put every manifest in a dict before reading the first entry (~0.8 KiB each: a
    GiB at a million); now it is never more than one manifest ahead of the entries it has read."""
    bucket = CountingBucket(log.root, read_only=True)
    ahead = 0

    def lazily() -> Iterator[logcheck.Manifest]:
        nonlocal ahead
        for n, m in enumerate(manifests()):
            ahead = max(ahead, n + 1 - bucket.bundles * tlog.TILE_WIDTH)
            yield m

    assert logcheck.check(bucket, DOCK, [log.key.public_key()], lazily()) == []
    assert bucket.bundles == -(-LEAVES // tlog.TILE_WIDTH) and ahead <= 2, ahead


def test_the_merge_names_what_is_missing_replaced_or_unlogged(log: Log) -> None:
    def changed() -> Iterator[logcheck.Manifest]:
        for m in manifests():
            if m.seq == 1500:
                continue  # deleted from the bucket
            if m.seq == 10:
                yield logcheck.Manifest(m.batch_id, m.seq, sha(99_999))  # replaced
                continue
            yield m
            if m.seq == 20:
                yield logcheck.Manifest("another-batch-20", 20, sha(20))  # a second batch of seq 20
        yield logcheck.Manifest(batch_id(LEAVES), LEAVES + 1, sha(LEAVES))  # sealed after the checkpoint

    found = logcheck.check(LocalBucket(log.root, read_only=True), DOCK, [log.key.public_key()], changed())
    assert sorted((f.problem, f.batch) for f in found) == sorted(
        [
            ("log_manifest_mismatch", batch_id(9)),
            ("log_manifest_missing", batch_id(1499)),
            ("manifest_not_in_log", "another-batch-20"),
            ("manifest_not_in_log", batch_id(LEAVES)),
        ]
    ), found


def test_findings_about_entries_are_counted_past_a_bound(log: Log, monkeypatch: pytest.MonkeyPatch) -> None:
    """A log whose every entry is wrong is not a finding per entry in memory."""
    monkeypatch.setattr(logcheck, "MAX_NAMED", 100)
    wrong = (logcheck.Manifest(m.batch_id, m.seq, sha(0)) for m in manifests())
    found = logcheck.check(LocalBucket(log.root, read_only=True), DOCK, [log.key.public_key()], wrong)
    assert len(found) == 101 and found[-1].problem == "log_manifest_mismatch", found[-1]
    assert found[-1].message.startswith(f"{LEAVES - 1 - 100} more log_manifest_mismatch"), found[-1]


def test_kept_checkpoints_and_tiles_are_still_each_compared(log: Log, tmp_path: Path) -> None:
    """The one pass keeps the root at each kept checkpoint's size and compares each tile as it completes."""
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(log.root, root)
    prefix = root / docklog.log_prefix(DOCK)
    origin = docklog.origin(DOCK)
    forked = note.sign_checkpoint(note.Checkpoint(origin, 1000, bytes(32)), origin, log.key)
    (prefix / docklog.CHECKPOINTS / "1000").write_bytes(forked)
    tile = prefix / tlog.Tile(0, 5).path
    tile.write_bytes(bytes(len(tile.read_bytes())))
    found = logcheck.check(LocalBucket(root, read_only=True), DOCK, [log.key.public_key()], manifests())
    assert sorted((f.problem, f.key) for f in found) == [
        ("log_fork", f"{docklog.log_prefix(DOCK)}/{docklog.CHECKPOINTS}/1000"),
        ("log_tile_mismatch", f"{docklog.log_prefix(DOCK)}/{tlog.Tile(0, 5).path}"),
    ], found


def test_past_the_bound_of_one_kind_a_finding_of_another_kind_is_still_named(
    log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bound is per kind (docs/decisions.md, auditing.md): a log whose first entries all carry one
    finding must not leave a later finding of another kind (here the manifest deleted from the bucket)
    counted in a summary without its batch; before, 100 replaced manifests used up the names of all kinds."""
    monkeypatch.setattr(logcheck, "MAX_NAMED", 100)

    def changed() -> Iterator[logcheck.Manifest]:
        for m in manifests():
            if m.seq == 2000:
                continue  # deleted from the bucket
            yield logcheck.Manifest(m.batch_id, m.seq, sha(0)) if m.seq <= 150 else m

    found = logcheck.check(LocalBucket(log.root, read_only=True), DOCK, [log.key.public_key()], changed())
    assert ("log_manifest_missing", batch_id(1999)) in {(f.problem, f.batch) for f in found}, found[-3:]
    assert [f.message for f in found if f.batch is None] == [
        "49 more log_manifest_mismatch findings of this log, not named one by one"
    ]
