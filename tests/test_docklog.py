"""The dock's transparency log in the bucket (issue 13): each sealed manifest is a leaf; after each
publish the bucket holds the tiles and a signed checkpoint that Go's sumdb verifies, with every
manifest included, and publishing again after a crash writes the same bytes."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bodycam.agent.formats import commitment, note, tlog
from bodycam.agent.formats.manifest import Manifest
from bodycam.agent.formats.sshsig import load_private_key
from bodycam.agent.pipeline import batch
from bodycam.agent.storage import docklog
from bodycam.agent.storage.bucket import Bucket, LocalBucket, ObjectInfo, open_bucket
from bodycam.agent.storage.journal import Journal
from bodycam.agent.storage.wrapper import BucketWrapper

from . import tlogcheck as gocheck
from .dock import DOCK_ID, Dock, iso_window, make_dock, window
from .log_setup import grown_past_a_full_tile, publish_leaves
from .s3server import SeaweedFS
from .sims import SimProcess


def ingest_twice(tmp_path: Path, dock: Dock | None = None) -> tuple[Dock, Path]:
    bucket = tmp_path / "bucket"
    dock = dock or make_dock(tmp_path / "dock", bucket.as_uri())
    win = window()
    dock.enroll("CAM-L1", "CAM-L2")
    dock.exercise("EX-L", win, "CAM-L1", "CAM-L2")
    args = ("--recordings", "2", "--training", "1", "--size", "50000", "--exercise", iso_window(win))
    for transport, serial in (("usbip", "CAM-L1"), ("serial", "CAM-L2")):
        with SimProcess(transport, serial, *args, truth_dir=tmp_path) as cam:
            rc, report = dock.ingest_json(cam.address)
            assert rc == 0, report
    return dock, bucket


def manifests(bucket: Path) -> list[tuple[Manifest, bytes]]:
    raw = [p.read_bytes() for p in bucket.rglob("manifest.json")]
    return sorted(((Manifest.parse(r), r) for r in raw), key=lambda d: d[0].batch_seq)


def test_go_verifies_the_buckets_log_and_the_inclusion_of_each_manifest(tmp_path: Path) -> None:
    dock, bucket = ingest_twice(tmp_path)
    log = bucket / DOCK_ID / "log"
    key = load_private_key(dock.root / "keys" / "dock_ed25519")
    vkey = docklog.verifier_key(DOCK_ID, key)
    shown = dock.cli("keys", "show", "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["log_verifier_key"] == vkey, shown.stderr
    docs = manifests(bucket)
    assert len(docs) == 2
    entries = entries_of(docs)
    # our reading: the latest checkpoint, one per size, the entry bundle naming each manifest
    verifier = note.parse_verifier_key(vkey)
    cp = note.open_checkpoint((log / "checkpoint").read_bytes(), [verifier], origin=f"bodycam-sync/{DOCK_ID}")
    assert cp.size == 2 and (log / "checkpoint").read_bytes() == (log / "checkpoints" / "2").read_bytes()
    first = note.open_checkpoint((log / "checkpoints" / "1").read_bytes(), [verifier])
    assert tlog.parse_entry_bundle((log / "tile/entries/000.p/2").read_bytes()) == entries
    assert sorted(str(p.relative_to(log)) for p in log.rglob("*") if p.is_file()) == [
        "checkpoint", "checkpoints/1", "checkpoints/2", "tile/0/000.p/1", "tile/0/000.p/2",
        "tile/entries/000.p/1", "tile/entries/000.p/2",
    ]  # fmt: skip
    tree = gocheck.build_tree(2, lambda i: entries[i])
    assert tree.root() == cp.root and tree.root(1) == first.root
    # Go's reading of the same bucket directory
    lines = gocheck.run(
        {
            "vkey": vkey,
            "checkpoint": str(log / "checkpoint"),
            "origin": f"bodycam-sync/{DOCK_ID}",
            "tiles": str(log),
            "all_tiles": True,
            "entries": True,
            "records": [{"index": i, "entry": gocheck.b64(e)} for i, e in enumerate(entries)],
            "trees": [
                {"size": 1, "root": gocheck.b64(first.root), "proof": gocheck.proof_list(tree.consistency_proof(1))}
            ],
        }
    )
    assert lines == ["checkpoint OK", "tiles OK", "entries OK", "record 0 OK", "record 1 OK", "tree 1 OK"]
    # the log is not an extra object for verify
    proc = dock.cli("verify", "--bucket", dock.bucket_url, "--allowed-signers", str(dock.allowed_signers), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # nothing in the log names an officer, a site or a file name
    for path in log.rglob("*"):
        if path.is_file():
            assert b"OFFICER" not in path.read_bytes() and b"Range 3" not in path.read_bytes()


def test_publishing_again_after_a_crash_restores_the_same_log(tmp_path: Path) -> None:
    dock, bucket = ingest_twice(tmp_path)
    log = bucket / DOCK_ID / "log"
    before = {p: p.read_bytes() for p in log.rglob("*") if p.is_file()}
    shutil.rmtree(log / "tile")  # a crash before the tiles were written, as far as the bucket knows
    (log / "checkpoint").unlink()
    journal = Journal(dock.config.journal_path)
    try:
        ids = [r[0] for r in journal.query("SELECT batch_id FROM batches ORDER BY seq")]
        with LocalBucket(bucket) as store:
            for batch_id in ids:
                batch.publish(journal, store, DOCK_ID, batch_id)
                batch.publish(journal, store, DOCK_ID, batch_id)  # and again: create-only, same bytes
    finally:
        journal.close()
    assert {p: p.read_bytes() for p in log.rglob("*") if p.is_file()} == before


def test_the_latest_checkpoint_is_replaced_in_an_object_locked_s3_bucket(
    tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    """The one object the log overwrites: with Object Lock (COMPLIANCE) a new version, never a refusal."""
    locked = seaweedfs.make_bucket(f"{s3_bucket}-lock", object_lock=True)
    dock = make_dock(tmp_path / "dock", f"s3://{locked}/training", seaweedfs.endpoint_url)
    text = dock.config_path.read_text()
    dock.config_path.write_text(text.replace("[signing]", "retention_days = 1\n[signing]", 1))
    ingest_twice(tmp_path, dock)
    client = seaweedfs.client()
    key = f"training/{DOCK_ID}/log/checkpoint"
    listed = client.list_object_versions(Bucket=locked, Prefix=key)["Versions"]
    versions = [v for v in listed if v["Key"] == key]
    assert len(versions) == 2, versions
    latest = client.get_object(Bucket=locked, Key=key)["Body"].read()
    signer = docklog.verifier_key(DOCK_ID, load_private_key(dock.root / "keys" / "dock_ed25519"))
    assert note.open_checkpoint(latest, [note.parse_verifier_key(signer)]).size == 2
    head = client.head_object(Bucket=locked, Key=f"training/{DOCK_ID}/log/checkpoints/2")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    # a partial tile is written without retention, so that it can be deleted once its full tile exists
    head = client.head_object(Bucket=locked, Key=f"training/{DOCK_ID}/log/tile/0/000.p/2")
    assert "ObjectLockMode" not in head, head


def test_a_full_tile_deletes_the_partial_tiles_it_replaces_in_an_object_locked_bucket(
    seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    """Every version of each partial tile and bundle goes once the full tile is written; the full tile
    and what else is locked stay (COMPLIANCE refuses even the owner)."""
    from bodycam.agent.storage.bucket import open_bucket
    from bodycam.drivers.errors import UploadError

    locked = seaweedfs.make_bucket(f"{s3_bucket}-partials", object_lock=True)
    bucket = open_bucket(f"s3://{locked}/training", seaweedfs.endpoint_url, retention_days=1)
    prefix = docklog.log_prefix(DOCK_ID)
    partials = [f"{prefix}/tile/{kind}/000.p/{w}" for kind in ("0", "entries") for w in (1, 2, 255)]
    for key in partials:
        bucket.put_object(key, b"partial", retain=False)
    bucket.put_object(f"{prefix}/tile/1/000.p/1", b"level 1 partial", retain=False)  # no full level-1 tile yet
    full = bucket.put_object(f"{prefix}/tile/0/000", b"full")
    assert full.lock_mode == "COMPLIANCE"
    docklog.drop_partials(bucket, prefix, 255, 256)
    client = seaweedfs.client()
    left = client.list_object_versions(Bucket=locked, Prefix=f"training/{prefix}/")
    keys = sorted(v["Key"] for v in left.get("Versions", []) + left.get("DeleteMarkers", []))
    assert keys == [f"training/{prefix}/tile/0/000", f"training/{prefix}/tile/1/000.p/1"], keys
    with pytest.raises(UploadError):
        bucket.delete(f"{prefix}/tile/0/000", version_id=full.version_id)


def test_publishing_past_a_full_tile_leaves_only_the_final_tiles_and_verify_finds_nothing(tmp_path: Path) -> None:
    """The dock publishes after each batch: 58.6 KB of partial tiles a batch used to stay behind for good;
    now each full tile's partials are deleted as it is written, and the log still checks (logcheck)."""
    from bodycam.agent.audit import logcheck

    key = Ed25519PrivateKey.generate()
    journal = Journal(tmp_path / "state" / "journal.sqlite3")
    root = tmp_path / "bucket"
    leaves = tlog.TILE_WIDTH + 2
    try:
        with LocalBucket(root) as bucket:
            publish_leaves(journal, bucket, key, leaves)
            manifests = (logcheck.Manifest(f"B{i:04d}", i + 1, f"{i:064x}") for i in range(leaves))
            assert logcheck.check(bucket, DOCK_ID, [key.public_key()], manifests) == []
    finally:
        journal.close()
    log = root / docklog.log_prefix(DOCK_ID)
    tiles = sorted(str(p.relative_to(log)) for p in (log / "tile").rglob("*") if p.is_file())
    # the partials of the tile still filling stay until it is full: readers of those sizes need them
    assert tiles == [
        "tile/0/000", "tile/0/001.p/1", "tile/0/001.p/2", "tile/1/000.p/1",
        "tile/entries/000", "tile/entries/001.p/1", "tile/entries/001.p/2",
    ]  # fmt: skip


def test_verify_reads_the_full_tile_when_a_partial_it_needs_was_deleted_under_it(tmp_path: Path) -> None:
    """verify reading a live bucket while the dock fills a tile: the checkpoint it read names a size whose
    partial tile and bundle the dock then deletes (drop_partials). The full tile's first W hashes and
    entries are read instead (C2SP: clients SHOULD); with neither there it is still a named finding. Seen
    here as the bucket at that moment: the older checkpoint read, the log grown past a full tile since."""
    from bodycam.agent.audit import logcheck

    with grown_past_a_full_tile(tmp_path) as grown:
        log, seen = grown.log, grown.seen

        def check() -> list[tuple[str, str | None]]:
            manifests = (logcheck.Manifest(f"B{i:04d}", i + 1, f"{i:064x}") for i in range(seen))
            found = logcheck.check(grown.bucket, DOCK_ID, [grown.key.public_key()], manifests)
            # what the log grew to after that checkpoint was read is beyond it (strays, newer kept ones)
            return [(f.problem, f.key) for f in found if f.problem not in ("log_unlisted_object", "log_fork")]

        assert check() == []
        (log / "tile/entries/000").unlink()
        (log / "tile/0/000").unlink()
        prefix = docklog.log_prefix(DOCK_ID)
        assert check() == [("log_entries_unreadable", f"{prefix}/tile/entries/000.p/{seen}")]


def verify_findings(dock: Dock, bucket: Path) -> tuple[int, list[tuple[str, str]]]:
    proc = dock.cli("verify", "--bucket", bucket.as_uri(), "--allowed-signers", str(dock.allowed_signers), "--json")
    assert "Traceback" not in proc.stderr, proc.stderr
    found = json.loads(proc.stdout)["findings"]
    return proc.returncode, [(f["problem"], f.get("key") or f.get("batch") or "") for f in found]


def test_verify_checks_the_log_and_names_what_was_changed(tmp_path: Path) -> None:
    dock, bucket = ingest_twice(tmp_path)
    assert verify_findings(dock, bucket) == (0, [])
    log = f"{DOCK_ID}/log"
    key = load_private_key(dock.root / "keys" / "dock_ed25519")
    docs = manifests(bucket)
    newest = docs[-1][0].batch_id

    def tampered(name: str) -> Path:
        copy = tmp_path / name
        shutil.copytree(bucket, copy)
        return copy

    # the newest batch deleted whole: the chain cannot see it, the log can
    b = tampered("newest-deleted")
    shutil.rmtree(b / DOCK_ID / newest)
    rc, found = verify_findings(dock, b)
    assert rc == 1 and ("log_manifest_missing", newest) in found, found
    # the other way round: the log cut back to its first entry, the newest manifest (and its custody
    # segment, which the manifest's custody root commits to) left in the bucket the log no longer holds
    b = tampered("log-truncated")
    for name in ("tile/0/000.p/2", "tile/entries/000.p/2", "checkpoints/2"):
        (b / log / name).unlink()
    (b / log / "checkpoint").write_bytes((b / log / "checkpoints" / "1").read_bytes())
    rc, found = verify_findings(dock, b)
    assert rc == 1 and found == [("manifest_not_in_log", newest)], found
    # a hash tile changed
    b = tampered("tile")
    tile = b / log / "tile/0/000.p/2"
    tile.write_bytes(bytes([tile.read_bytes()[0] ^ 1]) + tile.read_bytes()[1:])
    rc, found = verify_findings(dock, b)
    assert rc == 1 and ("log_tile_mismatch", f"{log}/tile/0/000.p/2") in found, found
    # the entries rewritten: they no longer rebuild the signed tree
    b = tampered("entries")
    bundle = b / log / "tile/entries/000.p/2"
    bundle.write_bytes(bundle.read_bytes().replace(b"bodycam-log-entry/1", b"bodycam-log-entry/2"))
    rc, found = verify_findings(dock, b)
    assert rc == 1 and ("log_root_mismatch", f"{log}/checkpoint") in found, found
    # an older checkpoint, validly signed, over another history: a fork
    b = tampered("fork")
    other = gocheck.build_tree(1, lambda i: b"another history")
    forged = note.sign_checkpoint(
        note.Checkpoint(docklog.origin(DOCK_ID), 1, other.root()), docklog.origin(DOCK_ID), key
    )
    (b / log / "checkpoints" / "1").write_bytes(forged)
    rc, found = verify_findings(dock, b)
    assert rc == 1 and ("log_fork", f"{log}/checkpoints/1") in found, found
    # a checkpoint signed by a key the auditor does not allow
    b = tampered("stranger")
    stranger = note.sign_checkpoint(
        note.Checkpoint(docklog.origin(DOCK_ID), 2, tree_root(entries_of(docs))), docklog.origin(DOCK_ID),
        Ed25519PrivateKey.generate(),
    )  # fmt: skip
    (b / log / "checkpoint").write_bytes(stranger)
    rc, found = verify_findings(dock, b)
    assert rc == 1 and ("log_checkpoint_invalid", f"{log}/checkpoint") in found, found


def entries_of(docs: list[tuple[Manifest, bytes]]) -> list[bytes]:
    """Each manifest's log entry, rebuilt from the manifest as the seal builds it."""
    return [
        docklog.entry(DOCK_ID, m.batch_id, m.batch_seq, hashlib.sha256(raw).hexdigest(), commitment.log_fields(m))
        for m, raw in docs
    ]


def tree_root(entries: list[bytes]) -> bytes:
    return gocheck.build_tree(len(entries), lambda i: entries[i]).root()


def _steps_of_one_seal(db: sqlite3.Connection, index: int, key: Ed25519PrivateKey) -> int:
    """SQLite VM instructions one more seal's log append runs (counted, not timed: deterministic)."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    db.set_progress_handler(count, 1)
    docklog.append_in(db, dock_id="d", batch_id=f"b{index}", batch_seq=index + 1, manifest_sha256="0" * 64, key=key)
    db.set_progress_handler(None, 1)
    return steps[0]


def test_a_seals_log_append_costs_the_same_in_a_long_log() -> None:
    """Each seal appends in O(log n): counting the log's entries and hashes with COUNT(*) walked every row,
    so a dock's millionth seal read three million rows (bench/tlog.py)."""
    key = Ed25519PrivateKey.generate()
    db = sqlite3.connect(":memory:")
    costs = {}
    for i in range(4097):
        if i in (256, 4096):
            costs[i] = _steps_of_one_seal(db, i, key)
        else:
            docklog.append_in(db, dock_id="d", batch_id=f"b{i}", batch_seq=i + 1, manifest_sha256="0" * 64, key=key)
    # 16 times the entries: a few more hash reads (log n), not 16 times the work
    assert costs[4096] < 2 * costs[256], costs


class _PublishedWhileListed(BucketWrapper):
    """The bucket as verify reads it while a dock publishes: the first listing of ``prefix`` runs
    ``publish`` (a real dock's publication into the same bucket) before it lists."""

    def __init__(self, inner: Bucket, prefix: str, publish: Callable[[], None]) -> None:
        super().__init__(inner)
        self.prefix, self.publish = prefix, [publish]

    def iter_objects(self, prefix: str = "", *, page_size: int = 1000) -> Iterator[ObjectInfo]:
        if prefix == self.prefix and self.publish:
            self.publish.pop()()
        return self.inner.iter_objects(prefix, page_size=page_size)


def test_verify_of_a_live_bucket_reads_the_checkpoint_again_before_calling_an_object_unlisted(
    tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    """verify against SeaweedFS while a dock publishes: the dock publishes two more batches right after
    verify read the checkpoint (when it lists the kept checkpoints), so the kept ``checkpoints/4``, ``/5``
    and the new tiles are beyond the checkpoint it read. They were false ``log_fork`` and
    ``log_unlisted_object`` findings, and with a witness policy the witness's cosigned checkpoint of 5 a
    false ``log_truncated``; now verify reads the checkpoint again, proves from the tiles that it extends
    the first (consistency), and judges them against it. A checkpoint read again that does not extend the
    first (another history, or one that went back) is the fork it is."""
    from bodycam.agent.audit import logcheck
    from bodycam.agent.formats import cosignature, witnesspolicy

    key, wkey = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    prefix = docklog.log_prefix(DOCK_ID)
    policy = witnesspolicy.parse(
        f"log {docklog.verifier_key(DOCK_ID, key)}\n"
        f"witness w {cosignature.verifier_key('w.example', wkey.public_key())}\nquorum w\n"
    )
    first, grown = 3, 5
    manifests = [logcheck.Manifest(f"B{i:04d}", i + 1, f"{i:064x}") for i in range(first)]  # as verify listed them

    def cosign(bucket: Bucket, size: int) -> None:  # as the dock keeps what its witness cosigned
        signed = bucket.get_bytes(f"{prefix}/{docklog.CHECKPOINTS}/{size}", max_size=note.MAX_NOTE)
        text = note.split_note(signed)[0]
        cosigned = cosignature.add_lines(signed, [cosignature.cosign(text, "w.example", wkey, 1_700_000_000 + size)])
        bucket.put_object(f"{prefix}/{docklog.WITNESSED_DIR}/{size}", cosigned)
        bucket.put_object(f"{prefix}/{docklog.WITNESSED}", cosigned, create_only=False)

    def verify(
        name: str, after: Callable[[Bucket], None] | None = None, witnessed: bool = False
    ) -> list[tuple[str, str | None]]:
        journal = Journal(tmp_path / name / "journal.sqlite3")
        bucket = open_bucket(f"s3://{s3_bucket}/{name}", seaweedfs.endpoint_url)
        try:
            publish_leaves(journal, bucket, key, first)
            if witnessed:
                cosign(bucket, first)

            def publish() -> None:
                for i in range(first, grown):  # a dock stores a batch's manifest before it logs the batch
                    bucket.put_object(f"{DOCK_ID}/B{i:04d}/manifest.json", b"{}")
                publish_leaves(journal, bucket, key, grown, start=first)
                if witnessed:
                    cosign(bucket, grown)
                if after is not None:
                    after(bucket)

            live = _PublishedWhileListed(bucket, f"{prefix}/{docklog.CHECKPOINTS}/", publish)
            found = logcheck.check(
                live, DOCK_ID, [key.public_key()], iter(manifests), policy=policy if witnessed else None, fetch=False
            )
            assert not live.publish, "verify did not list the kept checkpoints"
            return [(f.problem, f.key) for f in found]
        finally:
            bucket.close()
            journal.close()

    assert verify("live") == []
    assert verify("witnessed", witnessed=True) == []
    ckey = f"{prefix}/{docklog.CHECKPOINT}"

    def forged(bucket: Bucket) -> None:  # the dock's key signs a checkpoint of 5 over another history
        other = gocheck.build_tree(grown, lambda i: b"another history %d" % i)
        origin = docklog.origin(DOCK_ID)
        bucket.put_object(
            ckey, note.sign_checkpoint(note.Checkpoint(origin, grown, other.root()), origin, key), create_only=False
        )

    found = verify("forked", forged)
    assert ("log_fork", ckey) in found, found

    def went_back(bucket: Bucket) -> None:
        older = bucket.get_bytes(f"{prefix}/{docklog.CHECKPOINTS}/2", max_size=note.MAX_NOTE)
        bucket.put_object(ckey, older, create_only=False)

    found = verify("back", went_back)
    assert ("log_fork", ckey) in found, found
    # a cosigned checkpoint beyond a checkpoint that went back is still the truncation it shows
    found = verify("back-witnessed", went_back, witnessed=True)
    assert ("log_fork", ckey) in found and ("log_truncated", f"{prefix}/{docklog.WITNESSED}") in found, found


class _CheckpointThatChanges(BucketWrapper):
    """A hostile bucket (or one an attacker writes between verify's reads): ``log/checkpoint`` answers
    with ``reads[0]`` first, then each of the others in turn (the last one kept)."""

    def __init__(self, inner: Bucket, ckey: str, reads: list[bytes]) -> None:
        super().__init__(inner)
        self.ckey, self.reads = ckey, reads

    def get_bytes(self, key: str, max_size: int) -> bytes:
        if key == self.ckey:
            return self.reads.pop(0) if len(self.reads) > 1 else self.reads[0]
        return self.inner.get_bytes(key, max_size=max_size)


def test_a_checkpoint_read_again_does_not_hide_deleted_batches(tmp_path: Path) -> None:
    """verify reads ``log/checkpoint`` again when it lists objects beyond it (5be6e6f, ff837ad). A bucket
    whose newest batches were deleted (their manifests gone) can answer the first read with the dock's
    older genuine checkpoint of 3 and the next with its genuine latest of 5: the kept ``checkpoints/4``,
    ``/5`` and the cosigned 5 then looked like a live dock's growth, and nothing was reported (before the
    re-read: log_fork for each kept checkpoint beyond 3). Now the entries between the two reads must
    rebuild the latest's root and name manifests the bucket holds."""
    from bodycam.agent.audit import logcheck
    from bodycam.agent.formats import manifest as mf

    key = Ed25519PrivateKey.generate()
    prefix = docklog.log_prefix(DOCK_ID)
    ckey = f"{prefix}/{docklog.CHECKPOINT}"
    journal = Journal(tmp_path / "journal.sqlite3")
    try:
        with LocalBucket(tmp_path / "bucket") as bucket:
            for i in range(5):
                bucket.put_object(f"{mf.batch_prefix(DOCK_ID, f'B{i:04d}')}/{mf.MANIFEST}", b"{}")
            publish_leaves(journal, bucket, key, 5)

            def kept(size: int) -> bytes:
                return bucket.get_bytes(f"{prefix}/{docklog.CHECKPOINTS}/{size}", max_size=note.MAX_NOTE)

            def check(reads: list[bytes], listed: int) -> list[tuple[str, str | None, str | None]]:
                manifests = [logcheck.Manifest(f"B{i:04d}", i + 1, f"{i:064x}") for i in range(listed)]
                hostile = _CheckpointThatChanges(bucket, ckey, reads)
                found = logcheck.check(hostile, DOCK_ID, [key.public_key()], iter(manifests))
                return [(f.problem, f.key, f.batch) for f in found]

            assert check([kept(3), kept(5)], 3) == []  # a live dock's growth, its manifests there
            for i in (3, 4):  # the newest two batches deleted
                bucket.delete(f"{mf.batch_prefix(DOCK_ID, f'B{i:04d}')}/{mf.MANIFEST}")
            found = check([kept(3), kept(5)], 3)
            assert [(p, b) for p, _, b in found] == [
                ("log_manifest_missing", "B0003"),
                ("log_manifest_missing", "B0004"),
            ]

    finally:
        journal.close()


def test_objects_misnamed_under_checkpoints_or_witnessed_are_named_up_to_a_bound_then_counted(tmp_path: Path) -> None:
    """A hostile bucket filling log/checkpoints/ and log/witnessed/ with objects not named by a tree size
    made one finding each, kept in verify's memory: millions of objects, millions of findings, where the
    same objects as strays are named up to a bound and then counted. Before: 300 + 300 findings here."""
    from bodycam.agent.audit import logcheck
    from bodycam.agent.formats import cosignature, witnesspolicy

    key = Ed25519PrivateKey.generate()
    journal = Journal(tmp_path / "state" / "journal.sqlite3")
    root = tmp_path / "bucket"
    log = root / docklog.log_prefix(DOCK_ID)
    wkey = Ed25519PrivateKey.generate().public_key()
    policy = witnesspolicy.parse(
        f"log {docklog.verifier_key(DOCK_ID, key)}\nwitness w {cosignature.verifier_key('w.example', wkey)}\nquorum w\n"
    )
    try:
        with LocalBucket(root) as bucket:
            publish_leaves(journal, bucket, key, 2)
            for directory in (docklog.CHECKPOINTS, docklog.WITNESSED_DIR):
                (log / directory).mkdir(exist_ok=True)
                for i in range(300):
                    (log / directory / f"junk-{i:03d}").write_bytes(b"x")
            manifests = (logcheck.Manifest(f"B{i:04d}", i + 1, f"{i:064x}") for i in range(2))
            found = logcheck.check(bucket, DOCK_ID, [key.public_key()], manifests, policy=policy, fetch=False)
    finally:
        journal.close()
    invalid = [f for f in found if f.problem == "log_checkpoint_invalid"]
    per_dir = {
        d: [f for f in invalid if f.key is not None and f.key.startswith(f"{docklog.log_prefix(DOCK_ID)}/{d}/")]
        for d in (docklog.CHECKPOINTS, docklog.WITNESSED_DIR)
    }
    assert {d: len(named) for d, named in per_dir.items()} == {
        docklog.CHECKPOINTS: logcheck.MAX_STRAYS,
        docklog.WITNESSED_DIR: 100,  # witnesscheck.MAX_MISNAMED
    }
    counted = sorted(f.message for f in invalid if f.key is None)
    assert counted == [
        f"200 more objects under {docklog.log_prefix(DOCK_ID)}/{docklog.CHECKPOINTS}/ are not named by a tree size",
        f"200 more objects under {docklog.log_prefix(DOCK_ID)}/{docklog.WITNESSED_DIR}/ are not named by a tree size",
    ]
    assert len(found) < 2 * 300, len(found)  # strays too are named up to a bound, then counted


def test_publishing_an_older_batch_again_never_rolls_the_latest_checkpoint_back(tmp_path: Path) -> None:
    """recover() publishes every sealed batch and goes on past one that fails, so a batch whose publication
    failed is published after the next one went through. Its checkpoint replaced log/checkpoint: the
    bucket's latest went back from 3 entries to 2, and verify named the kept checkpoint of 3 a fork, the
    tiles of 3 unlisted objects and batch B0002 missing from the log. Now the latest stays (only a
    checkpoint the dock's journal holds counts: a made-up one is replaced)."""
    from bodycam.agent.audit import logcheck

    key = Ed25519PrivateKey.generate()
    journal = Journal(tmp_path / "state" / "journal.sqlite3")
    root = tmp_path / "bucket"
    log = root / docklog.log_prefix(DOCK_ID)
    verifiers = [note.parse_verifier_key(docklog.verifier_key(DOCK_ID, key))]

    def put_once(k: str, data: bytes, retain: bool) -> None:
        batch._put_once(bucket, k, data, retain=retain)

    try:
        with LocalBucket(root) as bucket:
            publish_leaves(journal, bucket, key, 3)
            docklog.publish(journal, put_once, bucket, DOCK_ID, "B0001")  # the older batch, again
            assert note.open_checkpoint((log / docklog.CHECKPOINT).read_bytes(), verifiers).size == 3
            manifests = (logcheck.Manifest(f"B{i:04d}", i + 1, f"{i:064x}") for i in range(3))
            assert logcheck.check(bucket, DOCK_ID, [key.public_key()], manifests) == []
            # a checkpoint the dock never signed does not hold its latest back
            (log / docklog.CHECKPOINT).write_bytes(b"made up\n")
            docklog.publish(journal, put_once, bucket, DOCK_ID, "B0002")
            assert (log / docklog.CHECKPOINT).read_bytes() == (log / docklog.CHECKPOINTS / "3").read_bytes()
    finally:
        journal.close()
