"""The dock's transparency log at fleet scale: a million sealed manifests appended the way the dock appends
them, published as tiles and checkpoints, then checked by verify's own log check.

What it runs, and why it is the real thing: each leaf is built by ``docklog.append_in`` (the function the
seal calls, inside a transaction on an SQLite journal holding ``tlog_hashes`` and ``tlog_entries``) from a
format 1.1 manifest's commitments (``commitment.log_fields``: its recordings and custody roots and counts),
so each entry has the bytes a dock logs today. Every ``--checkpoint-every`` seals the new tiles, entry
bundles and checkpoint are written to a file bucket laid out as ``docklog.publish`` lays it out (the dock
publishes after each batch; publishing less often only leaves fewer partial tiles behind). Then
``logcheck.check``, what ``bodycam-sync verify`` runs per dock, checks the bucket: the checkpoint's signature,
the tree rebuilt from the entry bundles, every tile, every kept checkpoint as a prefix of the tree
(consistency) and every entry against its manifest's SHA-256 and commitments (the inclusion of every
manifest); it must find nothing.

What it reports: CPU time per seal in the first and second halves (CPU, as the machine is shared) (linear appends: the second half costs no
more), the verify time, peak RSS after appending and after verifying, the entry's size, and the bytes the
tiles and bundles add to the bucket per entry and per recording (``--recordings`` per batch).
With ``--go`` (needs golang-go and golang-golang-x-mod-dev) Go's sumdb also verifies the final checkpoint,
every tile and the inclusion of ``--sample`` entries from the tiles alone.

    .venv/bin/python bench/tlog.py [--leaves 1000000] [--checkpoint-every 1000] [--recordings 8] [--go] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import resource
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from bodycam.agent.audit import logcheck  # noqa: E402
from bodycam.agent.formats import commitment, tlog  # noqa: E402
from bodycam.agent.storage import docklog  # noqa: E402

DOCK = "dock-bench"
CUSTODY_PER_RECORDING = 3  # custody lines per recording (pulled, uploaded, verified) plus two per batch


def batch_id(i: int) -> str:
    return f"20260301T101500Z-{i + 1:07d}"


def manifest_sha256(i: int) -> str:
    return hashlib.sha256(i.to_bytes(8, "big")).hexdigest()


def commitments(i: int, recordings: int) -> dict[str, object]:
    """The log fields of the i-th batch's 1.1 manifest, built by ``commitment.entry_fields`` as the seal's
    ``commitment.log_fields`` builds them. The two roots are made-up 32-byte hashes: computing real ones
    over made-up recordings would time the bench's own fiction, and a root's value does not change what the
    log stores or costs; the counts and custody sequence numbers grow as a dock's do."""
    per_batch = recordings * CUSTODY_PER_RECORDING + 2
    first = i * per_batch + 1
    return commitment.entry_fields(
        recordings=recordings,
        recordings_root=manifest_sha256(i + (1 << 40)),
        custody_first_seq=first,
        custody_last_seq=first + per_batch - 1,
        custody_root=manifest_sha256(~i & 0xFFFFFFFF),
    )


def seal(db: sqlite3.Connection, i: int, recordings: int, key: Ed25519PrivateKey) -> int:
    """The log's part of sealing batch i: what agent/pipeline/batch.py calls in the seal's transaction."""
    return docklog.append_in(
        db,
        dock_id=DOCK,
        batch_id=batch_id(i),
        batch_seq=i + 1,
        manifest_sha256=manifest_sha256(i),
        key=key,
        commitments=commitments(i, recordings),
    )


def publish(db: sqlite3.Connection, old: int, size: int, out: Path, written: dict[str, int]) -> None:
    """Tiles, bundles and the checkpoint of a tree grown from ``old`` to ``size``, as docklog.publish
    writes them (from the same journal tables), and the partial tiles of each tile now full deleted, as
    docklog.publish deletes them (``docklog.drop_partials``)."""
    from bodycam.agent.storage.bucket import LocalBucket

    name = docklog.origin(DOCK)

    def query(sql: str, params: Any) -> list[Any]:
        return db.execute(sql, tuple(params)).fetchall()

    def entries(lo: int, hi: int) -> list[bytes]:
        rows = query("SELECT entry FROM tlog_entries WHERE log=? AND idx>=? AND idx<? ORDER BY idx", (name, lo, hi))
        return [bytes(r[0]) for r in rows]

    tree = tlog.Tree.view(docklog.JournalHashStore(query, name), size)
    prefix = out / docklog.log_prefix(DOCK)
    for path, data in tlog.tile_objects(tree, old, size, entries):
        target = prefix / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written["partial" if ".p/" in path else "full"] += len(data)
    signed = bytes(query("SELECT checkpoint FROM tlog_entries WHERE log=? AND idx=?", (name, size - 1))[0][0])
    (prefix / docklog.CHECKPOINTS).mkdir(parents=True, exist_ok=True)
    (prefix / docklog.CHECKPOINTS / str(size)).write_bytes(signed)
    (prefix / docklog.CHECKPOINT).write_bytes(signed)
    written["checkpoints"] += 2 * len(signed)
    if old:
        docklog.drop_partials(LocalBucket(out), docklog.log_prefix(DOCK), old, size)


def final_tile_bytes(size: int, out: Path) -> int:
    """Bytes of the tiles and bundles a reader of the final tree needs (full ones plus the final partials)."""
    prefix = out / docklog.log_prefix(DOCK)
    total = 0
    for t in tlog.tiles_for(size):
        total += (prefix / t.path).stat().st_size
        if t.level == 0:
            total += (prefix / t.entries_path).stat().st_size
    return total


def kept_tile_bytes(out: Path) -> int:
    """Bytes of every tile and bundle left in the bucket (partials of tiles now full are deleted)."""
    return sum(p.stat().st_size for p in (out / docklog.log_prefix(DOCK) / "tile").rglob("*") if p.is_file())


def manifests(leaves: int, recordings: int) -> Iterator[logcheck.Manifest]:
    """What verify finds in the bucket for each batch (id, batch_seq, SHA-256, commitments)."""
    for i in range(leaves):
        yield logcheck.Manifest(batch_id(i), i + 1, manifest_sha256(i), commitments(i, recordings))


def rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def reset_peak() -> bool:
    """Reset the kernel's high-water mark of this process's RSS (Linux ``clear_refs`` 5), so the check's
    own peak can be read apart from the append's; False where the kernel does not offer it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def hwm_mib() -> float | None:
    """VmHWM: the peak RSS since the last :func:`reset_peak`."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def run(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from bodycam.agent.storage.bucket import LocalBucket

    key = Ed25519PrivateKey.generate()
    db = sqlite3.connect(out / "journal.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # the dock's is FULL: an fsync per seal measures the disk, not the log
    bucket = out / "bucket"
    written = {"full": 0, "partial": 0, "checkpoints": 0}
    half = args.leaves // 2
    t0, c0 = time.perf_counter(), time.process_time()
    c_half = c0
    published = 0
    for i in range(args.leaves):
        db.execute("BEGIN IMMEDIATE")
        index = seal(db, i, args.recordings, key)
        db.execute("COMMIT")
        size = index + 1
        if size % args.checkpoint_every == 0 or size == args.leaves:
            publish(db, published, size, bucket, written)
            published = size
        if size == half:
            c_half = time.process_time()
    t_append, c_append = time.perf_counter(), time.process_time()
    rss_append = rss_mib()
    entry_bytes = len(bytes(db.execute("SELECT entry FROM tlog_entries ORDER BY idx DESC LIMIT 1").fetchone()[0]))
    db.close()
    # what verify hands the log check: each batch's record, made one at a time in batch_seq order as the
    # check's merge with the entries reaches it (verify builds them from the summaries it keeps anyway)
    records = manifests(args.leaves, args.recordings)
    reset = reset_peak()
    findings = logcheck.check(LocalBucket(bucket, read_only=True), DOCK, [key.public_key()], records)
    t_verify, c_verify = time.perf_counter(), time.process_time()
    tiles = final_tile_bytes(args.leaves, bucket)
    result: dict[str, Any] = {
        "leaves": args.leaves,
        "checkpoint_every": args.checkpoint_every,
        "recordings_per_batch": args.recordings,
        "append_publish_s": round(t_append - t0, 1),
        "append_publish_cpu_s": round(c_append - c0, 1),
        "cpu_us_per_seal_first_half": round((c_half - c0) / max(half, 1) * 1e6, 1),
        "cpu_us_per_seal_second_half": round((c_append - c_half) / max(args.leaves - half, 1) * 1e6, 1),
        "peak_rss_append_mib": rss_append,
        "verify_s": round(t_verify - t_append, 1),
        "verify_cpu_s": round(c_verify - c_append, 1),
        "verify_findings": [f"{f.problem}: {f.message}" for f in findings[:3]],
        "peak_rss_check_mib": hwm_mib() if reset else None,
        "peak_rss_mib": rss_mib(),
        "journal_bytes_per_leaf": round((out / "journal.sqlite").stat().st_size / args.leaves, 1),
        "entry_bytes": entry_bytes,
        "tile_bytes_per_leaf_final": round(tiles / args.leaves, 1),
        "tile_bytes_per_recording_final": round(tiles / args.leaves / max(args.recordings, 1), 1),
        "tile_bytes_per_leaf_written": round((written["full"] + written["partial"]) / args.leaves, 1),
        "tile_bytes_per_leaf_kept": round(kept_tile_bytes(bucket) / args.leaves, 1),
        "checkpoint_bytes_per_leaf": round(written["checkpoints"] / max(args.leaves // args.checkpoint_every, 1), 1),
    }
    if args.go:
        result.update(go_check(bucket, key, args))
    return result


def go_check(bucket: Path, key: Ed25519PrivateKey, args: argparse.Namespace) -> dict[str, Any]:
    from tests import tlogcheck

    rng = random.Random(13)
    sample = sorted(rng.sample(range(args.leaves), min(args.sample, args.leaves)))
    prefix = bucket / docklog.log_prefix(DOCK)
    t0 = time.perf_counter()
    lines = tlogcheck.run(
        {
            "vkey": docklog.verifier_key(DOCK, key),
            "checkpoint": str(prefix / docklog.CHECKPOINT),
            "origin": docklog.origin(DOCK),
            "tiles": str(prefix),
            "all_tiles": True,
            "records": [
                {
                    "index": i,
                    "entry": tlogcheck.b64(
                        docklog.entry(DOCK, batch_id(i), i + 1, manifest_sha256(i), commitments(i, args.recordings))
                    ),
                }
                for i in sample
            ],
        }
    )
    failed = [line for line in lines if not line.endswith(" OK")]
    return {"go_checks": len(lines), "go_failed": failed[:3], "go_s": round(time.perf_counter() - t0, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument("--recordings", type=int, default=8, help="recordings per sealed batch")
    parser.add_argument("--sample", type=int, default=1000, help="entries Go checks with --go")
    parser.add_argument("--go", action="store_true", help="also verify with Go's golang.org/x/mod/sumdb")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-tlog-") as tmp:
        result = run(args, Path(tmp))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:32} {v}")


if __name__ == "__main__":
    main()
