"""The dock's transparency log at scale: append a million entries, publish tiles at each checkpoint, then
verify consistency between checkpoints and the inclusion of a sample of entries.

What it shows: appends cost the same at the end as at the start (time per leaf in the first and second
halves), memory stays flat (the hashes live in a file, agent/formats/tlog.py FileHashStore), and what the tiles
and entry bundles add to the bucket per entry. Entries are the dock's own format (agent/storage/docklog.py), so
the bytes per entry are the real ones. With ``--go`` (needs golang-go and golang-golang-x-mod-dev) Go's
sumdb also verifies the final checkpoint, every tile and the inclusion of the sample from the tiles alone.

    .venv/bin/python bench/tlog.py [--leaves 1000000] [--checkpoint-every 1000] [--sample 1000] [--go] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from bodycam.agent.formats import note, tlog  # noqa: E402
from bodycam.agent.storage import docklog  # noqa: E402

DOCK = "dock-bench"


def entry(i: int) -> bytes:
    """The log entry of the i-th sealed manifest (a made-up manifest hash, the real format)."""
    sha = hashlib.sha256(i.to_bytes(8, "big")).hexdigest()
    return docklog.entry(DOCK, f"20260301T101500Z-{i + 1:06d}", i + 1, sha)


def entries(lo: int, hi: int) -> list[bytes]:
    return [entry(i) for i in range(lo, hi)]


def publish(tree: tlog.Tree, old: int, out: Path, key: Ed25519PrivateKey, written: dict[str, int]) -> bytes:
    """Tiles and bundles from ``old`` to the tree's size, and the signed checkpoint, as the dock writes them."""
    for path, data in tlog.tile_objects(tree, old, tree.size, entries):
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        kind = "partial" if ".p/" in path else "full"
        written[kind] += len(data)
    name = docklog.origin(DOCK)
    signed = note.sign_checkpoint(note.Checkpoint(name, tree.size, tree.root()), name, key)
    (out / "checkpoint").write_bytes(signed)
    return signed


def final_tile_bytes(size: int, out: Path) -> int:
    """Bytes of the tiles and bundles a reader of the final tree needs (full ones plus the final partials)."""
    total = 0
    for t in tlog.tiles_for(size):
        total += (out / t.path).stat().st_size
        if t.level == 0:
            total += (out / t.entries_path).stat().st_size
    return total


def run(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    key = Ed25519PrivateKey.generate()
    store = tlog.FileHashStore(out / "hashes")
    tree = tlog.Tree(store)
    written = {"full": 0, "partial": 0}
    checkpoints: list[tuple[int, bytes]] = []
    half = args.leaves // 2
    t0 = time.perf_counter()
    t_half = t0
    published = 0
    for i in range(args.leaves):
        tree.append(entry(i))
        if tree.size % args.checkpoint_every == 0 or tree.size == args.leaves:
            publish(tree, published, out, key, written)
            published = tree.size
            checkpoints.append((tree.size, tree.root()))
        if tree.size == half:
            t_half = time.perf_counter()
    store.sync()
    t_append = time.perf_counter()
    # verify: the final checkpoint, consistency from every checkpoint, inclusion of a sample
    verifier = note.parse_verifier_key(docklog.verifier_key(DOCK, key))
    final = note.open_checkpoint((out / "checkpoint").read_bytes(), [verifier], origin=docklog.origin(DOCK))
    assert final.size == args.leaves and final.root == tree.root()
    for size, root in checkpoints:
        tlog.verify_consistency(size, final.size, root, final.root, tree.consistency_proof(size))
    rng = random.Random(13)
    sample = sorted(rng.sample(range(args.leaves), min(args.sample, args.leaves)))
    for i in sample:
        tlog.verify_inclusion(i, final.size, tlog.leaf_hash(entry(i)), tree.inclusion_proof(i), final.root)
    t_verify = time.perf_counter()
    result: dict[str, Any] = {
        "leaves": args.leaves,
        "checkpoint_every": args.checkpoint_every,
        "append_publish_s": round(t_append - t0, 2),
        "us_per_leaf_first_half": round((t_half - t0) / max(half, 1) * 1e6, 2),
        "us_per_leaf_second_half": round((t_append - t_half) / max(args.leaves - half, 1) * 1e6, 2),
        "verify_s": round(t_verify - t_append, 2),
        "consistency_proofs_checked": len(checkpoints),
        "inclusion_proofs_checked": len(sample),
        "hash_store_bytes_per_leaf": round((out / "hashes").stat().st_size / args.leaves, 1),
        "entry_bytes": len(entry(0)),
        "tile_bytes_per_leaf_final": round(final_tile_bytes(args.leaves, out) / args.leaves, 1),
        "tile_bytes_per_leaf_written": round((written["full"] + written["partial"]) / args.leaves, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if args.go:
        result.update(go_check(out, verifier, key, sample))
    return result


def go_check(out: Path, verifier: note.Verifier, key: Ed25519PrivateKey, sample: list[int]) -> dict[str, Any]:
    from tests import tlogcheck

    t0 = time.perf_counter()
    lines = tlogcheck.run(
        {
            "vkey": docklog.verifier_key(DOCK, key),
            "checkpoint": str(out / "checkpoint"),
            "origin": docklog.origin(DOCK),
            "tiles": str(out),
            "all_tiles": True,
            "records": [{"index": i, "entry": tlogcheck.b64(entry(i))} for i in sample],
        }
    )
    failed = [line for line in lines if not line.endswith(" OK")]
    return {"go_checks": len(lines), "go_failed": failed[:3], "go_s": round(time.perf_counter() - t0, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument("--sample", type=int, default=1000)
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
