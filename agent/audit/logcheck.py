"""The auditor's check of one dock's transparency log in a bucket (for verify), bounded.

What it proves: the latest checkpoint is signed by a key allowed for the dock; the entry bundles rebuild
exactly the tree the checkpoint signs (so the log was not rewritten or truncated); every hash tile a
reader of that tree would fetch holds the right hashes; every checkpoint kept under ``checkpoints/`` is a
prefix of the same tree (so the log only grew: consistency, checked directly on the rebuilt tree); each
entry names a manifest that is in the bucket with that SHA-256; and each manifest sealed since the log
began is in it. Memory: 64 bytes per entry for the rebuilt tree, entries capped at :data:`MAX_ENTRIES`.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bodycam.agent.audit import witnesscheck
from bodycam.agent.formats import commitment, note, tlog
from bodycam.agent.formats.custody import canonical
from bodycam.agent.formats.witnesspolicy import Policy
from bodycam.agent.storage import docklog
from bodycam.drivers import strictjson
from bodycam.drivers.errors import BodycamError, ProtocolError

if TYPE_CHECKING:
    from bodycam.agent.storage.bucket import Bucket

MAX_ENTRIES = 1_000_000  # 64 MiB of rebuilt hashes: a dock seals far fewer batches in its life
MAX_CHECKPOINTS = 10_000  # kept checkpoints compared with the tree (the newest ones, by size)
BUNDLE_MAX = tlog.TILE_WIDTH * (2 + 1024)  # the dock's entries are a few hundred bytes
ENTRY_VALUES = 32  # 20 in an entry of a 1.1 manifest (its commitments); 10 before
MAX_STRAYS = 100  # named one by one; the rest are counted
TAIL = 10_000  # the newest entries named one by one when not witnessed
_SIZE = re.compile(r"[1-9][0-9]{0,18}")


@dataclass(frozen=True, slots=True)
class LogFinding:
    problem: str
    message: str
    key: str | None = None
    batch: str | None = None


@dataclass(frozen=True, slots=True)
class Manifest:
    batch_id: str
    seq: int | None
    sha256: str | None
    #: a 1.1 manifest's roots and counts its entry must repeat (``commitment.log_fields``); empty before
    commitments: Mapping[str, object] = field(default_factory=dict)


def check(
    bucket: Bucket,
    dock: str,
    keys: Sequence[Ed25519PublicKey],
    manifests: Sequence[Manifest],
    *,
    max_entries: int = MAX_ENTRIES,
    policy: Policy | None = None,
    fetch: bool = True,
) -> list[LogFinding]:
    """Findings about ``dock``'s log (empty when it holds). ``keys``: those allowed to sign for the dock;
    ``manifests``: the batches verify found for it (id, batch_seq, SHA-256 of manifest.json);
    ``max_entries``: the rebuilt tree's share of --max-memory (64 bytes an entry); ``policy``: check the
    witnesses' cosigned checkpoints too (agent/audit/witnesscheck.py), asking the witnesses when ``fetch``."""
    prefix = docklog.log_prefix(dock)
    ckey = f"{prefix}/{docklog.CHECKPOINT}"
    verifiers = [note.parse_verifier_key(note.verifier_key(docklog.origin(dock), k)) for k in keys]
    try:
        cp = note.open_checkpoint(
            bucket.get_bytes(ckey, max_size=note.MAX_NOTE), verifiers, origin=docklog.origin(dock)
        )
    except BodycamError as err:
        return [LogFinding("log_checkpoint_invalid", f"{ckey}: {err}", ckey)]
    if cp.size > min(max_entries, MAX_ENTRIES):
        return [
            LogFinding(
                "log_too_large",
                f"{ckey} claims {cp.size} entries, over the {min(max_entries, MAX_ENTRIES)} whose tree fits the "
                "memory verify may use (raise --max-memory)",
                ckey,
            )
        ]
    findings: list[LogFinding] = []
    entries = _EntryCheck(dock, manifests, prefix)
    tree = _rebuild(bucket, prefix, cp.size, findings, entries)
    if tree is None:
        return findings
    if tree.root() != cp.root:
        return [
            *findings,
            LogFinding(
                "log_root_mismatch",
                f"the entries under {prefix}/tile/entries do not rebuild the tree {ckey} signs: the log was "
                "rewritten, truncated or damaged",
                ckey,
            ),
        ]
    findings += _tiles(bucket, prefix, tree)
    findings += _checkpoints(bucket, prefix, tree, verifiers, dock)
    findings += entries.found + entries.unlogged()
    findings += _strays(bucket, prefix, tree.size)
    if policy is not None and policy.log_verifiers(docklog.origin(dock)):  # docks the policy names
        findings += witnessed(bucket, dock, policy, tree, entries.tail, fetch=fetch)
    return findings


def witnessed(
    bucket: Bucket, dock: str, policy: Policy, tree: tlog.Tree | None, tail: Sequence[tuple[int, str]], *, fetch: bool
) -> list[LogFinding]:
    """The witness checks of ``dock`` (``tree`` None: the bucket holds no log for it)."""
    sources, found = witnesscheck.gather(bucket, dock, policy, fetch=fetch)
    found += witnesscheck.check(dock, policy, tree, sources, tail)
    return [LogFinding(f.problem, f.message, f.key, f.batch) for f in found]


def _rebuild(
    bucket: Bucket, prefix: str, size: int, findings: list[LogFinding], entries: _EntryCheck
) -> tlog.Tree | None:
    """The tree rebuilt from the entry bundles, each entry checked as it passes (not kept)."""
    tree = tlog.Tree(tlog.MemoryHashStore())
    for tile in tlog.tiles_for(size):
        if tile.level != 0:
            continue
        key = f"{prefix}/{tile.entries_path}"
        try:
            bundle = tlog.parse_entry_bundle(bucket.get_bytes(key, max_size=BUNDLE_MAX))
        except BodycamError as err:
            findings.append(LogFinding("log_entries_unreadable", f"{key}: {err}", key))
            return None
        if len(bundle) != tile.width:
            findings.append(
                LogFinding("log_entries_unreadable", f"{key} holds {len(bundle)} entries, not {tile.width}", key)
            )
            return None
        for raw in bundle:
            tree.append(raw)
            entries.check(_entry(raw, tree.size - 1))
    return tree


def _entry(raw: bytes, index: int) -> strictjson.JSONObject:
    try:
        doc = strictjson.parse_json(raw, f"log entry {index}", ENTRY_VALUES)
    except ProtocolError:
        return {"index": index, "invalid": True}
    if not isinstance(doc, dict) or doc.get("format") != docklog.ENTRY_FORMAT or raw != canonical(doc):
        return {"index": index, "invalid": True}
    return {"index": index, **doc}


def _tiles(bucket: Bucket, prefix: str, tree: tlog.Tree) -> list[LogFinding]:
    """The hash tiles a reader of this tree fetches must hold the tree's hashes (the entries alone were
    enough to rebuild it; a party proving inclusion from tiles relies on these)."""
    found: list[LogFinding] = []
    for tile in tlog.tiles_for(tree.size):
        key = f"{prefix}/{tile.path}"
        try:
            data = bucket.get_bytes(key, max_size=tlog.TILE_WIDTH * tlog.HASH_SIZE)
        except BodycamError as err:
            found.append(LogFinding("log_tile_mismatch", f"{key}: {err}", key))
            continue
        if data != tree.tile(tile):
            found.append(LogFinding("log_tile_mismatch", f"{key} does not hold the hashes of the signed tree", key))
    return found


def _checkpoints(
    bucket: Bucket, prefix: str, tree: tlog.Tree, verifiers: list[note.Verifier], dock: str
) -> list[LogFinding]:
    """Every kept checkpoint must sign a prefix of this tree: a different root at some size is a fork."""
    found: list[LogFinding] = []
    sizes: list[tuple[int, str]] = []
    for info in bucket.iter_objects(f"{prefix}/{docklog.CHECKPOINTS}/"):
        name = info.key.rsplit("/", 1)[-1]
        if not _SIZE.fullmatch(name) or info.key != f"{prefix}/{docklog.CHECKPOINTS}/{name}":
            found.append(LogFinding("log_checkpoint_invalid", f"{info.key} is not named by a tree size", info.key))
            continue
        sizes.append((int(name), info.key))
        if len(sizes) > 2 * MAX_CHECKPOINTS:
            sizes = sorted(sizes)[-MAX_CHECKPOINTS:]
    for size, key in sorted(sizes)[-MAX_CHECKPOINTS:]:
        try:
            cp = note.open_checkpoint(
                bucket.get_bytes(key, max_size=note.MAX_NOTE), verifiers, origin=docklog.origin(dock)
            )
        except BodycamError as err:
            found.append(LogFinding("log_checkpoint_invalid", f"{key}: {err}", key))
            continue
        if cp.size != size:
            found.append(LogFinding("log_checkpoint_invalid", f"{key} signs tree size {cp.size}", key))
        elif size > tree.size:
            found.append(
                LogFinding(
                    "log_fork", f"{key} signs {size} entries, more than the latest checkpoint's {tree.size}", key
                )
            )
        elif tree.root(size) != cp.root:
            found.append(LogFinding("log_fork", f"{key} signs a different tree of {size} entries: the log forked", key))
    return found


_TILE = re.compile(r"tile/(entries|[0-5]?[0-9]|6[0-3])/((?:x[0-9]{3}/)*[0-9]{3})(?:\.p/([1-9][0-9]{0,2}))?")
_OWN = re.compile(rf"({docklog.CHECKPOINTS}|{docklog.WITNESSED_DIR})/([1-9][0-9]{{0,18}})")


def _belongs(name: str, size: int) -> bool:
    """Whether ``name`` (relative to the log's directory) is an object the log of ``size`` entries, or
    of any size it grew through, has: a checkpoint, a cosigned checkpoint, a tile or an entry bundle."""
    if name in (docklog.CHECKPOINT, docklog.WITNESSED):
        return True
    own = _OWN.fullmatch(name)
    if own is not None:
        return int(own.group(2)) <= size
    tile = _TILE.fullmatch(name)
    if tile is None:
        return False
    level = 0 if tile.group(1) == "entries" else int(tile.group(1))
    digits = tile.group(2).replace("x", "").replace("/", "")
    if tlog.encode_index(int(digits)) != tile.group(2):
        return False  # a non-canonical spelling of an index (x000/001)
    width = int(tile.group(3)) if tile.group(3) else tlog.TILE_WIDTH
    if width >= tlog.TILE_WIDTH and tile.group(3):
        return False
    # the tile exists once level 8*L has n*256 + width hashes, each covering 256**L leaves
    return (int(digits) * tlog.TILE_WIDTH + width) << (tlog.HEIGHT * level) <= size


def _strays(bucket: Bucket, prefix: str, size: int) -> list[LogFinding]:
    """Objects under the log's directory that no size of this log has: the bucket holds nothing the log
    does not (a tile beyond the tree is what a truncation leaves; anything else was added)."""
    found: list[LogFinding] = []
    stray = 0
    for info in bucket.iter_objects(f"{prefix}/"):
        if _belongs(info.key[len(prefix) + 1 :], size):
            continue
        stray += 1
        if stray <= MAX_STRAYS:
            found.append(
                LogFinding(
                    "log_unlisted_object",
                    f"{info.key} is not an object of the log of {size} entries (added, or left by a truncation)",
                    info.key,
                )
            )
    if stray > MAX_STRAYS:
        found.append(LogFinding("log_unlisted_object", f"{stray - MAX_STRAYS} more such objects under {prefix}/"))
    return found


class _EntryCheck:
    """Each entry against the bucket's manifests, one at a time; keeps only the ids it found logged."""

    def __init__(self, dock: str, manifests: Sequence[Manifest], prefix: str) -> None:
        self.dock, self.prefix = dock, prefix
        self.by_id = {m.batch_id: m for m in manifests}
        #: batches before the bucket's first were audited in the bucket the dock moved from (formats.md §8)
        self.lowest = min((m.seq for m in manifests if m.seq is not None), default=None)
        self.logged: set[str] = set()
        self.first: int | None = None
        self.last_seq = 0
        self.found: list[LogFinding] = []
        #: the newest entries' (index, batch id), to name those not yet witnessed (bounded)
        self.tail: deque[tuple[int, str]] = deque(maxlen=TAIL)

    def check(self, e: dict[str, Any]) -> None:
        where = f"{self.prefix} entry {e['index']}"
        seq = e.get("batch_seq")
        if e.get("invalid") or e.get("dock_id") != self.dock or not isinstance(seq, int) or isinstance(seq, bool):
            self.found.append(LogFinding("log_entry_invalid", f"{where} is not a log entry of dock {self.dock}"))
            return
        batch = str(e.get("batch_id"))[:64]
        self.tail.append((int(e["index"]), batch))
        if seq <= self.last_seq:
            self.found.append(
                LogFinding(
                    "log_entry_invalid", f"{where}: batch_seq {seq} does not follow {self.last_seq}", batch=batch
                )
            )
        self.last_seq = max(self.last_seq, seq)
        self.first = seq if self.first is None else min(self.first, seq)
        m = self.by_id.get(batch)
        if m is None and self.lowest is not None and seq < self.lowest:
            return
        if m is None:
            self.found.append(
                LogFinding(
                    "log_manifest_missing",
                    f"{where} logs batch {batch}, whose manifest is not in the bucket",
                    batch=batch,
                )
            )
            return
        self.logged.add(batch)
        if m.sha256 != e.get("manifest_sha256"):
            self.found.append(
                LogFinding(
                    "log_manifest_mismatch",
                    f"{where} logs batch {batch} with another manifest SHA-256: the manifest was replaced",
                    batch=batch,
                )
            )
        elif any(e.get(k) != m.commitments.get(k) for k in commitment.LOG_FIELDS):
            self.found.append(
                LogFinding(
                    "log_entry_mismatch",
                    f"{where} does not repeat the recordings and custody roots of batch {batch}'s manifest: proof "
                    "bundles from this log would not match the bucket",
                    batch=batch,
                )
            )

    def unlogged(self) -> list[LogFinding]:
        """Manifests sealed since the log began (batch_seq at or after its first entry) that it lacks."""
        if self.first is None:
            return []
        first = self.first
        return [
            LogFinding(
                "manifest_not_in_log",
                f"batch {m.batch_id} is not in the dock's latest checkpoint (sealed after the log began; a dock "
                "still publishing it adds it shortly)",
                batch=m.batch_id,
            )
            for m in self.by_id.values()
            if m.seq is not None and m.seq >= first and m.batch_id not in self.logged
        ]
